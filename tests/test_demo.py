"""The bundled demo: dataset generator, demo config, majority baseline and a short run of tools/demo.py."""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import time

import numpy as np
import pytest
from PIL import Image

from mmevit.datasets import demo_ade
from mmevit.datasets.demo_ade import CLASSES, PALETTE, ensure_demo_ade, generate_demo_ade, sample_paths

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'skipat_t_upernet_demo.py')


def _load_demo_tool():
    spec = importlib.util.spec_from_file_location('mmevit_demo_tool', osp.join(REPO, 'tools', 'demo.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


demo_tool = _load_demo_tool()


def _tree_digest(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = osp.join(d, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ----------------------------------------------------------------------------- generator
def test_generator_layout_dtypes_classes(tmp_path):
    root = str(tmp_path / 'demo')
    m = generate_demo_ade(root, num_train=6, num_val=3, seed=0)
    assert m['classes'] == list(CLASSES) and m['num_train'] == 6 and m['num_val'] == 3
    for split, n in (('training', 6), ('validation', 3)):
        imgs = sorted(os.listdir(osp.join(root, 'images', split)))
        anns = sorted(os.listdir(osp.join(root, 'annotations', split)))
        assert len(imgs) == len(anns) == n
        assert all(f.endswith('.jpg') for f in imgs) and all(f.endswith('.png') for f in anns)
        assert [osp.splitext(f)[0] for f in imgs] == [osp.splitext(f)[0] for f in anns]
    seen = set()
    for i in range(6):
        img_path, ann_path = sample_paths(root, 'training', i)
        img, ann = Image.open(img_path), Image.open(ann_path)
        assert img.format == 'JPEG' and img.mode == 'RGB' and img.size == (128, 128)
        assert ann.format == 'PNG' and ann.mode == 'L' and ann.size == (128, 128)
        a = np.asarray(ann)
        assert a.dtype == np.uint8
        assert set(np.unique(a)) <= set(range(len(CLASSES) + 1))  # 0 = ignored "other", 1..K = classes
        assert (a == 1).mean() > 0.2  # background
        seen |= set(np.unique(a).tolist())
    assert seen >= {1, 2, 3, 4, 5}  # every class appears in a handful of images
    assert json.load(open(osp.join(root, demo_ade.MANIFEST))) == m


def test_generator_is_deterministic(tmp_path):
    def make(name, num_train, num_val, seed):
        generate_demo_ade(str(tmp_path / name), num_train, num_val, seed=seed)
        return _tree_digest(str(tmp_path / name))

    a, b, c = make('a', 4, 2, 3), make('b', 4, 2, 3), make('c', 4, 2, 4)
    assert a == b
    assert {k: v for k, v in a.items() if k != demo_ade.MANIFEST} != \
        {k: v for k, v in c.items() if k != demo_ade.MANIFEST}
    # A smaller dataset is a prefix of a larger one (each sample has its own seed).
    d = make('d', 2, 1, 3)
    assert all(a[k] == v for k, v in d.items() if k != demo_ade.MANIFEST)


def test_generator_never_overwrites(tmp_path):
    root = str(tmp_path / 'demo')
    generate_demo_ade(root, 2, 1)
    before = _tree_digest(root)
    with pytest.raises(FileExistsError):
        generate_demo_ade(root, 2, 1)
    assert _tree_digest(root) == before

    # One pre-existing target file: refused before anything is written.
    other = tmp_path / 'other'
    user_file = other / 'images' / 'training' / 'DEMO_train_00000001.jpg'
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b'user data')
    with pytest.raises(FileExistsError):
        generate_demo_ade(str(other), 2, 1)
    assert user_file.read_bytes() == b'user data'
    assert sorted(p.name for p in other.rglob('*') if p.is_file()) == ['DEMO_train_00000001.jpg']

    # ensure_demo_ade: reuses a complete demo dataset, refuses a non-empty foreign directory.
    m, generated = ensure_demo_ade(root)
    assert not generated and m['num_train'] == 2 and _tree_digest(root) == before
    with pytest.raises(FileExistsError):
        ensure_demo_ade(str(other))
    assert user_file.read_bytes() == b'user data'
    m, generated = ensure_demo_ade(str(tmp_path / 'fresh'), num_train=1, num_val=1)
    assert generated and m['num_train'] == 1


# ----------------------------------------------------------------------------- config + loading
def test_config_matches_generator_and_loads_ade_style(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmevit  # noqa: F401  (registers SkipAtViT into mmseg)
    cfg = Config.fromfile(CONFIG)
    assert list(cfg.demo_metainfo['classes']) == list(CLASSES)
    assert [list(p) for p in cfg.demo_metainfo['palette']] == PALETTE
    assert cfg.model.decode_head.num_classes == len(CLASSES)
    assert cfg.model.backbone.type == 'SkipAtViT' and cfg.model.backbone.arch == 't'
    assert cfg.model.backbone.get('skip_indices') is None  # the paper's default (3..8)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'

    root = str(tmp_path / 'demo')
    generate_demo_ade(root, 2, 2)
    demo_tool.set_data_root(cfg, root)
    init_default_scope('mmseg')
    ds = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(ds) == 2 and ds.metainfo['classes'] == tuple(CLASSES)
    # mmseg's ADE20K-style loading (reduce_zero_label): stored 0 -> 255 (ignored), v -> v - 1.
    gt = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    raw = np.asarray(Image.open(sample_paths(root, 'validation', 0)[1]))
    np.testing.assert_array_equal(gt, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    np.testing.assert_array_equal(next(iter(demo_tool.dataset_labels(ds))), gt)
    assert set(np.unique(gt)) <= set(range(len(CLASSES))) | {255}


def test_set_schedule():
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    demo_tool.set_schedule(cfg, 40)
    assert cfg.train_cfg.max_iters == 40 and cfg.train_cfg.val_interval == 40
    assert cfg.default_hooks.checkpoint.interval == 40
    warm, decay = cfg.param_scheduler
    assert (warm.begin, warm.end) == (0, 4) and (decay.begin, decay.end) == (4, 40)


# ----------------------------------------------------------------------------- baseline
def test_majority_baseline_hand_example():
    ign = 255
    train = [np.array([[0, 1, 1], [1, ign, 2]]), np.array([[1, 3, 0]])]  # counts 0:2 1:4 2:1 3:1 -> class 1
    val = [np.array([[1, 1, 0], [2, ign, 1]]), np.array([[ign, 0, 1]])]  # valid: 0:2 1:4 2:1 (7 pixels)
    out = demo_tool.majority_baseline(train, val, num_classes=4, ignore_index=ign)
    assert out['cls'] == 1 and out['train_counts'] == [2, 4, 1, 1]
    # Predicting 1 on the 7 valid pixels: IoU_1 = 4/7, IoU_0 = IoU_2 = 0 (union = their label area),
    # class 3 is neither present nor predicted: union 0 -> NaN, left out of the mean (mmseg's nanmean).
    iou = np.array(out['iou'])
    np.testing.assert_allclose(iou[:3], [0., 4 / 7, 0.])
    assert np.isnan(iou[3])
    assert out['miou'] == pytest.approx((4 / 7) / 3)
    assert out['aacc'] == pytest.approx(4 / 7)


def test_majority_baseline_matches_iou_metric():
    """The baseline scores a constant prediction exactly as mmseg's IoUMetric scores a model."""
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    import torch
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
    ours = demo_tool.score_constant_prediction(1, labels, 3)['miou']
    assert ours == pytest.approx(ref, abs=1e-4)  # mmseg rounds to 0.01 %


# ----------------------------------------------------------------------------- a short run of the tool
def test_demo_tool_runs_a_few_iterations(tmp_path, capsys):
    root = str(tmp_path / 'demo')
    generate_demo_ade(root, num_train=8, num_val=4)
    work = str(tmp_path / 'work')
    t0 = time.time()
    rc = demo_tool.main(['--data-root', root, '--work-dir', work, '--max-iters', '3', '--num-panels', '2',
                         '--min-miou', '0', '--min-ratio', '0', '--cfg-options',
                         'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2'])
    elapsed = time.time() - t0
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'RESULT: PASS' in out and 'majority baseline mIoU' in out
    logs = [d for d in os.listdir(work) if osp.isdir(osp.join(work, d))]
    assert len(logs) == 1
    summary = json.load(open(osp.join(work, logs[0], 'summary.json')))
    assert summary['max_iters'] == 3 and 0 <= summary['miou'] <= 1 and 0 < summary['baseline_miou'] <= 1
    assert summary['baseline_class'] == 'background'
    assert osp.isfile(osp.join(work, 'iter_3.pth'))
    panels = summary['paths']['panels']
    assert len(panels) == 2
    panel = np.asarray(Image.open(panels[0]))
    assert panel.shape == (2 * 128, 2 * (3 * 128 + 4), 3)  # image | gt | prediction, 2 px separators, 2x
    assert elapsed < 60, f'3 iterations + evaluation took {elapsed:.0f}s'
