"""Checkpoints handed to ``tools/test.py`` and ``tools/train.py --resume``, checked before the Runner sees them.

mmengine's Runner loads ``load_from`` non-strictly (a checkpoint of another model evaluates an untrained
network after a warning) and ``resume`` trusts the file (a bare state dict fails with ``KeyError: 'meta'``,
another architecture with a size error deep in the forward). Here the config's model is built on the meta
device (no memory, no init) and the file is checked against its keys and shapes first: a mismatch is an error
that names the keys, before any data is loaded.
"""
import contextlib
import os
import tempfile
from typing import Iterator, List, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..models.checkpoint import StateDict, read_checkpoint
from .convert import (CheckpointMismatchError, check_state_dict, convert_for_model, find_converter,
                      model_shapes, toolbox_free_state)


class NotResumableError(ValueError):
    """``--resume`` was given a file training cannot continue from; the message says what the file is."""


def build_meta_model(model_cfg: Mapping, scope: Optional[str]) -> nn.Module:
    """The model of a config (``cfg.model``, built in the config's ``default_scope``) on the meta device."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        return MODELS.build(model_cfg)


def _message(e: Exception) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def state_for_model(checkpoint: Mapping, model: nn.Module, source: str,
                    allow_missing: bool = False) -> Tuple[StateDict, List[str], List[str]]:
    """``checkpoint`` as ``model``'s state dict, checked strictly.

    A model with an mmevit backbone/network converts any format its family supports (official, timm,
    mmpretrain, mmevit; whole model or bare backbone); any other model is checked against the checkpoint's
    keys as they are. Returns ``(state, dropped, missing)``: the source keys the family left out on purpose
    and, with ``allow_missing``, the model keys the checkpoint does not provide. Raises
    ``CheckpointMismatchError`` naming the missing, unexpected and mis-shaped keys (and, even with
    ``allow_missing``, when not a single key of the model would be loaded).
    """
    try:
        find_converter(model)
        converts = True
    except TypeError:
        converts = False
    try:
        if converts:
            state, dropped = convert_for_model(checkpoint, model)
        else:
            state, dropped = toolbox_free_state(checkpoint), []
    except (KeyError, ValueError) as e:  # unrecognised layout (CheckpointMismatchError), no state dict, ...
        raise CheckpointMismatchError(f'{source} cannot be loaded into {type(model).__name__}: {_message(e)}') from e
    check_state_dict(state, model, allow_missing=allow_missing, source=source)
    own = model_shapes(model)
    missing = sorted(set(own) - set(state))
    if own and len(missing) == len(own):
        raise CheckpointMismatchError(f'{source}: not one key of {type(model).__name__} is in it '
                                      f'(checkpoint keys: {", ".join(sorted(state)[:8])}...)')
    return state, list(dropped), missing


@contextlib.contextmanager
def checkpoint_for_model(filename: str, model_cfg: Mapping, scope: Optional[str], work_dir: str,
                         allow_missing: bool = False) -> Iterator[str]:
    """Yield a file the Runner can ``load_from`` with every key of the config's model.

    ``filename`` itself when it already holds the model's exact keys; otherwise a converted copy in
    ``work_dir`` (``converted_*.pth``), removed on exit. Raises ``CheckpointMismatchError`` (see
    ``state_for_model``) before anything is written.
    """
    model = build_meta_model(model_cfg, scope)
    checkpoint = read_checkpoint(filename)
    state, dropped, missing = state_for_model(checkpoint, model, filename, allow_missing)
    name = type(model).__name__
    if dropped:
        print_log(f'{filename}: source keys with no place in {name} (left out): {", ".join(dropped)}',
                  logger='current', level=30)
    if missing:
        print_log(f'{filename}: --allow-missing: {len(missing)} keys of {name} are not in the checkpoint and keep '
                  f'their initialisation: {", ".join(missing)}', logger='current', level=30)
    try:
        source = toolbox_free_state(checkpoint)
    except KeyError:
        source = {}
    if state.keys() == source.keys() and all(state[k] is source[k] for k in state):
        print_log(f'{filename}: {len(state)} keys match {name}', logger='current')
        yield filename
        return
    print_log(f'{filename}: converted for {name} ({len(state)} keys)', logger='current')
    os.makedirs(work_dir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix='converted_', suffix='.pth', dir=work_dir)
    os.close(fd)
    try:
        torch.save({'state_dict': state, 'meta': {'converted_from': str(filename)}}, path)
        yield path
    finally:
        os.remove(path)


# Entries mmengine's ``Runner.resume`` reads; a checkpoint lacking one cannot continue a training.
RUNNER_ENTRIES = ('meta', 'message_hub', 'optimizer')


def describe_checkpoint(checkpoint) -> str:
    """A short description of what a loaded checkpoint file holds, for error messages."""
    if not isinstance(checkpoint, Mapping):
        return f'a {type(checkpoint).__name__}, not a checkpoint dict'
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return f'a bare state dict ({len(checkpoint)} tensors, no training state)'
    keys = sorted(map(str, checkpoint))
    if 'state_dict' in checkpoint and 'meta' in checkpoint and 'optimizer' not in checkpoint:
        return ('a checkpoint saved without optimizer state (a best_*.pth, a published or converted file?) '
                f'with entries {keys}')
    return f'a dict with entries {keys[:12]}'


def check_resumable(filename: str, model_cfg: Mapping, scope: Optional[str]) -> None:
    """Raise ``NotResumableError`` unless ``filename`` is a Runner checkpoint of the config's model.

    It must hold the training state ``Runner.resume`` restores (``meta`` with epoch and iter, ``message_hub``,
    ``optimizer``) and exactly the model's keys and shapes.
    """
    checkpoint = read_checkpoint(filename)
    hint = (f'To start a new training from its weights, drop --resume and pass --cfg-options '
            f'load_from={filename}.')
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    lacking = [k for k in RUNNER_ENTRIES if not isinstance(checkpoint, Mapping) or k not in checkpoint]
    if isinstance(meta, Mapping):
        lacking += [f"meta['{k}']" for k in ('epoch', 'iter') if k not in meta]
    if lacking:
        raise NotResumableError(f'cannot resume from {filename}: it is {describe_checkpoint(checkpoint)}, without '
                                f'the {", ".join(lacking)} of a training checkpoint. {hint}')
    model = build_meta_model(model_cfg, scope)
    try:
        check_state_dict(toolbox_free_state(checkpoint), model, source=filename)
    except (CheckpointMismatchError, KeyError) as e:
        run = meta.get('experiment_name') if isinstance(meta, Mapping) else None
        origin = f' (written by run {run})' if run else ''
        raise NotResumableError(f'cannot resume from {filename}{origin}: it is the checkpoint of another model '
                                f'or config, not of this config\'s {type(model).__name__}.\n{_message(e)}') from e
