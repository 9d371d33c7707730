"""One test per shim in mmevit.compat; each fails without its shim."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmevit  # noqa: F401  (applies the shims)
from mmevit import compat
from mmevit.models.checkpoint import UnsafeCheckpointError


class _NotAllowListed:
    """A class whose unpickling would run arbitrary constructor code in a full unpickle."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_runner_checkpoint_data_loads_with_weights_only(tmp_path):
    """What a Runner checkpoint's message hub holds (HistoryBuffer, numpy arrays/scalars) loads with plain
    torch.load (weights_only=True by default since torch 2.6)."""
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('compat-test')
    for v in (1.0, 2.5, 3.0):
        hub.update_scalar('train/loss', v)
    hub.update_info('iter', 7)
    state = {'message_hub': hub.state_dict(), 'meta': {'seed': np.int64(3), 'arr': np.arange(4.0),
                                                       'ratio': np.float64(0.5), 'i32': np.arange(3, dtype=np.int32)},
             'state_dict': {'w': torch.ones(2)}}
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    loaded = torch.load(path)  # no weights_only=False: the allow-list makes it work
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(6.5 / 3) and buf.current() == 3.0
    np.testing.assert_array_equal(loaded['meta']['arr'], np.arange(4.0))
    assert loaded['meta']['seed'] == 3


def test_history_buffer_does_not_pickle_methods():
    """Statistics methods are not saved (unpickling them needs builtins.getattr, which is not allow-listed)."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.0)
    data = pickle.dumps(buf, protocol=2)  # torch.save's protocol: nested qualnames go through getattr
    assert b'getattr' not in data and b'statistics_methods' not in data
    restored = pickle.loads(data)
    assert restored.mean() == 1.0 and 'mean' in restored._statistics_methods


def test_not_allow_listed_objects_are_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': _NotAllowListed()}, path)
    with pytest.raises(Exception, match='(?i)weights_only|unsupported global'):
        torch.load(path)
    with pytest.raises(UnsafeCheckpointError, match='trust_checkpoints'):
        compat.torch_load(str(path))
    with compat.trust_checkpoints():
        assert compat.torch_load(str(path))['x'] == os.getcwd()


# Shim 2. URL downloads (cache keyed by URL, timeout, partial/refused downloads never kept) are tested against a
# local server in tests/test_checkpoint_io.py; here: every scheme is replaced, and the bare torch.load branches.
def test_every_checkpoint_scheme_reads_through_mmevit():
    import mmdet.models  # noqa: F401  (the toolboxes register no scheme of their own, checked here)
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401
    from mmengine.runner import checkpoint as ckpt
    schemes = ckpt.CheckpointLoader._schemes
    assert {'', 'http://', 'https://', 'open-mmlab://', 'openmmlab://', 'torchvision://', 'modelzoo://',
            'mmcls://', 'pavi://', r'(\S+\:)?s3://', r'(\S+\:)?petrel://'} == set(schemes)
    assert {p: f.__module__ for p, f in schemes.items()} == {p: 'mmevit.compat' for p in schemes}
    assert ckpt.load_url is compat.safe_load_url
    for name in ('load_from_local', 'load_from_http', 'load_from_openmmlab', 'load_from_torchvision',
                 'load_from_mmcls', 'load_from_pavi', 'load_from_ceph'):
        assert getattr(ckpt, name) is getattr(compat, name)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """A checkpoint whose full unpickling creates ``marker``; torch told to unpickle fully by default."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Payload(marker)}, path)
    return path, marker


def test_openmmlab_local_file_is_read_safely(tmp_path, monkeypatch, payload):
    """mmengine's open-mmlab:// branch for MMENGINE_HOME files called torch.load without weights_only."""
    from mmengine.runner.checkpoint import CheckpointLoader
    path, marker = payload
    home = tmp_path / 'home'
    (home / 'sub').mkdir(parents=True)
    os.replace(path, home / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}}, home / 'sub' / 'good.pth')
    (home / 'open_mmlab.json').write_text('{"evil": "evil.pth", "good": "sub/good.pth", "gone": "gone.pth"}')
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    with pytest.raises(UnsafeCheckpointError, match=r'open-mmlab://evil \(.*evil.pth\).*trust_checkpoints'):
        CheckpointLoader.load_checkpoint('open-mmlab://evil')
    assert not marker.exists()
    torch.testing.assert_close(CheckpointLoader.load_checkpoint('openmmlab://good')['state_dict']['w'],
                               torch.ones(2))
    with pytest.raises(FileNotFoundError, match='open-mmlab://gone'):
        CheckpointLoader.load_checkpoint('open-mmlab://gone')


def test_pavi_and_s3_downloads_are_read_safely(monkeypatch, payload):
    """mmengine's pavi:// and s3:// loaders called torch.load on the fetched bytes without weights_only."""
    import types
    from mmengine.runner import checkpoint as ckpt
    path, marker = payload

    class Model:
        name = 'evil.pth'

        def download(self, dst):
            with open(path, 'rb') as src, open(dst, 'wb') as out:
                out.write(src.read())

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda name: Model())
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    backend = types.SimpleNamespace(get=lambda name: path.read_bytes())
    monkeypatch.setattr(ckpt, 'get_file_backend', lambda name, backend_args=None: backend)
    for url in ('pavi://project/evil.pth', 's3://bucket/evil.pth', 'cluster:s3://bucket/evil.pth'):
        with pytest.raises(UnsafeCheckpointError, match=f'{url}.*trust_checkpoints'):
            ckpt.CheckpointLoader.load_checkpoint(url)
    assert not marker.exists()


def test_local_scheme_names_missing_file(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'missing.pth'))


def test_prepare_cpu_distributed_is_noop_without_launcher():
    from mmengine.config import Config
    cfg = Config(dict(model=dict(decode_head=dict(norm_cfg=dict(type='SyncBN')))))
    assert compat.prepare_cpu_distributed(cfg, 'none') is False
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'


@pytest.mark.e2e  # a subprocess (about 20 s on a loaded machine)
def test_prepare_cpu_distributed_single_process(tmp_path):
    """torchrun-style env, 1 process: gloo group created, DDP device_ids=None, SyncBN -> BN everywhere."""
    code = r'''
import os, torch.distributed as dist
from mmengine.config import Config
import mmevit
from mmevit import compat
from mmevit.models.checkpoint import UnsafeCheckpointError
cfg = Config(dict(model=dict(backbone=dict(type='SkipAtViT'),
                             decode_head=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
                             auxiliary_head=[dict(norm_cfg=dict(type='SyncBN'))]), sync_bn='torch'))
assert compat.prepare_cpu_distributed(cfg, 'pytorch')
assert dist.is_initialized() and dist.get_backend() == 'gloo'
assert cfg.model_wrapper_cfg['device_ids'] is None
assert cfg.model.decode_head.norm_cfg.type == 'BN'
assert cfg.model.auxiliary_head[0].norm_cfg.type == 'BN'
assert 'sync_bn' not in cfg and cfg.env_cfg.dist_cfg.backend == 'gloo'
print('OK')
'''
    env = dict(os.environ, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(29600 + os.getpid() % 300), CUDA_VISIBLE_DEVICES='')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and 'OK' in out.stdout, out.stderr[-3000:]


def test_mmseg_imports_with_declared_requirements():
    """mmseg 1.2.2 imports ftfy and regex without declaring them; our requirements list them."""
    import mmseg.models  # noqa: F401
    from importlib.metadata import version
    assert version('ftfy') and version('regex')
