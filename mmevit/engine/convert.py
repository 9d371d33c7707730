"""The one, family-agnostic checkpoint path: any supported checkpoint -> the exact keys of a model.

``convert_for_model(checkpoint, model)`` finds the module that converts (the model itself, or the first
sub-module with ``convert_state_dict``, e.g. a segmentor's ``backbone`` or a denoiser's ``generator``), hands
it the keys under its prefix, maps a classifier head through the family's ``convert_head``, and passes the
rest (necks, decode heads, ...) through unchanged. ``check_state_dict`` then refuses anything that does not
match the model exactly, naming every missing, unexpected and mis-shaped key. ``tools/test.py``, the
inferencers, ``init_cfg=dict(type='Pretrained')``, ``tools/model_converters/convert.py`` and ``from_official``
all use these two functions; nothing here knows a model family.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..models.checkpoint import StateDict, read_checkpoint, strip_prefixes, unwrap_state_dict


class CheckpointMismatchError(KeyError):
    """A converted checkpoint does not fit the model: the message lists the keys by name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ''


def toolbox_free_state(checkpoint: Mapping) -> StateDict:
    """The tensors of a checkpoint container, with DDP's ``module.`` removed."""
    return strip_prefixes(unwrap_state_dict(checkpoint), ('module.',))


def find_converter(model: nn.Module) -> Tuple[str, nn.Module]:
    """``(prefix, module)`` of the module that converts checkpoints for ``model``: the model itself or
    the first sub-module (pre-order) with ``convert_state_dict``."""
    for name, module in model.named_modules():
        if callable(getattr(module, 'convert_state_dict', None)):
            return (name + '.' if name else ''), module
    raise TypeError(f'{type(model).__name__} has no mmevit backbone or network (no module with '
                    'convert_state_dict): its checkpoints need no conversion by mmevit')


def convert_for_model(checkpoint: Mapping, model: nn.Module) -> Tuple[StateDict, List[str]]:
    """Convert ``checkpoint`` (a container or a flat state dict) to ``model``'s keys.

    Two source layouts are understood:
      - a whole-model checkpoint (keys under the converting module's prefix, e.g. ``backbone.*``): those keys
        are converted by the family, every other key passes through unchanged;
      - a bare backbone/network checkpoint (official, timm, mmpretrain...: no prefix): its head keys
        (the family's ``head_prefixes``) go through ``convert_head`` onto the model's head, if it has one.

    Returns ``(state, dropped)``: the model-keyed state dict and the source keys deliberately left out (a
    classifier head when the model is a segmentor, weights the family has no use for). Check the result
    with ``check_state_dict`` before trusting it.
    """
    state = toolbox_free_state(checkpoint)
    prefix, converter = find_converter(model)
    dropped: List[str] = []
    if not prefix:  # the model is the network itself: take the network part of a whole-model checkpoint
        state, dropped = select_network(state)
    if prefix and any(k.startswith(prefix) for k in state):
        body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
        head: StateDict = {}
    else:
        head = {k: v for k, v in state.items() if k.startswith(tuple(converter.head_prefixes))}
        body = {k: v for k, v in state.items() if k not in head}
        rest = {}
    try:
        converted, dropped_body = converter.convert_state_dict(body)
    except CheckpointMismatchError:
        raise
    except (KeyError, ValueError) as e:  # the family does not recognise the layout
        raise CheckpointMismatchError(f'not a {type(converter).__name__} checkpoint: {e.args[0] if e.args else e}'
                                      ) from e
    dropped += dropped_body
    out = {prefix + k: v for k, v in converted.items()}
    out.update(rest)
    if head:
        mapped = converter.convert_head(head, model_shapes(model)) if prefix else {}
        placed = {id(v) for v in mapped.values()}
        dropped += [k for k, v in head.items() if id(v) not in placed]
        out.update(mapped)
    return out, dropped


# Where OpenMMLab models keep the network an mmevit converter handles (mmseg/mmdet/mmpretrain, mmagic).
NETWORK_PREFIXES = ('backbone.', 'generator.')


def select_network(state: StateDict, prefix: Optional[str] = None) -> Tuple[StateDict, List[str]]:
    """The network part of a whole-model checkpoint (keys under ``prefix``, or under the first of
    ``NETWORK_PREFIXES`` present), prefix removed, and the keys left out; a bare state dict unchanged."""
    for p in ([prefix] if prefix else NETWORK_PREFIXES):
        if any(k.startswith(p) for k in state):
            return ({k[len(p):]: v for k, v in state.items() if k.startswith(p)},
                    [k for k in state if not k.startswith(p)])
    return state, []


def model_shapes(model: nn.Module) -> Dict[str, torch.Size]:
    """Key -> shape of ``model.state_dict()`` (works on the meta device)."""
    return {k: v.shape for k, v in model.state_dict().items()}


def check_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module, allow_missing: bool = False,
                     allow_unexpected: bool = False, source: str = 'checkpoint') -> None:
    """Raise ``CheckpointMismatchError`` unless ``state`` has exactly ``model``'s keys and shapes.

    ``allow_missing``/``allow_unexpected`` relax the key checks (shape mismatches always fail).
    """
    own = model_shapes(model)
    missing = [] if allow_missing else sorted(set(own) - set(state))
    unexpected = [] if allow_unexpected else sorted(set(state) - set(own))
    bad = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k])}' for k, v in state.items()
           if k in own and tuple(v.shape) != tuple(own[k])]
    if not (missing or unexpected or bad):
        return
    lines = [f'{source} does not match {type(model).__name__}:']
    if missing:
        lines.append(f'  missing keys ({len(missing)}): {", ".join(missing)}')
    if unexpected:
        lines.append(f'  unexpected keys ({len(unexpected)}): {", ".join(unexpected)}')
    if bad:
        lines.append(f'  shape mismatches ({len(bad)}): ' + '; '.join(bad))
    raise CheckpointMismatchError('\n'.join(lines))


def load_pretrained(module: nn.Module, filename: str, prefix: Optional[str] = None, logger=None) -> List[str]:
    """``init_cfg=dict(type='Pretrained')`` for an mmevit backbone: read, select ``prefix`` (default: the
    ``backbone.`` part of a whole-model checkpoint, if any), convert, load non-strictly and log missing and
    unexpected keys by name. Raises when no key at all fits, naming the file."""
    from ..models.checkpoint import load_report
    state, _ = select_network(toolbox_free_state(read_checkpoint(filename)), prefix)
    body = {k: v for k, v in state.items() if not k.startswith(tuple(module.head_prefixes))}
    try:
        converted, dropped = module.convert_state_dict(body)
    except KeyError as e:  # the family does not recognise the format: say which file
        raise CheckpointMismatchError(f'{filename}: {e}') from e
    own = set(module.state_dict())
    if not own & set(converted):
        raise CheckpointMismatchError(
            f'{filename}: no key fits {type(module).__name__} (checkpoint keys: {sorted(state)[:8]}...); '
            'is it a checkpoint of this model family?')
    load_report(module, converted, strict=False, logger=logger, source=filename)
    return dropped


def convert_file_for_model(filename: str, model: nn.Module, allow_missing: bool = False
                           ) -> Tuple[StateDict, List[str]]:
    """Read ``filename``, convert it for ``model`` and check the result strictly (tools/test.py, the CLI)."""
    try:
        state, dropped = convert_for_model(read_checkpoint(filename), model)
    except CheckpointMismatchError:
        raise
    except KeyError as e:  # the family does not recognise the format: say which file
        raise CheckpointMismatchError(f'{filename}: {e}') from e
    check_state_dict(state, model, allow_missing=allow_missing, source=filename)
    return state, dropped


def build_from_spec(spec: str, device: str = 'meta') -> nn.Module:
    """Build a registered model from ``'Name:key=value,key=value'`` (values as Python literals, ``dict(...)``
    or bare words), e.g. ``SkipAtViT:arch=s`` or ``SkipAtViT:arch=dict(embed_dims=32,...),skip_indices=()``,
    on ``device``."""

    from ..registry import MODELS
    name, _, args = spec.partition(':')
    kwargs = {}
    for item in filter(None, _split_top_level(args)):
        key, eq, value = item.partition('=')
        if not eq:
            raise ValueError(f'model spec {spec!r}: expected key=value, got {item!r}')
        kwargs[key.strip()] = _parse_value(value.strip())
    if MODELS.get(name) is None:
        raise KeyError(f'model spec {spec!r}: {name!r} is not registered in mmevit '
                       f'(registered: {sorted(MODELS.module_dict)})')
    with torch.device(device):
        return MODELS.build(dict(type=name, **kwargs))


_SPEC_CALLS = {'dict': dict, 'tuple': tuple, 'list': list}


def _parse_value(text: str):
    """A Python literal, ``dict(...)``/``tuple(...)``/``list(...)`` of literals, or a bare word (a string)."""
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        node = ast.parse(text, mode='eval').body
    except SyntaxError:
        return text
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SPEC_CALLS:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        return _SPEC_CALLS[node.func.id](*args, **kwargs)
    if isinstance(node, ast.Name):
        return text  # a bare word such as arch=s
    raise ValueError(f'model spec value {text!r}: use Python literals or dict(...)/tuple(...)')


def _split_top_level(text: str) -> Sequence[str]:
    """Split on commas outside brackets and quotes."""
    parts, depth, cur, quote = [], 0, '', None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        elif ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
            continue
        cur += ch
    parts.append(cur)
    return parts
