"""Checkpoint helpers shared by the model families: read a file or URL safely, unwrap the container,
strip wrapper prefixes, and load into a module reporting missing/unexpected keys by name."""
from typing import Dict, Iterable, Mapping, Optional

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

StateDict = Dict[str, torch.Tensor]

CONTAINER_KEYS = ('state_dict', 'model', 'state_dict_ema', 'model_ema')


def read_checkpoint(filename: str, map_location: str = 'cpu') -> dict:
    """Read a checkpoint from a path, URL or mmengine scheme (``open-mmlab://``, ``torchvision://``...).

    Goes through mmengine's ``CheckpointLoader``; ``mmevit.compat`` makes every one of its loaders use
    ``torch.load(weights_only=True)``. A missing local file raises ``FileNotFoundError`` naming it.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    import os.path as osp
    if '://' not in filename and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    return CheckpointLoader.load_checkpoint(osp.expanduser(filename) if '://' not in filename else filename,
                                            map_location=map_location)


def unwrap_state_dict(checkpoint: Mapping) -> StateDict:
    """Return the tensor dict inside a training checkpoint (``state_dict``/``model``/``state_dict_ema``)."""
    for key in CONTAINER_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise KeyError(f'no state dict found in checkpoint: expected tensors or one of {CONTAINER_KEYS}, '
                       f'got keys {sorted(checkpoint)[:8]}')
    return dict(checkpoint)


def strip_prefixes(state_dict: StateDict, prefixes: Iterable[str] = ('module.',)) -> StateDict:
    """Remove wrapper prefixes (DDP ``module.``, a toolbox's ``backbone.``) from every key that has them."""
    out = {}
    for k, v in state_dict.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def select_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep only the keys under ``prefix`` (e.g. ``backbone.`` of a whole mmseg model), prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_report(module: nn.Module, state_dict: StateDict, strict: bool = False,
                logger: Optional[MMLogger] = None, source: str = 'checkpoint') -> nn.modules.module._IncompatibleKeys:
    """``load_state_dict`` that names what did not match; shapes are checked first with a clear error."""
    own = module.state_dict()
    bad = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in state_dict.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f'shape mismatch loading {source} into {type(module).__name__}:\n  ' + '\n  '.join(bad))
    result = module.load_state_dict(state_dict, strict=strict)
    logger = logger or MMLogger.get_current_instance()
    if result.missing_keys:
        print_log(f'{source}: missing keys (left at their init): {result.missing_keys}', logger=logger,
                  level=30)
    if result.unexpected_keys:
        print_log(f'{source}: unexpected keys (ignored): {result.unexpected_keys}', logger=logger, level=30)
    if not result.missing_keys and not result.unexpected_keys:
        print_log(f'{source}: all {len(state_dict)} keys loaded', logger=logger)
    return result
