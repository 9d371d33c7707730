"""The one place where mmevit adapts the 2023-era OpenMMLab stack (mmengine 0.10.7, mmcv 2.1.0,
mmseg 1.2.2, mmdet 3.3.0, mmpretrain 1.2.0) to torch 2.14 / numpy 2. Installed packages are never edited:
each shim below is applied at ``import mmevit`` (``apply()``), is idempotent, and has a test in
``tests/test_compat.py`` that fails without it.

1. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, so resuming a Runner checkpoint fails
   (``UnpicklingError: Weights only load failed``). We allow-list exactly the data types such checkpoints
   hold (mmengine's ``HistoryBuffer``, numpy arrays/dtypes/scalars, ``argparse.Namespace`` of timm-style
   training checkpoints), and make ``HistoryBuffer`` stop pickling its statistics *methods* (which need
   ``builtins.getattr``, unsafe to allow): they are class-level and rebuilt on load anyway.
2. mmengine's checkpoint schemes unpickle fully in places (``http(s)://`` through
   ``torch.hub.load_state_dict_from_url``; ``open-mmlab://`` local files, ``pavi://``, ``s3://`` through a bare
   ``torch.load``, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns into full unpickling) and cache URLs by
   file name only. Every scheme of ``CheckpointLoader`` is re-registered to resolve its name as mmengine does
   and then read through ``mmevit.models.checkpoint`` (``load_file``/``load_url``: ``weights_only=True``
   unless inside ``trust_checkpoints()``, URL-keyed cache, download timeout, errors naming the file).
3. ``torchrun ... --launcher pytorch`` without a GPU: ``prepare_cpu_distributed(cfg)`` creates the gloo
   process group before the Runner (so mmengine skips ``init_dist``, which calls ``torch.cuda.set_device``),
   wraps DDP with ``device_ids=None`` and turns SyncBN into BN.
4. A dataset that finds no samples (an empty image folder, an annotation file with no entries) fails in
   mmengine's ``BaseDataset._serialize_data`` with numpy's "need at least one array to concatenate", which
   names neither the dataset nor where it looked. The shim raises ``EmptyDatasetError`` naming the dataset class,
   ``data_root``, ``data_prefix`` and ``ann_file`` first (an empty dataset is never useful to a Runner).
"""
import argparse
import contextlib
import logging
import os
import os.path as osp
import tempfile
import warnings
from typing import Any, Iterator, Optional

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


def checkpoints_trusted() -> bool:
    """Whether the caller is inside ``trust_checkpoints()`` (full unpickling allowed)."""
    return _TRUSTED


def torch_load(f: Any, map_location: Optional[Any] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` unless inside ``trust_checkpoints()``.

    A path goes through ``mmevit.models.checkpoint.load_file`` (errors name the file and the problem).
    """
    if isinstance(f, (str, os.PathLike)):
        return _io().load_file(os.fspath(f), map_location)
    return torch.load(f, map_location=map_location, weights_only=not _TRUSTED)


def _io():
    from .models import checkpoint  # imported on use: mmevit.models is not yet imported when apply() runs
    return checkpoint


def safe_load_url(url: str, model_dir: Optional[str] = None, map_location: Optional[Any] = None,
                  progress: bool = False, check_hash: Optional[bool] = None, file_name: Optional[str] = None) -> Any:
    """Drop-in for mmengine's ``load_url``: ``mmevit.models.checkpoint.load_url`` (URL-keyed cache, timeout,
    content hash checked where the file name publishes one)."""
    return _io().load_url(url, model_dir, map_location, progress, check_hash, file_name)


def load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    return _io().load_file(osp.expanduser(filename), map_location)


def load_from_http(filename: str, map_location: Optional[Any] = None, model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0)) -> Any:
    """As mmengine's: rank 0 downloads first, the other ranks read the cache after a barrier."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = safe_load_url(filename, model_dir=model_dir, map_location=map_location, progress=progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_load_url(filename, model_dir=model_dir, map_location=map_location, progress=progress)
    return checkpoint


def _model_url(table: dict, name: str, filename: str, where: str) -> str:
    if name not in table:
        raise _io().CheckpointReadError(filename, f'no model {name!r} in {where} (known: {sorted(table)[:6]}...)')
    return table[name]


def load_from_torchvision(filename: str, map_location: Optional[Any] = None) -> Any:
    from mmengine.logging import print_log
    from mmengine.runner import checkpoint as ckpt
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme "modelzoo://" is deprecated, use "torchvision://"', 'current', logging.WARNING)
    name = filename.split('://', 1)[1]
    url = _model_url(ckpt.get_torchvision_models(), name, filename, "torchvision's weights")
    return load_from_http(url, map_location=map_location)


def load_from_openmmlab(filename: str, map_location: Optional[Any] = None) -> Any:
    from mmengine.logging import print_log
    from mmengine.runner import checkpoint as ckpt
    name = filename.split('://', 1)[1]
    deprecated = ckpt.get_deprecated_model_names()
    if name in deprecated:
        print_log(f'{filename} is deprecated in favor of {deprecated[name]}', 'current', logging.WARNING)
        name = deprecated[name]
    url = _model_url(ckpt.get_external_models(), name, filename,
                     f"mmengine's hub/openmmlab.json or {osp.join(ckpt._get_mmengine_home(), 'open_mmlab.json')}")
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location=map_location)
    path = osp.join(ckpt._get_mmengine_home(), url)  # a local file, relative to MMENGINE_HOME
    return _io().load_file(path, map_location, source=f'{filename} ({path})')


def load_from_mmcls(filename: str, map_location: Optional[Any] = None) -> Any:
    from mmengine.runner import checkpoint as ckpt
    url = _model_url(ckpt.get_mmcls_models(), filename[len('mmcls://'):], filename, "mmengine's hub/mmcls.json")
    return ckpt._process_mmcls_checkpoint(load_from_http(url, map_location=map_location))


def load_from_pavi(filename: str, map_location: Optional[Any] = None) -> Any:
    try:
        from pavi import modelcloud
    except ImportError as e:
        raise ImportError(f'{filename}: install pavi to load checkpoints from its modelcloud') from e
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, osp.basename(model.name) or 'checkpoint.pth')
        model.download(path)
        return _io().load_file(path, map_location, source=f'{filename} (downloaded to {path}, not kept)')


def load_from_ceph(filename: str, map_location: Optional[Any] = None, backend: str = 'petrel') -> Any:
    from mmengine.runner import checkpoint as ckpt
    data = ckpt.get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'checkpoint.pth')
        with open(path, 'wb') as f:
            f.write(data)
        return _io().load_file(path, map_location, source=filename)


# Every scheme mmengine 0.10.7 registers, with its replacement of the same name (tests check that none is
# left over): each resolves names exactly as mmengine does, then reads through mmevit.models.checkpoint.
_SCHEME_LOADERS = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_http),
    ('pavi://', load_from_pavi),
    ((r'(\S+\:)?s3://', r'(\S+\:)?petrel://'), load_from_ceph),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
)


def _patch_checkpoint_loaders() -> None:
    from mmengine.runner import checkpoint as ckpt
    ckpt.load_url = safe_load_url  # for code calling mmengine's load_url directly
    for prefixes, loader in _SCHEME_LOADERS:
        ckpt.CheckpointLoader.register_scheme(prefixes=prefixes, loader=loader, force=True)
        setattr(ckpt, loader.__name__, loader)  # for code calling mmengine's loader functions directly


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


class EmptyDatasetError(ValueError):
    """A dataset found no samples (shim 4)."""


def _check_not_empty_then_serialize(self):
    if not self.data_list:
        where = ', '.join(f'{k}={getattr(self, k, None)!r}' for k in ('data_root', 'data_prefix', 'ann_file')
                          if getattr(self, k, None))
        raise EmptyDatasetError(f'{type(self).__name__} found no samples ({where}): check the paths, the '
                                'image/annotation suffixes and that the folder or annotation file is not empty')
    return _ORIGINAL_SERIALIZE(self)


def _patch_empty_dataset_error() -> None:
    global _ORIGINAL_SERIALIZE
    from mmengine.dataset import BaseDataset
    if BaseDataset._serialize_data is not _check_not_empty_then_serialize:
        _ORIGINAL_SERIALIZE = BaseDataset._serialize_data
        BaseDataset._serialize_data = _check_not_empty_then_serialize


_ORIGINAL_SERIALIZE = None


def apply() -> None:
    """Apply every shim once (called by ``import mmevit``)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_safe_globals()
    _patch_checkpoint_loaders()
    _patch_empty_dataset_error()
    _APPLIED = True
