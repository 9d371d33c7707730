"""The demo of README command 1: its config, the library parts in mmevit.engine.demo (schedule rescaling,
majority baseline, IoU, panels, pass check) and a short run of tools/demo.py / tools/run_demo.sh."""
import importlib.util
import json
import os
import os.path as osp
import subprocess

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmevit.datasets import make_demo_data
from mmevit.datasets.demo_ade import CLASSES, PALETTE, sample_paths
from mmevit.datasets.demo_data import resolve_args
from mmevit.engine import demo

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'skipat_t_upernet_demo.py')


def _load_demo_tool():
    spec = importlib.util.spec_from_file_location('mmevit_demo_tool', osp.join(REPO, 'tools', 'demo.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


demo_tool = _load_demo_tool()


# ----------------------------------------------------------------------------- config + loading
def test_config_matches_the_demo_data_and_loads_ade_style(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmevit  # noqa: F401  (registers SkipAtViT into mmseg)
    cfg = Config.fromfile(CONFIG)
    assert cfg.demo.task == 'ade20k' and demo_tool.demo_configs()['ade20k'] == CONFIG
    # the demo uses what `make_demo_data.py ade20k DIR` makes by default, so either can make the data
    assert resolve_args('ade20k', cfg.demo.num_train, cfg.demo.num_val, cfg.demo.seed) == resolve_args('ade20k')
    assert list(cfg.demo_metainfo['classes']) == list(CLASSES)
    assert [list(p) for p in cfg.demo_metainfo['palette']] == PALETTE
    assert cfg.model.decode_head.num_classes == len(CLASSES)
    assert cfg.model.backbone.type == 'SkipAtViT' and cfg.model.backbone.arch == 't'
    assert cfg.model.backbone.get('skip_indices') is None  # the paper's default (3..8)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'

    root = str(tmp_path / 'demo')
    make_demo_data('ade20k', root, 2, 2)
    demo.set_data_root(cfg, root)
    assert cfg.train_dataloader.dataset.data_root == cfg.test_dataloader.dataset.data_root == root
    init_default_scope('mmseg')
    ds = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(ds) == 2 and ds.metainfo['classes'] == tuple(CLASSES)
    # mmseg's ADE20K-style loading (reduce_zero_label): stored 0 -> 255 (ignored), v -> v - 1.
    gt = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    raw = np.asarray(Image.open(sample_paths(root, 'validation', 0)[1]))
    np.testing.assert_array_equal(gt, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    np.testing.assert_array_equal(next(demo.seg_labels(ds)), gt)
    assert set(np.unique(gt)) <= set(range(len(CLASSES))) | {255}


# ----------------------------------------------------------------------------- schedule
def _schedule_cfg(max_iters=300, warmup=50):
    return Config(dict(
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=max_iters)),
        param_scheduler=[dict(type='LinearLR', by_epoch=False, begin=0, end=warmup),
                         dict(type='PolyLR', by_epoch=False, begin=warmup, end=max_iters)]))


def _phases(cfg):
    return [(s.type, s.begin, s.end) for s in cfg.param_scheduler]


@pytest.mark.parametrize('max_iters, phases', [
    (300, [('LinearLR', 0, 50), ('PolyLR', 50, 300)]),   # unchanged
    (40, [('LinearLR', 0, 7), ('PolyLR', 7, 40)]),       # warm-up keeps its share: 50 * 40 / 300 = 6.7 -> 7
    (600, [('LinearLR', 0, 100), ('PolyLR', 100, 600)]),
    (2, [('LinearLR', 0, 1), ('PolyLR', 1, 2)]),         # at least one warm-up iteration
    (1, [('LinearLR', 0, 1)]),                           # the empty decay phase is dropped
])
def test_rescale_schedule(max_iters, phases):
    cfg = _schedule_cfg()
    demo.rescale_schedule(cfg, max_iters)
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == max_iters
    assert cfg.default_hooks.checkpoint.interval == max_iters
    assert _phases(cfg) == phases


def test_rescale_schedule_errors():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match='max_iters must be an integer >= 1'):
            demo.rescale_schedule(_schedule_cfg(), bad)
    cfg = _schedule_cfg()
    cfg.param_scheduler[1].by_epoch = True
    with pytest.raises(ValueError, match='by_epoch=False'):
        demo.rescale_schedule(cfg, 10)
    cfg = _schedule_cfg()
    cfg.param_scheduler.append(dict(type='ConstantLR', by_epoch=False, begin=100, end=200))
    with pytest.raises(ValueError, match='cannot rescale'):
        demo.rescale_schedule(cfg, 10)
    with pytest.raises(ValueError, match='iteration-based'):
        demo.rescale_schedule(Config(dict(train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=3))), 10)


def test_rescale_the_demo_config_to_one_iteration():
    """`--max-iters 1` builds mmengine's schedulers (it used to fail: a PolyLR with begin == end)."""
    from mmengine.optim.scheduler import LinearLR
    from torch import nn, optim

    cfg = Config.fromfile(CONFIG)
    demo.rescale_schedule(cfg, 1)
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=1.)
    for s in cfg.param_scheduler:
        kwargs = {k: v for k, v in s.items() if k != 'type'}
        assert s.type == 'LinearLR'
        LinearLR(opt, **kwargs)


# ----------------------------------------------------------------------------- baseline, IoU, pass check
def test_majority_baseline_hand_example():
    ign = 255
    train = [np.array([[0, 1, 1], [1, ign, 2]]), np.array([[1, 3, 0]])]  # counts 0:2 1:4 2:1 3:1 -> class 1
    val = [np.array([[1, 1, 0], [2, ign, 1]]), np.array([[ign, 0, 1]])]  # valid: 0:2 1:4 2:1 (7 pixels)
    out = demo.majority_baseline(train, val, num_classes=4, ignore_index=ign)
    assert out['cls'] == 1 and out['train_counts'] == [2, 4, 1, 1]
    # Predicting 1 on the 7 valid pixels: IoU_1 = 4/7, IoU_0 = IoU_2 = 0 (union = their label area),
    # class 3 is neither present nor predicted: union 0 -> NaN, left out of the mean (mmseg's nanmean).
    iou = np.array(out['iou'])
    np.testing.assert_allclose(iou[:3], [0., 4 / 7, 0.])
    assert np.isnan(iou[3])
    assert out['miou'] == pytest.approx((4 / 7) / 3)
    assert out['aacc'] == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match='no labelled training pixels'):
        demo.majority_baseline([np.full((2, 2), ign)], val, num_classes=4)


def test_constant_prediction_iou_hand_example():
    # predicting class 0 everywhere: label 0 on 3 of 5 valid pixels (one ignored)
    labels = [np.array([[0, 0, 1], [255, 0, 2]])]
    out = demo.score_constant_prediction(0, labels, num_classes=3)
    np.testing.assert_allclose(out['iou'], [3 / 5, 0., 0.])
    assert out['miou'] == pytest.approx(0.2) and out['aacc'] == pytest.approx(0.6)
    np.testing.assert_array_equal(demo.class_pixel_counts(labels, 3), [3, 1, 1])


def test_constant_prediction_matches_iou_metric():
    """The baseline scores a constant prediction exactly as mmseg's IoUMetric scores a model."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    rng = np.random.default_rng(0)
    labels = [rng.choice([0, 1, 2, 255], size=(5, 7), p=[.2, .5, .2, .1]) for _ in range(3)]
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    for lab in labels:
        s = SegDataSample()
        s.pred_sem_seg = PixelData(data=torch.full((1, 5, 7), 1))
        s.gt_sem_seg = PixelData(data=torch.from_numpy(lab[None]))
        metric.process({}, [s.to_dict()])
    ref = metric.compute_metrics(metric.results)['mIoU'] / 100
    ours = demo.score_constant_prediction(1, labels, 3)['miou']
    assert ours == pytest.approx(ref, abs=1e-4)  # mmseg rounds to 0.01 %


def test_check_against_baseline():
    assert demo.check_against_baseline(0.6, 0.2, 0.5, 2.0) == dict(ratio=pytest.approx(3.0), passed=True)
    assert demo.check_against_baseline(0.45, 0.1, 0.5, 2.0)['passed'] is False   # below min_score
    assert demo.check_against_baseline(0.7, 0.4, 0.5, 2.0)['passed'] is False    # 1.75x < 2x
    assert demo.check_against_baseline(0.5, 0.25, 0.5, 2.0)['passed'] is True    # both bounds inclusive
    assert demo.check_against_baseline(0.5, 0.0, 0.5, 2.0)['ratio'] == float('inf')


def test_panels(tmp_path):
    np.testing.assert_array_equal(demo.colourise(np.array([[0, 1, 255]]), [[1, 2, 3], [4, 5, 6]]),
                                  [[[1, 2, 3], [4, 5, 6], [0, 0, 0]]])
    a, b = np.zeros((4, 5, 3), np.uint8), np.full((6, 7, 3), 9, np.uint8)
    path = demo.save_panel([a, b], str(tmp_path / 'p' / 'x.png'), scale=3, sep=2)
    panel = np.asarray(Image.open(path))
    assert panel.shape == (3 * 4, 3 * (5 + 2 + 5), 3)  # cropped to the first column, 2 px bar, x3
    assert (panel[:, 15:21] == 255).all() and (panel[:, :15] == 0).all() and (panel[:, 21:] == 9).all()


# ----------------------------------------------------------------------------- command line
def test_tool_rejects_bad_arguments(capsys):
    for argv, msg in ((['nope'], "unknown task 'nope'; demos: ade20k"),
                      (['--max-iters', '0'], '--max-iters must be >= 1')):
        with pytest.raises(SystemExit) as e:
            demo_tool.parse_args(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert demo_tool.parse_args([]).config == CONFIG


def test_tool_refuses_a_users_data_root(tmp_path, capsys):
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep')
    rc = demo_tool.main(['--data-root', str(mine), '--work-dir', str(tmp_path / 'work')])
    assert rc == 2 and 'not demo data made by mmevit' in capsys.readouterr().err
    assert os.listdir(mine) == ['notes.txt'] and not (tmp_path / 'work').exists()


def test_demo_runner_registry():
    assert demo.get_demo_runner('ade20k') == (demo.run_segmentation_demo, demo.format_segmentation_summary)
    assert demo.get_demo_runner('sidd') == demo.get_demo_runner('davis') == (demo.run_denoising_demo,
                                                                           demo.format_denoising_summary)
    with pytest.raises(KeyError, match="no demo runner for task 'nope'; demos: .*ade20k"):
        demo.get_demo_runner('nope')
    with pytest.raises(KeyError, match='already registered'):
        demo.register_demo_runner('ade20k', demo.run_segmentation_demo, demo.format_segmentation_summary)


@pytest.mark.e2e
def test_run_demo_sh_rejects_an_unknown_task_before_installing():
    run = subprocess.run(['bash', osp.join(REPO, 'tools', 'run_demo.sh'), 'nope'], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert "unknown demo task 'nope'; known tasks: ade20k davis sidd" in run.stderr
    assert 'setup_env' not in run.stderr + run.stdout


# ----------------------------------------------------------------------------- a short run of the tool
@pytest.mark.e2e
def test_demo_tool_runs_one_iteration(tmp_path, capsys):
    root = str(tmp_path / 'demo')
    work = str(tmp_path / 'work')
    rc = demo_tool.main(['ade20k', '--data-root', root, '--work-dir', work, '--max-iters', '1',
                         '--num-panels', '2', '--min-score', '0', '--min-ratio', '0', '--cfg-options',
                         'demo.num_train=4', 'demo.num_val=3', 'train_dataloader.batch_size=2',
                         'val_dataloader.batch_size=3'])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'RESULT: PASS' in out and 'majority baseline mIoU' in out
    logs = [d for d in os.listdir(work) if osp.isdir(osp.join(work, d))]
    assert len(logs) == 1
    summary = json.load(open(osp.join(work, logs[0], 'summary.json')))
    assert summary['max_iters'] == 1 and summary['data_generated'] and summary['num_val'] == 3
    assert 0 <= summary['miou'] <= 1 and 0 < summary['baseline_miou'] <= 1
    assert summary['baseline_class'] == 'background'
    assert osp.isfile(osp.join(work, 'iter_1.pth')) and osp.isfile(osp.join(root, 'mmevit_demo.json'))
    panels = summary['paths']['panels']
    assert len(panels) == 2
    panel = np.asarray(Image.open(panels[0]))
    assert panel.shape == (2 * 128, 2 * (3 * 128 + 4), 3)  # image | gt | prediction, 2 px separators, 2x
    # A failing threshold exits 1; the data are reused, not made again.
    rc = demo_tool.main(['--data-root', root, '--work-dir', work, '--max-iters', '1', '--num-panels', '0',
                         '--min-score', '1.01', '--cfg-options', 'demo.num_train=4', 'demo.num_val=3',
                         'train_dataloader.batch_size=2'])
    assert rc == 1 and 'RESULT: FAIL' in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.parametrize('task', ['sidd', 'davis'])
def test_denoising_demo_runs_and_checks_the_psnr_gain(tmp_path, capsys, task):
    """Two iterations cannot gain 3 dB: the tool reports the noisy and restored PSNR, saves noisy | restored |
    clean panels and a summary, and exits 1; with the threshold lowered below the measured gain it passes."""
    root, work = str(tmp_path / 'data'), str(tmp_path / 'work')
    small = ['demo.num_train=4', 'demo.num_val=2'] if task == 'sidd' else ['demo.num_train=2', 'demo.num_val=1']
    rc = demo_tool.main([task, '--data-root', root, '--work-dir', work, '--max-iters', '2', '--num-panels', '2',
                         '--cfg-options', *small])
    out = capsys.readouterr().out
    assert rc == 1 and 'RESULT: FAIL (needs a PSNR gain >= 3.0 dB)' in out and 'held-out PSNR: noisy' in out
    log = [d for d in os.listdir(work) if osp.isdir(osp.join(work, d))][0]
    summary = json.load(open(osp.join(work, log, 'summary.json')))
    assert summary['task'] == task and not summary['passed']
    assert abs(summary['gain_db'] - (summary['psnr'] - summary['noisy_psnr'])) < 1e-9
    assert summary['paths']['panels'] and all(osp.isfile(p) for p in summary['paths']['panels'])
    panel = np.asarray(Image.open(summary['paths']['panels'][0]))
    assert panel.ndim == 3 and panel.shape[1] > 2 * panel.shape[0] // (4 if task == 'davis' else 1)
    with pytest.raises(ValueError, match='--min-ratio applies to the segmentation demo'):
        demo_tool.main([task, '--data-root', root, '--work-dir', str(tmp_path / 'w2'), '--min-ratio', '2',
                        '--cfg-options', *small])
