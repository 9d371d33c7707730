"""tools/train.py and tools/test.py on a tiny mmseg SkipAt-UPerNet (64x64 ADE20K-layout images), an mmdet
RetinaNet and an mmpretrain classifier shaped like the official SkipAt fixture. Subprocess runs (as a user
starts them) are marked e2e; the library behind the options (mmevit.engine.runner_setup, runner_checkpoints,
hooks.checkpoint_hook) is also tested in-process."""
import glob
import itertools
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import mmevit
from mmevit import compat
from mmevit.engine.convert import CheckpointMismatchError
from tools_helpers import make_cls_data, run_tool, write_cls_config, write_det_config, write_seg_config

FIXTURE = 'skipat/skipat_tiny_160_b2.pt'
e2e = pytest.mark.e2e


def _load_fixture(fixtures_dir: str, name: str = FIXTURE) -> dict:
    return torch.load(osp.join(fixtures_dir, name), weights_only=False)


def _build(cfg_path: str):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def _model_cfg(cfg_path: str):
    from mmengine.config import Config
    cfg = Config.fromfile(cfg_path)
    return cfg.model, cfg.default_scope


def _seg_input(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 64, 64, generator=g)


def _log(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The tiny segmentor trained for 2 iterations, a checkpoint every iteration, keeping 1."""
    root = tmp_path_factory.mktemp('seg')
    cfg = write_seg_config(root)
    work_dir = str(root / 'work')
    proc = run_tool(['train.py', cfg, '--work-dir', work_dir, '--cfg-options', 'default_hooks.checkpoint.interval=1',
                     'default_hooks.checkpoint.max_keep_ckpts=1'])
    return dict(root=root, cfg=cfg, work_dir=work_dir, ckpt=osp.join(work_dir, 'iter_2.pth'), log=_log(proc))


# ---------------------------------------------------------------------------------------------- train.py
@e2e
def test_train_writes_checkpoint(trained):
    assert 'Iter(train) [2/2]' in trained['log']
    state = compat.torch_load(trained['ckpt'])  # weights_only=True: the Runner checkpoint must be safe to read
    assert state['meta']['iter'] == 2
    assert any(k.startswith('backbone.blocks.2.phi.') for k in state['state_dict'])
    # max_keep_ckpts=1 still deletes the run's own older checkpoint, and the record of what it wrote travels
    # in the checkpoint.
    assert not osp.exists(osp.join(trained['work_dir'], 'iter_1.pth'))
    assert state['message_hub']['runtime_info']['mmevit_checkpoints_written'] == [trained['ckpt']]


@e2e
def test_resume_latest_continues_without_trust(trained, tmp_path):
    # Copy the work dir so that other tests keep the 2-iteration state.
    work_dir = str(tmp_path / 'work')
    shutil.copytree(trained['work_dir'], work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'iter_2.pth'))
    log = _log(run_tool(['train.py', trained['cfg'], '--work-dir', work_dir, '--resume',
                         '--cfg-options', 'train_cfg.max_iters=4']))
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [1/4]' not in log
    assert compat.torch_load(osp.join(work_dir, 'iter_4.pth'))['meta']['iter'] == 4


@e2e
def test_max_keep_ckpts_never_deletes_files_the_run_did_not_write(trained, tmp_path):
    """Resuming into a folder that holds a user's iter_2.pth: mmengine's max_keep_ckpts pops step 2 (restored
    from the checkpoint) and would delete that file; only the run's own iter_3.pth may go."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(b'user data')
    log = _log(run_tool(['train.py', trained['cfg'], '--work-dir', str(work_dir), '--resume', trained['ckpt'],
                         '--cfg-options', 'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=1',
                         'default_hooks.checkpoint.max_keep_ckpts=1']))
    assert 'resumed epoch: 0, iter: 2' in log
    assert (work_dir / 'iter_2.pth').read_bytes() == b'user data'
    assert f'not deleting {work_dir / "iter_2.pth"}' in log
    assert not (work_dir / 'iter_3.pth').exists()  # written by this run: rotated out
    assert compat.torch_load(str(work_dir / 'iter_4.pth'))['meta']['iter'] == 4
    assert osp.isfile(trained['ckpt'])


@e2e
def test_resume_from_path(trained, tmp_path):
    work_dir = str(tmp_path / 'work')
    log = _log(run_tool(['train.py', trained['cfg'], '--work-dir', work_dir, '--resume', trained['ckpt'],
                         '--cfg-options', 'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=1']))
    assert 'resumed epoch: 0, iter: 2' in log
    assert sorted(os.listdir(work_dir)).count('iter_3.pth') == 1
    assert not osp.exists(osp.join(work_dir, 'iter_1.pth'))


@e2e
def test_resume_missing_path_is_clear(trained, tmp_path):
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', str(tmp_path / 'w'), '--resume',
                     str(tmp_path / 'nope.pth')], check=False)
    assert proc.returncode != 0
    assert 'FileNotFoundError' in proc.stderr and 'nope.pth' in proc.stderr


@e2e
def test_resume_refuses_a_bare_state_dict(trained, tmp_path):
    bare = str(tmp_path / 'weights.pth')
    torch.save(compat.torch_load(trained['ckpt'])['state_dict'], bare)
    work_dir = tmp_path / 'w'
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', str(work_dir), '--resume', bare], check=False)
    assert proc.returncode != 0
    assert f'cannot resume from {bare}: it is a bare state dict' in proc.stderr
    assert f'load_from={bare}' in proc.stderr and 'Traceback' not in proc.stderr
    assert not work_dir.exists()  # refused before the Runner created anything


@e2e
def test_train_refuses_work_dir_that_is_a_file(trained, tmp_path):
    user_file = tmp_path / 'notes.txt'
    user_file.write_text('mine')
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', str(user_file)], check=False)
    assert proc.returncode != 0 and 'FileExistsError' in proc.stderr
    assert user_file.read_text() == 'mine'


@e2e
def test_train_refuses_work_dir_with_checkpoints_unless_force(trained, tmp_path):
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(b'user data')
    (work_dir / 'last_checkpoint').write_text('/somewhere/iter_2.pth')
    args = ['train.py', trained['cfg'], '--work-dir', str(work_dir), '--cfg-options', 'train_cfg.max_iters=1',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=1']
    refused = run_tool(args, check=False)
    assert refused.returncode != 0
    assert 'iter_2.pth, last_checkpoint' in refused.stderr and '--force' in refused.stderr
    assert sorted(os.listdir(work_dir)) == ['iter_2.pth', 'last_checkpoint']  # nothing written
    forced = run_tool(args + ['--force'])
    assert 'Iter(train) [1/1]' in _log(forced)
    assert (work_dir / 'iter_2.pth').read_bytes() == b'user data'
    assert compat.torch_load(str(work_dir / 'iter_1.pth'))['meta']['iter'] == 1


@e2e
def test_auto_scale_lr_and_no_validate(trained, tmp_path):
    cfg = tmp_path / 'scaled.py'
    cfg.write_text(f"_base_ = [{trained['cfg']!r}]\nauto_scale_lr = dict(enable=False, base_batch_size=8)\n")
    log = _log(run_tool(['train.py', str(cfg), '--work-dir', str(tmp_path / 'w'), '--auto-scale-lr',
                         '--no-validate', '--cfg-options', 'train_cfg.max_iters=1', 'train_cfg.val_interval=1']))
    # batch 2 on one process against a base of 8: the lr is scaled by 0.25
    assert 'LR is set based on batch size of 8 and the current batch size is 2' in log
    assert 'Iter(train) [1/1]' in log and 'Iter(val)' not in log
    dumped = open(tmp_path / 'w' / 'scaled.py').read()
    assert 'val_dataloader = None' in dumped and 'val_evaluator = None' in dumped


@e2e
def test_checkpoint_round_trip_identical_outputs(trained, tmp_path):
    from mmengine.runner import load_checkpoint, save_checkpoint
    torch.manual_seed(0)
    model = _build(trained['cfg']).eval()
    load_checkpoint(model, trained['ckpt'], strict=True)
    x = _seg_input()
    with torch.no_grad():
        ref = model(x, mode='tensor')
    path = str(tmp_path / 'round_trip.pth')
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {'note': 'round trip'}}, path)
    torch.manual_seed(1)
    other = _build(trained['cfg']).eval()
    with torch.no_grad():
        assert not torch.equal(other(x, mode='tensor'), ref)  # a fresh init differs...
    load_checkpoint(other, path, strict=True)
    with torch.no_grad():
        assert torch.equal(other(x, mode='tensor'), ref)  # ...and the round trip restores it exactly


@e2e
def test_train_and_test_mmdet_config(tmp_path):
    cfg = write_det_config(tmp_path)
    work_dir = str(tmp_path / 'work')
    proc = run_tool(['train.py', cfg, '--work-dir', work_dir])
    assert 'Iter(train) [2/2]' in _log(proc)
    show, out = tmp_path / 'show', str(tmp_path / 'dets.pkl')
    proc = run_tool(['test.py', cfg, osp.join(work_dir, 'iter_2.pth'), '--work-dir', str(tmp_path / 'test'),
                     '--show-dir', str(show), '--out', out])
    assert 'coco/bbox_mAP' in _log(proc)
    assert len(glob.glob(str(show / '*.jpg'))) == 4
    import mmengine
    dets = mmengine.load(out)  # DumpDetResults: one entry per image, predictions without ground truth
    assert len(dets) == 4 and 'pred_instances' in dets[0] and 'gt_instances' not in dets[0]
    assert dets[0]['pred_instances']['bboxes'].shape[1] == 4


@e2e
def test_train_mmpretrain_config(tmp_path):
    make_cls_data(str(tmp_path / 'cls'), num=4, size=64)
    cfg = write_cls_config(tmp_path, img_size=64, train=True)
    work_dir = str(tmp_path / 'work')
    proc = run_tool(['train.py', cfg, '--work-dir', work_dir])
    assert 'Iter(train) [2/2]' in _log(proc)
    assert compat.torch_load(osp.join(work_dir, 'iter_2.pth'))['meta']['iter'] == 2


# ------------------------------------------------------------------------------------------------ --amp
@e2e
def test_amp(trained, tmp_path):
    work_dir = str(tmp_path / 'amp')
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', work_dir, '--amp',
                     '--cfg-options', 'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1'])
    dumped = open(osp.join(work_dir, osp.basename(trained['cfg']))).read()
    if torch.cuda.is_available():
        assert "type='AmpOptimWrapper'" in dumped
    else:
        assert "type='CPUAmpOptimWrapper'" in dumped and "dtype='bfloat16'" in dumped
    assert 'Iter(train) [1/1]' in _log(proc)
    assert osp.isfile(osp.join(work_dir, 'iter_1.pth'))


def test_cpu_amp_wrapper_autocasts_to_bf16():
    from mmevit.engine import CPUAmpOptimWrapper
    lin = torch.nn.Linear(4, 4)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(lin.parameters(), lr=0.1))
    with wrapper.optim_context(lin):
        y = lin(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    wrapper.update_params(y.float().sum())
    assert lin.weight.dtype == torch.float32


def test_cpu_amp_wrapper_names_dtype_failures():
    from mmevit.engine import CPUAmpOptimWrapper
    lin = torch.nn.Linear(4, 4)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(lin.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match='Linear cannot run .* autocast.*without --amp'):
        with wrapper.optim_context(lin):
            raise RuntimeError('"foo_cpu" not implemented for \'BFloat16\'')
    with pytest.raises(ValueError, match='unrelated'):  # other errors pass through untouched
        with wrapper.optim_context(lin):
            raise ValueError('unrelated')


# ----------------------------------------------------------------------------------------------- test.py
def _miou_from_pngs(pred_dir: str, ann_dir: str, num_classes: int = 3) -> float:
    """mIoU (%) of ADE20K-format PNG predictions (labels 1..K) against ADE20K label maps (0 = ignore)."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for path in sorted(glob.glob(osp.join(ann_dir, '*.png'))):
        gt = np.array(Image.open(path)).astype(np.int64)
        pred = np.array(Image.open(osp.join(pred_dir, osp.basename(path)))).astype(np.int64)
        assert pred.shape == gt.shape and set(np.unique(pred)) <= {1, 2, 3}
        valid = gt > 0
        for c in range(1, num_classes + 1):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c - 1] += (p & g).sum()
            union[c - 1] += (p | g).sum()
    return float(np.nanmean(np.where(union > 0, inter / np.maximum(union, 1), np.nan)) * 100)


def _metrics(work_dir: str) -> dict:
    files = glob.glob(osp.join(work_dir, '*', '*.json'))
    assert len(files) == 1, files
    return json.load(open(files[0]))


@e2e
def test_test_evaluates_checkpoint_and_writes_label_maps(trained, tmp_path):
    """mmseg's --out: a directory of ADE20K-format PNG label maps whose mIoU is the one reported."""
    work_dir, out = str(tmp_path / 'test'), tmp_path / 'preds'
    log = _log(run_tool(['test.py', trained['cfg'], trained['ckpt'], '--work-dir', work_dir, '--out', str(out)]))
    assert f'{trained["ckpt"]}: 127 keys match EncoderDecoder' in log  # no conversion, no temporary copy
    miou = _metrics(work_dir)['mIoU']
    assert sorted(os.listdir(out)) == ['validation_0.png', 'validation_1.png']
    ann_dir = osp.join(trained['root'], 'ade', 'annotations', 'validation')
    assert _miou_from_pngs(str(out), ann_dir) == pytest.approx(miou, abs=0.01)
    # --out never writes into a non-empty directory.
    again = run_tool(['test.py', trained['cfg'], trained['ckpt'], '--work-dir', work_dir, '--out', str(out)],
                     check=False)
    assert again.returncode != 0 and 'non-empty directory' in again.stderr


@e2e
def test_test_tta(trained, tmp_path):
    cfg = write_seg_config(trained['root'], data_root=str(trained['root'] / 'ade'), tta=True)
    work_dir, out = str(tmp_path / 'test'), tmp_path / 'preds'
    run_tool(['test.py', cfg, trained['ckpt'], '--work-dir', work_dir, '--tta', '--out', str(out)])
    dumped = open(osp.join(work_dir, osp.basename(cfg))).read()
    assert "type='SegTTAModel'" in dumped and "type='TestTimeAug'" in dumped
    ann_dir = osp.join(trained['root'], 'ade', 'annotations', 'validation')
    assert _miou_from_pngs(str(out), ann_dir) == pytest.approx(_metrics(work_dir)['mIoU'], abs=0.01)


@e2e
def test_test_compile_gives_the_eager_predictions(trained, tmp_path):
    """--compile: the backbone runs compiled with frozen weights (the hook says so) and the label maps are the
    eager run's."""
    eager_out, compiled_out = tmp_path / 'eager', tmp_path / 'compiled'
    run_tool(['test.py', trained['cfg'], trained['ckpt'], '--work-dir', str(tmp_path / 'w0'), '--out', str(eager_out)])
    log = _log(run_tool(['test.py', trained['cfg'], trained['ckpt'], '--work-dir', str(tmp_path / 'w1'), '--out',
                         str(compiled_out), '--compile']))
    assert 'InferenceCompileHook: compiled backbone' in log
    for name in sorted(os.listdir(eager_out)):
        np.testing.assert_array_equal(np.asarray(Image.open(compiled_out / name)),
                                      np.asarray(Image.open(eager_out / name)))
    assert _metrics(str(tmp_path / 'w1'))['mIoU'] == _metrics(str(tmp_path / 'w0'))['mIoU']


@e2e
def test_test_refuses_foreign_checkpoint(trained, fixtures_dir, tmp_path):
    """An official Uformer checkpoint handed to the SkipAt segmentor: refused by name, nothing evaluated."""
    foreign = str(tmp_path / 'uformer.pth')
    torch.save(_load_fixture(fixtures_dir, 'uformer/uformer_tiny_e4_64.pt')['state_dict'], foreign)
    proc = run_tool(['test.py', trained['cfg'], foreign, '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode != 0
    assert f'error: {foreign} cannot be loaded into EncoderDecoder' in proc.stderr
    assert 'encoderlayer_0.blocks.0.norm1.weight' in proc.stderr
    assert 'Iter(test)' not in _log(proc) and 'mIoU' not in _log(proc)


@e2e
def test_test_missing_decode_head_is_refused_unless_allow_missing(trained, tmp_path):
    ckpt = compat.torch_load(trained['ckpt'])
    partial = str(tmp_path / 'no_head.pth')
    torch.save({'state_dict': {k: v for k, v in ckpt['state_dict'].items() if not k.startswith('decode_head.')}},
               partial)
    args = ['test.py', trained['cfg'], partial, '--work-dir', str(tmp_path / 'w')]
    refused = run_tool(args, check=False)
    assert refused.returncode != 0 and 'Iter(test)' not in _log(refused)
    assert 'missing keys (56): decode_head.bottleneck.bn.bias' in refused.stderr
    assert 'decode_head.conv_seg.weight' in refused.stderr
    allowed = _log(run_tool(args + ['--allow-missing']))
    assert '--allow-missing: 56 keys of EncoderDecoder are not in the checkpoint' in allowed
    assert 'decode_head.conv_seg.weight' in allowed and 'mIoU' in allowed
    assert not glob.glob(str(tmp_path / 'w' / 'converted_*.pth'))


@e2e
def test_test_untrusted_checkpoint_needs_opt_in(trained, tmp_path):
    import datetime
    ckpt = torch.load(trained['ckpt'], weights_only=False)
    ckpt['meta']['saved_at'] = datetime.datetime(2024, 1, 1)  # not on the weights_only allow-list
    path = str(tmp_path / 'odd.pth')
    torch.save(ckpt, path)
    args = ['test.py', trained['cfg'], path, '--work-dir', str(tmp_path / 'w')]
    refused = run_tool(args, check=False)
    assert refused.returncode != 0 and '--trust-checkpoint' in refused.stderr
    trusted = run_tool(args + ['--trust-checkpoint'])
    assert 'mIoU' in _log(trusted)


@e2e
def test_test_missing_checkpoint(trained, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    proc = run_tool(['test.py', trained['cfg'], missing, '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode != 0
    assert f'error: checkpoint file not found: {missing}' in proc.stderr and 'Traceback' not in proc.stderr


@e2e
def test_test_show_dir(trained, tmp_path):
    show = tmp_path / 'show'
    run_tool(['test.py', trained['cfg'], trained['ckpt'], '--work-dir', str(tmp_path / 'w'), '--show-dir', str(show)])
    assert len(glob.glob(str(show / '**' / '*.png'), recursive=True)) == 2


@e2e
def test_test_converts_official_classifier(fixtures_dir, tmp_path):
    fx = _load_fixture(fixtures_dir)
    images = make_cls_data(str(tmp_path / 'cls'), num=2, size=160)
    cfg = write_cls_config(tmp_path, img_size=160)
    official = str(tmp_path / 'skipat_official.pth')
    torch.save({'model': fx['state_dict'], 'epoch': 300}, official)  # official train.py layout
    work_dir = tmp_path / 'work'
    out = str(tmp_path / 'preds.pkl')
    log = _log(run_tool(['test.py', cfg, official, '--work-dir', str(work_dir), '--out', out]))
    assert f'{official}: converted for ImageClassifier (158 keys)' in log and 'accuracy/top1' in log
    assert 'blocks.3.attn.qkv.weight' in log  # the unused attention of skipped blocks is left out, by name
    assert 'missing keys' not in log and 'unexpected key' not in log
    assert not glob.glob(str(work_dir / 'converted_*.pth'))  # the temporary file is removed
    # The tool's predictions equal the official model's on the same pixels.
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # robust to a scope left by other tests
        model = mmevit.from_official('skipat_vit', fx['arch'], fx['state_dict'])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        expected = model((x - 127.5) / 127.5).softmax(-1)
    import mmengine
    scores = torch.stack([p['pred_score'] for p in mmengine.load(out)])
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ checkpoints for test.py / --resume (fast)
@pytest.mark.parametrize('name, named', [
    ('lit/lit_s_tiny_224.pt', 'layers.0.blocks.0.norm2.weight'),  # LIT-S: an unrecognised layout, first keys
    ('lit/lit_ti_tiny_224.pt', 'patch_embed1.proj.weight'),  # an unrecognised layout: its first keys
    ('uformer/uformer_tiny_e4_64.pt', 'encoderlayer_0.blocks.0.norm1.weight'),
])
def test_foreign_family_checkpoints_are_refused(fixtures_dir, tmp_path, name, named):
    """Official LIT and Uformer checkpoints for a SkipAt classifier never reach the Runner."""
    from mmevit.engine.runner_checkpoints import checkpoint_for_model
    model_cfg, scope = _model_cfg(write_cls_config(tmp_path))
    path = str(tmp_path / 'foreign.pth')
    torch.save({'model': _load_fixture(fixtures_dir, name)['state_dict']}, path)
    for allow_missing in (False, True):  # --allow-missing does not make a foreign model fit
        with pytest.raises(CheckpointMismatchError) as e:
            with checkpoint_for_model(path, model_cfg, scope, str(tmp_path / 'w'), allow_missing=allow_missing):
                pytest.fail('a foreign checkpoint reached the Runner')
        msg = str(e.value)
        assert path in msg and 'ImageClassifier' in msg and named in msg
    assert not (tmp_path / 'w').exists()


def test_model_without_mmevit_module_is_checked_strictly(tmp_path):
    """A model with nothing to convert (an mmpretrain LeNet5) is held to its checkpoint's raw keys."""
    from mmevit.engine.runner_checkpoints import checkpoint_for_model
    from mmengine.registry import DefaultScope
    from mmengine.registry import MODELS
    model_cfg = dict(type='ImageClassifier', backbone=dict(type='LeNet5'),
                     head=dict(type='ClsHead'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        state = MODELS.build(model_cfg).state_dict()
    good, bad = str(tmp_path / 'good.pth'), str(tmp_path / 'bad.pth')
    torch.save({'state_dict': state, 'meta': {}}, good)
    with checkpoint_for_model(good, model_cfg, 'mmpretrain', str(tmp_path / 'w')) as path:
        assert path == good  # already the model's keys: loaded as it is
    torch.save({'state_dict': {**{k: v for k, v in state.items() if k != 'backbone.features.0.weight'},
                               'extra.weight': torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(1\): backbone.features.0.weight') as e:
        with checkpoint_for_model(bad, model_cfg, 'mmpretrain', str(tmp_path / 'w')):
            pass
    assert 'unexpected keys (1): extra.weight' in str(e.value)


def test_check_resumable(trained_like_ckpt):
    from mmevit.engine.runner_checkpoints import NotResumableError, check_resumable
    path, model_cfg, scope, tmp = trained_like_ckpt
    check_resumable(path, model_cfg, scope)  # a Runner checkpoint of this model
    ckpt = torch.load(path, weights_only=False)
    no_optim = str(tmp / 'best.pth')
    torch.save({k: v for k, v in ckpt.items() if k != 'optimizer'}, no_optim)
    with pytest.raises(NotResumableError, match='saved without optimizer state.*without the optimizer'):
        check_resumable(no_optim, model_cfg, scope)
    other = dict(model_cfg, decode_head=dict(model_cfg['decode_head'], num_classes=5))
    with pytest.raises(NotResumableError, match=r'(?s)another model or config.*decode_head.conv_seg.weight: '
                                                r'checkpoint \(3, 16, 1, 1\) vs model \(5, 16, 1, 1\)'):
        check_resumable(path, other, scope)
    bare = str(tmp / 'bare.pth')
    torch.save(ckpt['state_dict'], bare)
    with pytest.raises(NotResumableError, match='bare state dict .*without the meta, message_hub, optimizer'):
        check_resumable(bare, model_cfg, scope)


@pytest.fixture
def trained_like_ckpt(tmp_path):
    """A Runner-format checkpoint of the tiny segmentor (random weights), without running a training."""
    cfg = write_seg_config(tmp_path, data_root=str(tmp_path / 'unused'))
    model_cfg, scope = _model_cfg(cfg)
    path = str(tmp_path / 'iter_2.pth')
    torch.save({'meta': {'epoch': 0, 'iter': 2}, 'state_dict': _build(cfg).state_dict(),
                'message_hub': {}, 'optimizer': {'state': {}, 'param_groups': []}}, path)
    return path, model_cfg, scope, tmp_path


# ---------------------------------------------------------------------------- SafeCheckpointHook (fast)
_VALIDATIONS = itertools.count(1)  # every validation of every toy run scores better than the one before


class _ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)), data_samples=float(i))


def _toy_runner(work_dir, name, max_iters, resume_from=None, **ckpt):
    """A real mmengine Runner on a 2-parameter model, validated every iteration by a metric that improves each
    time, so that best checkpoints rotate too."""
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            out = self.lin(torch.stack(inputs) if isinstance(inputs, list) else inputs)
            return dict(loss=out.pow(2).mean()) if mode == 'loss' else list(out)

    class Improving(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results.append(0)

        def compute_metrics(self, results):
            return dict(acc=float(next(_VALIDATIONS)))

    loader = dict(dataset=_ToyData(), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                  num_workers=0)
    from mmevit.engine.hooks.checkpoint_hook import SafeCheckpointHook
    return Runner(model=Toy(), work_dir=str(work_dir), experiment_name=name, train_dataloader=loader,
                  val_dataloader=loader, val_evaluator=[Improving()], val_cfg=dict(),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                  default_hooks=dict(checkpoint=dict(type=SafeCheckpointHook, by_epoch=False, interval=1,
                                                     max_keep_ckpts=1, save_best='acc', rule='greater', **ckpt)),
                  resume=resume_from is not None, load_from=resume_from, default_scope='mmengine',
                  log_level='WARNING')


def test_safe_checkpoint_hook_deletes_only_its_own_files(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    _toy_runner(a, 'toy_a', max_iters=2).train()
    assert sorted(f for f in os.listdir(a) if f.endswith('.pth')) == ['best_acc_iter_2.pth', 'iter_2.pth']
    # Resume run a's checkpoint into b, which holds a user's iter_2.pth: step 2 and a's best checkpoint come
    # back through the message hub, and mmengine would delete both.
    b.mkdir()
    (b / 'iter_2.pth').write_bytes(b'user data')
    _toy_runner(b, 'toy_b', max_iters=4, resume_from=str(a / 'iter_2.pth')).train()
    assert (b / 'iter_2.pth').read_bytes() == b'user data'
    assert (a / 'best_acc_iter_2.pth').is_file() and (a / 'iter_2.pth').is_file()
    assert sorted(f for f in os.listdir(b) if f.endswith('.pth')) == ['best_acc_iter_4.pth', 'iter_2.pth',
                                                                      'iter_4.pth']
    # Resuming its own checkpoint in its own folder, the training still rotates the files it wrote earlier.
    _toy_runner(b, 'toy_b2', max_iters=5, resume_from=str(b / 'iter_4.pth')).train()
    assert sorted(f for f in os.listdir(b) if f.endswith('.pth')) == ['best_acc_iter_5.pth', 'iter_2.pth',
                                                                      'iter_5.pth']


# ------------------------------------------------------------------------------- config edits (fast)
def test_runner_setup_config_edits(tmp_path):
    from mmengine.config import Config
    from mmevit.engine import runner_setup as rs
    cfg = Config(dict(load_from='pretrained.pth', optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                      default_hooks=dict(visualization=dict(type='DetVisualizationHook'),
                                         checkpoint=dict(type='CheckpointHook', max_keep_ckpts=2))))
    assert rs.set_work_dir(cfg, None, 'configs/x/my_cfg.py') == osp.join('./work_dirs', 'my_cfg')
    rs.set_work_dir(cfg, str(tmp_path / 'w'), 'my_cfg.py')
    # --resume with nothing to resume yet: a new run that keeps the pretrained initialisation.
    rs.set_resume(cfg, 'auto')
    assert not cfg.get('resume') and cfg.load_from == 'pretrained.pth'
    os.makedirs(cfg.work_dir)
    (tmp_path / 'w' / 'last_checkpoint').write_text(str(tmp_path / 'w' / 'iter_8.pth'))
    with pytest.raises(rs.WorkDirInUseError, match='last_checkpoint'):
        rs.check_work_dir(cfg)
    rs.check_work_dir(cfg, force=True)
    rs.set_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from is None
    rs.check_work_dir(cfg)  # resuming: the work dir's checkpoints are this training's
    with pytest.raises(FileNotFoundError, match='iter_8.pth'):
        rs.check_resume(cfg)  # last_checkpoint names a file that is gone
    with pytest.raises(FileNotFoundError, match='gone.pth'):
        rs.set_resume(cfg, str(tmp_path / 'gone.pth'))
    rs.use_safe_checkpoint_hook(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='mmevit.SafeCheckpointHook', max_keep_ckpts=2)
    kind = rs.enable_amp(cfg)
    assert kind == ('AmpOptimWrapper' if torch.cuda.is_available() else 'CPUAmpOptimWrapper')
    rs.enable_visualization(cfg, 'shows')
    assert cfg.default_hooks.visualization == dict(type='DetVisualizationHook', draw=True,
                                                   test_out_dir=osp.abspath('shows'))
    rs.enable_visualization(cfg, show=True, wait_time=0.5)
    assert cfg.default_hooks.visualization.show is True and cfg.default_hooks.visualization.wait_time == 0.5
    with pytest.raises(KeyError, match='base_batch_size'):
        rs.enable_auto_scale_lr(cfg)
    with pytest.raises(KeyError, match='tta_model and tta_pipeline'):
        rs.enable_tta(cfg)


def test_set_test_out_per_toolbox(tmp_path):
    from mmengine.config import Config
    from mmevit.engine import runner_setup as rs
    seg = Config(dict(default_scope='mmseg', test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU'])))
    rs.set_test_out(seg, str(tmp_path / 'maps'))
    assert seg.test_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'], output_dir=str(tmp_path / 'maps'),
                                      keep_results=True)
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'mine.png').write_bytes(b'')
    with pytest.raises(FileExistsError, match='non-empty directory'):
        rs.set_test_out(seg, str(tmp_path / 'full'))
    with pytest.raises(FileExistsError, match='is a file'):
        rs.set_test_out(seg, str(tmp_path / 'full' / 'mine.png'))
    with pytest.raises(KeyError, match='no IoUMetric'):
        rs.set_test_out(Config(dict(default_scope='mmseg', test_evaluator=dict(type='CityscapesMetric'))),
                        str(tmp_path / 'x'))
    det = Config(dict(default_scope='mmdet', test_evaluator=dict(type='CocoMetric')))
    rs.set_test_out(det, str(tmp_path / 'dets.pkl'))
    assert det.test_evaluator == [dict(type='CocoMetric'),
                                  dict(type='DumpDetResults', out_file_path=str(tmp_path / 'dets.pkl'))]
    cls = Config(dict(default_scope='mmpretrain', test_evaluator=[dict(type='Accuracy')]))
    rs.set_test_out(cls, str(tmp_path / 'preds.pkl'))
    assert cls.test_evaluator[-1] == dict(type='DumpResults', out_file_path=str(tmp_path / 'preds.pkl'))
    with pytest.raises(ValueError, match='.pkl'):
        rs.set_test_out(cls, str(tmp_path / 'preds.json'))
    (tmp_path / 'old.pkl').write_bytes(b'x')
    with pytest.raises(FileExistsError, match='old.pkl'):
        rs.set_test_out(cls, str(tmp_path / 'old.pkl'))
