"""What every mmevit backbone shares: checkpoint conversion as a method, ``init_cfg`` pretrained loading
through it, and the small pieces of the dense-prediction contract (index checks, freezing, NCHW outputs).

A family subclasses ``BaseBackbone`` and implements ``convert_state_dict`` beside its model (timm's
``checkpoint_filter_fn`` pattern). Everything that loads weights (``init_cfg=dict(type='Pretrained')``,
``tools/test.py``, the inferencers, ``tools/model_converters/convert.py``, ``from_official``) goes through
``mmevit.engine.convert.convert_for_model``, which finds the converting module and calls this method; none
of them names a family.
"""
import difflib
import math
import numbers
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

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
    # Named variants (lower-case aliases -> arch dict), the keys a custom arch dict must have, and the ones it may.
    arch_zoo: Dict[str, dict] = {}
    essential_keys: frozenset = frozenset()
    optional_keys: frozenset = frozenset()

    def lookup_arch(self, arch: Union[str, Mapping]) -> dict:
        """``arch`` as a new dict (lists copied): a name from ``arch_zoo`` (any case), or a custom dict with every
        ``essential_keys`` entry and nothing outside ``essential_keys | optional_keys``. The family checks the
        values."""
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise ValueError(f'arch {arch!r} is not in default archs {sorted(set(self.arch_zoo))}')
            arch = self.arch_zoo[arch.lower()]
        elif not isinstance(arch, Mapping) or not set(self.essential_keys) <= set(arch):
            raise ValueError(f'a custom arch needs a dict with keys {sorted(self.essential_keys)}, got {arch!r}')
        else:
            check_arch_keys(arch, set(self.essential_keys) | set(self.optional_keys))
        return {k: (list(v) if isinstance(v, list) else v) for k, v in arch.items()}

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
    if isinstance(img_size, numbers.Integral) and not isinstance(img_size, bool):
        sizes = (img_size, img_size)
    elif isinstance(img_size, Sequence) and not isinstance(img_size, (str, bytes)):
        sizes = tuple(img_size)
    else:
        raise TypeError(f'img_size must be an int or a pair of ints (H, W), got {img_size!r} '
                        f'({type(img_size).__name__})')
    out = tuple(check_int(s, 'img_size') for s in sizes)
    if len(out) != 2 or min(out) < patch_size:
        raise ValueError('img_size must be one or two ints'
                         + (f' >= patch_size ({patch_size})' if patch_size > 1 else '') + f', got {img_size!r}')
    return out


def check_number(value, name: str, minimum: float = 0., inclusive: bool = False,
                 maximum: Optional[float] = None, max_inclusive: bool = True) -> float:
    """A real number (not a bool or a string) above ``minimum`` (``inclusive``: or equal) and, when
    ``maximum`` is given, at most ``maximum`` (``max_inclusive=False``: below it); ``TypeError``/``ValueError``
    naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a number, got {value!r} ({type(value).__name__})')
    low_ok = value >= minimum if inclusive else value > minimum
    high_ok = maximum is None or (value <= maximum if max_inclusive else value < maximum)
    if not (low_ok and high_ok and math.isfinite(value)):
        low = f'[{minimum}' if inclusive else f'({minimum}'
        high = 'inf)' if maximum is None else (f'{maximum}]' if max_inclusive else f'{maximum})')
        raise ValueError(f'{name} must lie in {low}, {high}, got {value!r}')
    return float(value)


def check_rate(value, name: str) -> float:
    """A dropout / drop-path probability in [0, 1)."""
    return check_number(value, name, 0., inclusive=True, maximum=1., max_inclusive=False)


def check_width(dim: int, ratio, name: str) -> int:
    """``int(dim * ratio)`` for a positive ``ratio`` (a hidden width), which must come out >= 1."""
    width = int(dim * check_number(ratio, name))
    if width < 1:
        raise ValueError(f'{name}={ratio!r} gives a hidden width of int({dim} * {ratio!r}) = {width}: it must be '
                         '>= 1')
    return width


def check_bool(value, name: str) -> bool:
    """``True``/``False`` (or 0/1): a string such as ``'False'`` would silently count as true."""
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f'{name} must be True or False, got {value!r} ({type(value).__name__})')


def check_frozen_stages(value, num: int, what: str = 'stages') -> int:
    """An int in [-1, ``num``] (-1: nothing frozen)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not -1 <= value <= num:
        raise ValueError(f'frozen_stages must be an int in [-1, {num}] (-1: none, {num}: all {what}), got '
                         f'{value!r}')
    return int(value)


def check_vit_arch(arch: dict) -> dict:
    """A plain ViT arch (``embed_dims, num_layers, num_heads, feedforward_channels``): positive ints, heads
    dividing the width."""
    for key in ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'):
        check_int(arch[key], f'arch[{key!r}]')
    if arch['embed_dims'] % arch['num_heads']:
        raise ValueError(f"embed_dims {arch['embed_dims']} is not divisible by num_heads {arch['num_heads']}")
    return arch


def check_arch_keys(arch: Mapping, known: Iterable[str]) -> None:
    """Refuse unknown keys in a custom ``arch`` dict (a typo would otherwise be ignored)."""
    known = set(known)
    unknown = sorted(set(arch) - known, key=str)
    if unknown:
        hints = ''.join(f' ({k!r}: did you mean {close[0]!r}?)' for k in unknown
                        for close in [difflib.get_close_matches(str(k), sorted(known), n=1)] if close)
        raise ValueError(f'unknown arch keys {unknown}{hints} (known: {sorted(known)})')


def check_image_batch(x, in_channels: int, dtype: torch.dtype, min_size: int = 1) -> None:
    """Refuse what a backbone cannot take, with the reason: not a tensor, not (B, C, H, W), wrong channel
    count, sides below ``min_size`` (the smallest input the model's strides/windows allow), or a dtype
    other than the model's (integer images must be converted and normalised first; half-precision inputs
    into an fp32 model belong under ``torch.autocast``). An empty batch is allowed."""
    _check_batch(x, in_channels, dtype, min_size, video=False)


def check_clip_batch(x, in_channels: int, dtype: torch.dtype, min_size: int = 1) -> None:
    """``check_image_batch`` for video clips (B, T, C, H, W): also refuses T = 0. An empty batch is allowed."""
    _check_batch(x, in_channels, dtype, min_size, video=True)


def _check_batch(x, in_channels: int, dtype: torch.dtype, min_size: int, video: bool) -> None:
    layout = f'(B, T, {in_channels}, H, W)' if video else f'(B, {in_channels}, H, W)'
    what = 'clip batch' if video else 'image batch'
    if not isinstance(x, torch.Tensor):
        hint = ''
        if hasattr(x, '__array__'):
            hint = (' (convert with torch.from_numpy(...).permute(0, 1, 4, 2, 3))' if video else
                    ' (convert with torch.from_numpy(...).permute(0, 3, 1, 2))')
        raise TypeError(f'expected a torch.Tensor {what} {layout}, got {type(x).__name__}{hint}')
    rank = 5 if video else 4
    if x.dim() != rank:
        raise ValueError(f'expected {"a" if video else "an"} {what} {layout}, got a {x.dim()}-d tensor '
                         f'{tuple(x.shape)}')
    c = 2 if video else 1
    if x.shape[c] != in_channels:
        hint = (f' (channels last? permute to {layout})' if x.shape[-1] == in_channels else '')
        raise ValueError(f'expected {in_channels} input channels, got {x.shape[c]} (input {tuple(x.shape)}, '
                         f'layout {layout}){hint}')
    if video and x.shape[1] < 1:
        raise ValueError(f'empty clip {tuple(x.shape)}: expected T >= 1 frames in {layout}')
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f'input {tuple(x.shape[-2:])} is smaller than the {min_size}x{min_size} this model '
                         'needs')
    if not x.is_floating_point():
        raise TypeError(f'expected a floating-point {what}, got {x.dtype} (convert to float and '
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
