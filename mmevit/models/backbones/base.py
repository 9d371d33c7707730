"""What every mmevit backbone shares: checkpoint conversion as a method, ``init_cfg`` pretrained loading
through it, and the small pieces of the dense-prediction contract (index checks, freezing, NCHW outputs).

A family subclasses ``BaseBackbone`` and implements ``convert_state_dict`` beside its model (timm's
``checkpoint_filter_fn`` pattern). Everything that loads weights (``init_cfg=dict(type='Pretrained')``,
``tools/test.py``, the inferencers, ``tools/model_converters/convert.py``, ``from_official``) goes through
``mmevit.engine.convert.convert_for_model``, which finds the converting module and calls this method; none
of them names a family.
"""
import numbers
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModule
from torch import nn

from ..checkpoint import StateDict

# Source prefixes of classifier heads in official/timm checkpoints; a backbone never loads them.
DEFAULT_HEAD_PREFIXES = ('head.', 'pre_logits.', 'head_dist.', 'fc_norm.')


class BaseBackbone(BaseModule):
    """Base class of mmevit backbones and restoration networks.

    Subclasses implement ``convert_state_dict``. They may set ``head_prefixes`` (the source keys that belong
    to a classifier head, handed to ``convert_head``) and override ``convert_head`` when their official head
    is not a plain ``head.weight/bias`` linear.
    """

    head_prefixes: Tuple[str, ...] = DEFAULT_HEAD_PREFIXES

    # ------------------------------------------------------------------ checkpoints
    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        """Convert a flat state dict of this family (any supported source format, including mmevit's own,
        on which it must be the identity) into this module's keys.

        The input has no container, no ``module.`` and no toolbox prefix, and no head keys
        (``head_prefixes``). Returns ``(state, dropped)``: ``dropped`` lists the source keys deliberately left
        out (weights this model has no use for, e.g. the unused attention of SkipAt's skipped blocks).
        Anything else that does not fit is left in, so the strict check names it.
        """
        raise NotImplementedError(f'{type(self).__name__} does not implement convert_state_dict')

    def convert_head(self, head_state: StateDict, target_shapes: Dict[str, torch.Size]) -> StateDict:
        """Map official head keys onto a classifier's head in ``target_shapes`` (model key -> shape).

        Default: timm-style ``head.*`` -> mmpretrain ``VisionTransformerClsHead`` (``head.layers.head.*``)
        or ``LinearClsHead`` (``head.fc.*``), ``pre_logits.fc.*`` -> ``head.layers.pre_logits.*``; the first
        target whose keys and shapes all match wins. Keys with no place are left out (reported as dropped).
        """
        return map_head(head_state, target_shapes, _DEFAULT_HEAD_RENAMES)

    def init_weights(self) -> None:
        """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` loads through the family's
        converter (any supported format, ``pos_embed``/tables resized by the model's load hooks) and logs
        missing and unexpected keys by name; other ``init_cfg`` types are mmengine's."""
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        from ...engine.convert import load_pretrained
        ckpt = cfg.get('checkpoint')
        if not ckpt:
            raise ValueError(f"{type(self).__name__}: init_cfg type='Pretrained' needs a 'checkpoint' "
                             '(path or URL)')
        logger = MMLogger.get_current_instance()
        print_log(f'{type(self).__name__}: loading {ckpt}', logger=logger)
        load_pretrained(self, ckpt, prefix=cfg.get('prefix'), logger=logger)
        self._is_init = True


# ---------------------------------------------------------------------- dense-prediction contract helpers
def check_indices(indices: Union[int, Sequence[int]], num: int, name: str = 'out_indices',
                  allow_empty: bool = False) -> Tuple[int, ...]:
    """Validate stage/block indices: ints (negative count from the end), in range, unique, increasing.

    Returns them normalised to ``[0, num)``. Raises ``TypeError``/``ValueError`` naming ``name``.
    """
    items = [indices] if isinstance(indices, numbers.Integral) and not isinstance(indices, bool) else indices
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f'{name} must be an int or a sequence of ints, got {indices!r}')
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f'{name} must contain ints, got {i!r} in {indices!r}')
        j = int(i) + num if i < 0 else int(i)
        if not 0 <= j < num:
            raise ValueError(f'{name} entry {i} is out of range for {num} stages/blocks '
                             f'(valid: {-num}..{num - 1})')
        out.append(j)
    if not out and not allow_empty:
        raise ValueError(f'{name} must not be empty')
    if len(set(out)) != len(out) or out != sorted(out):
        raise ValueError(f'{name} must be unique and in increasing order (after normalising negatives), '
                         f'got {indices!r}')
    return tuple(out)


def check_int(value, name: str, minimum: int = 1) -> int:
    """An int (not a bool, not a float or string) >= ``minimum``; ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{name} must be an int, got {value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value}')
    return int(value)


def check_img_size(img_size, patch_size: int = 1) -> Tuple[int, int]:
    """``img_size`` as an int or a pair of ints -> ``(H, W)``, each an int >= ``patch_size``."""
    sizes = (img_size, img_size) if isinstance(img_size, numbers.Integral) else tuple(img_size)
    out = tuple(check_int(s, 'img_size') for s in sizes)
    if len(out) != 2 or min(out) < patch_size:
        raise ValueError('img_size must be one or two ints'
                         + (f' >= patch_size ({patch_size})' if patch_size > 1 else '') + f', got {img_size!r}')
    return out


def check_image_batch(x, in_channels: int, dtype: torch.dtype, min_size: int = 1) -> None:
    """Refuse what a backbone cannot take, with the reason: not a tensor, not (B, C, H, W), wrong channel
    count, sides below ``min_size`` (the smallest input the model's strides/windows allow), or a dtype
    other than the model's (integer images must be converted and normalised first; half-precision inputs
    into an fp32 model belong under ``torch.autocast``). An empty batch is allowed."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'expected a torch.Tensor image batch (B, {in_channels}, H, W), got {type(x).__name__}'
                        + (' (convert with torch.from_numpy(...).permute(0, 3, 1, 2))' if hasattr(x, '__array__')
                           else ''))
    if x.dim() != 4:
        raise ValueError(f'expected an image batch (B, {in_channels}, H, W), got a {x.dim()}-d tensor '
                         f'{tuple(x.shape)}')
    if x.shape[1] != in_channels:
        raise ValueError(f'expected {in_channels} input channels, got {x.shape[1]} (input {tuple(x.shape)})')
    if min(x.shape[2:]) < min_size:
        raise ValueError(f'input {tuple(x.shape[2:])} is smaller than the {min_size}x{min_size} this model '
                         'needs')
    if not x.is_floating_point():
        raise TypeError(f'expected a floating-point image batch, got {x.dtype} (convert to float and '
                        'normalise first)')
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f'input dtype {x.dtype} does not match the model\'s {dtype}: cast the input, '
                        f'or run under torch.autocast')


def freeze(modules: Iterable[Union[nn.Module, nn.Parameter, None]]) -> None:
    """Put modules in eval mode and stop gradients to them (and to bare parameters)."""
    for m in modules:
        if m is None:
            continue
        if isinstance(m, nn.Parameter):
            m.requires_grad_(False)
            continue
        m.eval()
        m.requires_grad_(False)


def tokens_to_nchw(x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) row-major tokens -> contiguous (B, C, H, W)."""
    B, N, C = x.shape
    if N != hw[0] * hw[1]:
        raise ValueError(f'{N} tokens do not fill a {hw[0]}x{hw[1]} grid')
    return x.transpose(1, 2).reshape(B, C, hw[0], hw[1]).contiguous()


# ---------------------------------------------------------------------- heads
_DEFAULT_HEAD_RENAMES = (
    ('head.', ('head.layers.head.', 'head.fc.')),
    ('pre_logits.fc.', ('head.layers.pre_logits.',)),
)


def map_head(head_state: StateDict, target_shapes: Dict[str, torch.Size],
             renames: Sequence[Tuple[str, Sequence[str]]]) -> StateDict:
    """For each ``(source prefix, candidate target prefixes)``: rename the source keys to the first
    candidate whose keys all exist in ``target_shapes`` with the same shapes."""
    out: StateDict = {}
    for src, targets in renames:
        keys = {k: v for k, v in head_state.items() if k.startswith(src)}
        if not keys:
            continue
        for target in targets:
            renamed = {target + k[len(src):]: v for k, v in keys.items()}
            if all(k in target_shapes and tuple(target_shapes[k]) == tuple(v.shape) for k, v in renamed.items()):
                out.update(renamed)
                break
    return out
