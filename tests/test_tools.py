"""End-to-end tests of tools/train.py and tools/test.py on a tiny
mmseg SkipAt-UPerNet (64x64 ADE20K-layout images) and an mmpretrain classifier shaped like the official
SkipAt fixture. Every run is a subprocess, as a user would start it."""
import glob
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

import mmevit
from mmevit import compat
from tools_helpers import TOOLS, make_cls_data, run_tool, write_cls_config, write_det_config, write_seg_config

FIXTURE = 'skipat/skipat_tiny_160_b2.pt'


def _load_fixture(fixtures_dir: str) -> dict:
    return torch.load(osp.join(fixtures_dir, FIXTURE), weights_only=False)


def _build(cfg_path: str):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def _seg_input(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 64, 64, generator=g)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The tiny segmentor trained for 2 iterations (checkpoint every 2)."""
    root = tmp_path_factory.mktemp('seg')
    cfg = write_seg_config(root)
    work_dir = str(root / 'work')
    proc = run_tool(['train.py', cfg, '--work-dir', work_dir])
    return dict(root=root, cfg=cfg, work_dir=work_dir, log=proc.stdout + proc.stderr)


# ---------------------------------------------------------------------------------------------- train.py
def test_train_writes_checkpoint(trained):
    ckpt = osp.join(trained['work_dir'], 'iter_2.pth')
    assert osp.isfile(ckpt)
    assert 'Iter(train) [2/2]' in trained['log']
    state = compat.torch_load(ckpt)  # weights_only=True: the Runner checkpoint must be safe to read
    assert state['meta']['iter'] == 2
    assert any(k.startswith('backbone.blocks.2.phi.') for k in state['state_dict'])


def test_resume_latest_continues_without_trust(trained, tmp_path):
    # Copy the work dir so that other tests keep the 2-iteration state.
    import shutil
    work_dir = str(tmp_path / 'work')
    shutil.copytree(trained['work_dir'], work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'iter_2.pth'))
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', work_dir, '--resume',
                     '--cfg-options', 'train_cfg.max_iters=4'])
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [1/4]' not in log
    assert compat.torch_load(osp.join(work_dir, 'iter_4.pth'))['meta']['iter'] == 4


def test_resume_from_path(trained, tmp_path):
    work_dir = str(tmp_path / 'work')
    ckpt = osp.join(trained['work_dir'], 'iter_2.pth')
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', work_dir, '--resume', ckpt,
                     '--cfg-options', 'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=1'])
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert sorted(os.listdir(work_dir)).count('iter_3.pth') == 1
    assert not osp.exists(osp.join(work_dir, 'iter_1.pth'))


def test_resume_missing_path_is_clear(trained, tmp_path):
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', str(tmp_path / 'w'), '--resume',
                     str(tmp_path / 'nope.pth')], check=False)
    assert proc.returncode != 0
    assert 'FileNotFoundError' in proc.stderr and 'nope.pth' in proc.stderr


def test_train_refuses_work_dir_that_is_a_file(trained, tmp_path):
    user_file = tmp_path / 'notes.txt'
    user_file.write_text('mine')
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', str(user_file)], check=False)
    assert proc.returncode != 0 and 'FileExistsError' in proc.stderr
    assert user_file.read_text() == 'mine'


def test_checkpoint_round_trip_identical_outputs(trained, tmp_path):
    from mmengine.runner import load_checkpoint, save_checkpoint
    torch.manual_seed(0)
    model = _build(trained['cfg']).eval()
    load_checkpoint(model, osp.join(trained['work_dir'], 'iter_2.pth'), strict=True)
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


def test_train_and_test_mmdet_config(tmp_path):
    cfg = write_det_config(tmp_path)
    work_dir = str(tmp_path / 'work')
    proc = run_tool(['train.py', cfg, '--work-dir', work_dir])
    assert 'Iter(train) [2/2]' in proc.stdout + proc.stderr
    show = tmp_path / 'show'
    proc = run_tool(['test.py', cfg, osp.join(work_dir, 'iter_2.pth'), '--work-dir', str(tmp_path / 'test'),
                     '--show-dir', str(show)])
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    assert len(glob.glob(str(show / '*.jpg'))) == 4


def test_train_mmpretrain_config(tmp_path):
    make_cls_data(str(tmp_path / 'cls'), num=4, size=64)
    cfg = write_cls_config(tmp_path, img_size=64, train=True)
    work_dir = str(tmp_path / 'work')
    proc = run_tool(['train.py', cfg, '--work-dir', work_dir])
    assert 'Iter(train) [2/2]' in proc.stdout + proc.stderr
    assert compat.torch_load(osp.join(work_dir, 'iter_2.pth'))['meta']['iter'] == 2


# ------------------------------------------------------------------------------------------------ --amp
def test_amp(trained, tmp_path):
    work_dir = str(tmp_path / 'amp')
    proc = run_tool(['train.py', trained['cfg'], '--work-dir', work_dir, '--amp',
                     '--cfg-options', 'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1'])
    dumped = open(osp.join(work_dir, osp.basename(trained['cfg']))).read()
    if torch.cuda.is_available():
        assert "type='AmpOptimWrapper'" in dumped
    else:
        assert "type='CPUAmpOptimWrapper'" in dumped and "dtype='bfloat16'" in dumped
    assert 'Iter(train) [1/1]' in proc.stdout + proc.stderr
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
def test_test_evaluates_checkpoint(trained, tmp_path):
    work_dir = str(tmp_path / 'test')
    out = str(tmp_path / 'preds.pkl')
    ckpt = osp.join(trained['work_dir'], 'iter_2.pth')
    proc = run_tool(['test.py', trained['cfg'], ckpt, '--work-dir', work_dir, '--out', out])
    assert 'mIoU' in proc.stdout + proc.stderr
    metrics = glob.glob(osp.join(work_dir, '*', '*.json'))
    assert metrics and 'mIoU' in json.load(open(metrics[0]))
    import mmengine
    preds = mmengine.load(out)
    assert len(preds) == 2 and 'pred_sem_seg' in preds[0]
    # --out never replaces an existing file.
    again = run_tool(['test.py', trained['cfg'], ckpt, '--work-dir', work_dir, '--out', out], check=False)
    assert again.returncode != 0 and 'FileExistsError' in again.stderr


def test_test_untrusted_checkpoint_needs_opt_in(trained, tmp_path):
    import datetime
    ckpt = torch.load(osp.join(trained['work_dir'], 'iter_2.pth'), weights_only=False)
    ckpt['meta']['saved_at'] = datetime.datetime(2024, 1, 1)  # not on the weights_only allow-list
    path = str(tmp_path / 'odd.pth')
    torch.save(ckpt, path)
    args = ['test.py', trained['cfg'], path, '--work-dir', str(tmp_path / 'w')]
    refused = run_tool(args, check=False)
    assert refused.returncode != 0 and '--trust-checkpoint' in refused.stderr
    trusted = run_tool(args + ['--trust-checkpoint'])
    assert 'mIoU' in trusted.stdout + trusted.stderr


def test_test_missing_checkpoint(trained, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    proc = run_tool(['test.py', trained['cfg'], missing, '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode != 0
    assert 'FileNotFoundError' in proc.stderr and missing in proc.stderr


def test_test_show_dir(trained, tmp_path):
    show = tmp_path / 'show'
    run_tool(['test.py', trained['cfg'], osp.join(trained['work_dir'], 'iter_2.pth'), '--work-dir',
              str(tmp_path / 'w'), '--show-dir', str(show)])
    assert glob.glob(str(show / '**' / '*.png'), recursive=True)


def test_test_converts_official_classifier(fixtures_dir, tmp_path):
    fx = _load_fixture(fixtures_dir)
    images = make_cls_data(str(tmp_path / 'cls'), num=2, size=160)
    cfg = write_cls_config(tmp_path, img_size=160)
    official = str(tmp_path / 'skipat_official.pth')
    torch.save({'model': fx['state_dict'], 'epoch': 300}, official)  # official train.py layout
    work_dir = tmp_path / 'work'
    out = str(tmp_path / 'preds.pkl')
    proc = run_tool(['test.py', cfg, official, '--work-dir', str(work_dir), '--out', out])
    log = proc.stdout + proc.stderr
    assert 'bare ViT checkpoint converted' in log and 'accuracy/top1' in log
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


# The generic conversion path and the converter CLI are tested in tests/test_convert.py.


# ------------------------------------------------------------------------------- config edits (fast)
def test_runner_setup_config_edits(tmp_path):
    from mmengine.config import Config
    from mmevit.engine import runner_setup as rs
    cfg = Config(dict(load_from='pretrained.pth', optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                      default_hooks=dict(visualization=dict(type='DetVisualizationHook'))))
    assert rs.set_work_dir(cfg, None, 'configs/x/my_cfg.py') == osp.join('./work_dirs', 'my_cfg')
    rs.set_work_dir(cfg, str(tmp_path / 'w'), 'my_cfg.py')
    # --resume with nothing to resume yet: a new run that keeps the pretrained initialisation.
    rs.set_resume(cfg, 'auto')
    assert not cfg.get('resume') and cfg.load_from == 'pretrained.pth'
    os.makedirs(cfg.work_dir)
    (tmp_path / 'w' / 'last_checkpoint').write_text(str(tmp_path / 'w' / 'iter_8.pth'))
    rs.set_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from is None
    with pytest.raises(FileNotFoundError, match='gone.pth'):
        rs.set_resume(cfg, str(tmp_path / 'gone.pth'))
    kind = rs.enable_amp(cfg)
    assert kind == ('AmpOptimWrapper' if torch.cuda.is_available() else 'CPUAmpOptimWrapper')
    rs.enable_show_dir(cfg, 'shows')
    assert cfg.default_hooks.visualization == dict(type='DetVisualizationHook', draw=True,
                                                   test_out_dir=osp.abspath('shows'))
    with pytest.raises(ValueError, match='.pkl'):
        rs.check_out_file(str(tmp_path / 'preds.json'))
