"""The one place where mmevit adapts the 2023-era OpenMMLab stack (mmengine 0.10.7, mmcv 2.1.0,
mmseg 1.2.2, mmdet 3.3.0, mmpretrain 1.2.0) to torch 2.14 / numpy 2. Installed packages are never edited:
each shim below is applied at ``import mmevit`` (``apply()``), is idempotent, and has a test in
``tests/test_compat.py`` that fails without it.

1. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, so resuming a Runner checkpoint fails
   (``UnpicklingError: Weights only load failed``). We allow-list exactly the data types such checkpoints
   hold (mmengine's ``HistoryBuffer``, numpy arrays/dtypes/scalars, ``argparse.Namespace`` of timm-style
   training checkpoints), and make ``HistoryBuffer`` stop pickling its statistics *methods* (which need
   ``builtins.getattr``, unsafe to allow): they are class-level and rebuilt on load anyway.
2. mmengine loads ``http(s)://`` (and ``open-mmlab://``, ``torchvision://``...) checkpoints through
   ``torch.hub.load_state_dict_from_url``, which unpickles fully. Every mmengine checkpoint loader now reads
   with ``weights_only=True``; full unpickling needs the explicit ``trust_checkpoints()`` opt-in.
3. ``torchrun ... --launcher pytorch`` without a GPU: ``prepare_cpu_distributed(cfg)`` creates the gloo
   process group before the Runner (so mmengine skips ``init_dist``, which calls ``torch.cuda.set_device``),
   wraps DDP with ``device_ids=None`` and turns SyncBN into BN.
"""
import argparse
import contextlib
import os
import os.path as osp
import warnings
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

import numpy as np
import torch

_TRUSTED = False
_APPLIED = False


# --------------------------------------------------------------------------- 1. safe unpickling
def _numpy_safe_globals() -> list:
    core = getattr(np, '_core', None) or np.core  # numpy 2 moved np.core to np._core
    items = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    for name in ('Float64DType', 'Float32DType', 'Float16DType', 'Int64DType', 'Int32DType', 'Int16DType',
                 'Int8DType', 'UInt8DType', 'BoolDType'):
        if hasattr(np, 'dtypes') and hasattr(np.dtypes, name):
            items.append(getattr(np.dtypes, name))
    return items


def _history_buffer_getstate(self) -> dict:
    """Replacement for ``HistoryBuffer.__getstate__``: the values only, not the statistics methods."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _patch_safe_globals() -> None:
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    torch.serialization.add_safe_globals([HistoryBuffer, argparse.Namespace, *_numpy_safe_globals()])


# --------------------------------------------------------------------------- 2. safe checkpoint loaders
@contextlib.contextmanager
def trust_checkpoints() -> Iterator[None]:
    """Opt in to FULL unpickling (arbitrary code execution) of checkpoints read inside this block.

    Only for files you trust: mmevit otherwise reads every checkpoint with ``weights_only=True``.
    """
    global _TRUSTED
    warnings.warn('mmevit: full unpickling enabled (trust_checkpoints): only load files you trust')
    old, _TRUSTED = _TRUSTED, True
    try:
        yield
    finally:
        _TRUSTED = old


def torch_load(f: Any, map_location: Optional[Any] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` unless inside ``trust_checkpoints()``."""
    try:
        return torch.load(f, map_location=map_location, weights_only=not _TRUSTED)
    except Exception as e:
        if not _TRUSTED and ('weights_only' in str(e).lower() or 'Unsupported global' in str(e)):
            raise RuntimeError(f'{f}: refused to unpickle a non-tensor object with weights_only=True ({e}). '
                               'If you trust this file, load it inside mmevit.compat.trust_checkpoints() '
                               '(tools: --trust-checkpoint).') from e
        raise


def safe_load_url(url: str, model_dir: Optional[str] = None, map_location: Optional[Any] = None,
                  progress: bool = True, check_hash: bool = False, file_name: Optional[str] = None) -> Any:
    """Drop-in for mmengine's ``load_url``: download into the torch hub cache, then ``torch_load``."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    filename = file_name or osp.basename(urlparse(url).path)
    cached = osp.join(model_dir, filename)
    if not osp.exists(cached):
        hash_prefix = None
        if check_hash:
            match = torch.hub.HASH_REGEX.search(filename)
            hash_prefix = match.group(1) if match else None
        torch.hub.download_url_to_file(url, cached, hash_prefix, progress=progress)
    return torch_load(cached, map_location=map_location)


def _safe_load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch_load(filename, map_location=map_location)


def _patch_checkpoint_loaders() -> None:
    from mmengine.runner import checkpoint as ckpt
    ckpt.load_url = safe_load_url  # used by the http(s), open-mmlab, torchvision and mmcls loaders
    ckpt.CheckpointLoader.register_scheme(prefixes='', loader=_safe_load_from_local, force=True)


# --------------------------------------------------------------------------- 3. CPU distributed launch
def _sync_bn_to_bn(node: Any) -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == 'type' and v in ('SyncBN', 'MMSyncBN'):
                node[k] = 'BN'
            else:
                _sync_bn_to_bn(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _sync_bn_to_bn(v)
    return node


def prepare_cpu_distributed(cfg: Any, launcher: str) -> bool:
    """Make an mmengine Runner config run distributed on CPUs (gloo). Returns True when it changed ``cfg``.

    Does nothing without a launcher or with CUDA available. Otherwise: creates the gloo process group from
    torchrun's environment (mmengine's ``init_dist`` then sees it and is skipped), sets
    ``model_wrapper_cfg`` to DDP with ``device_ids=None`` and replaces SyncBN by BN in ``cfg.model``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise ValueError(f'CPU distributed runs support --launcher pytorch (torchrun), not {launcher!r}')
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    env_cfg = dict(cfg.get('env_cfg') or {})
    env_cfg['dist_cfg'] = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
    cfg.env_cfg = env_cfg
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    _sync_bn_to_bn(cfg.model)
    cfg.pop('sync_bn', None)
    return True


def apply() -> None:
    """Apply every shim once (called by ``import mmevit``)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_safe_globals()
    _patch_checkpoint_loaders()
    _APPLIED = True
