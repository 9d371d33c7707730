"""``from_official(name, arch, state_dict)``: our equivalent of an official model, weights converted.

``arch`` is the official constructor's kwargs exactly as the parity fixtures store them; the returned model
is in eval mode and its call on the official input returns what the official forward returns (logits, or
the restored image). Each family registers its builder beside its model with
``@register_official('<name>')``; this module knows none of them.
"""
from typing import Any, Callable, Dict, Mapping

import torch
from torch import nn

OfficialBuilder = Callable[[Mapping, Mapping[str, torch.Tensor]], nn.Module]
OFFICIAL_BUILDERS: Dict[str, OfficialBuilder] = {}


def register_official(name: str) -> Callable[[OfficialBuilder], OfficialBuilder]:
    """Decorator: ``fn(arch, state_dict) -> model`` builds our equivalent of the official ``name`` model."""

    def decorate(fn: OfficialBuilder) -> OfficialBuilder:
        if name in OFFICIAL_BUILDERS and OFFICIAL_BUILDERS[name] is not fn:
            raise KeyError(f'register_official: {name!r} is already registered')
        OFFICIAL_BUILDERS[name] = fn
        return fn

    return decorate


def from_official(name: str, arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build our equivalent of the official ``name`` model with ``arch`` kwargs and load ``state_dict``.

    Args:
        name: A registered official model (``sorted(mmevit.official.OFFICIAL_BUILDERS)``).
        arch: The official constructor kwargs, as stored in the parity fixtures.
        state_dict: The official model's ``state_dict()`` (keys exactly as the official code names them).
    Returns:
        The model in eval mode; ``model(x)`` returns what the official forward returns.
    """
    if name not in OFFICIAL_BUILDERS:
        raise ValueError(f'from_official: unknown model {name!r}; expected one of {sorted(OFFICIAL_BUILDERS)}')
    if not isinstance(arch, Mapping):
        raise TypeError(f'from_official: arch must be a dict of the official constructor kwargs, got '
                        f'{type(arch).__name__}')
    return OFFICIAL_BUILDERS[name](arch, state_dict)


def check_kwargs(arch: Mapping, known: set, what: str) -> None:
    """Refuse official kwargs a builder does not know (a silent wrong model is worse than an error)."""
    unknown = set(arch) - set(known)
    if unknown:
        raise ValueError(f'unknown {what} kwargs: {sorted(unknown)} (known: {sorted(known)})')


def norm_eps(norm_layer: Any, default: float) -> float:
    """The epsilon of a fixture's ``norm_layer`` (``{'type': 'LayerNorm', 'eps': ...}`` or ``None``)."""
    if norm_layer is None:
        return default
    if isinstance(norm_layer, Mapping) and norm_layer.get('type') == 'LayerNorm':
        return float(norm_layer.get('eps', 1e-5))
    raise ValueError(f'unsupported norm_layer {norm_layer!r}: only LayerNorm ({{"type": "LayerNorm", "eps": ...}})')


def load_converted(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Convert an official state dict for ``model`` through the family-agnostic path, load it strictly
    (every key of the model must come from the checkpoint) and return the model in eval mode."""
    from .engine.convert import check_state_dict, convert_for_model
    state, _ = convert_for_model(state_dict, model)
    check_state_dict(state, model, source='official state dict')
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_classifier(backbone: dict, head: dict, state_dict: Mapping[str, torch.Tensor],
                     neck: dict = None) -> nn.Module:
    """mmpretrain ``ImageClassifier(backbone, neck, head)`` with an official state dict loaded strictly."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    # mmpretrain's registry follows the current default scope: pin it, whatever the caller set.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cfg = dict(type='ImageClassifier', backbone=backbone, head=head)
        if neck is not None:
            cfg['neck'] = neck
        model = MODELS.build(cfg)
    return load_converted(model, state_dict)
