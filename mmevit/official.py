"""``from_official(name, arch, state_dict)``: our equivalent of an official model, weights converted.

``arch`` is the official constructor's kwargs exactly as the parity fixtures store them; the returned
model is in eval mode and its call on the official input returns what the official forward returns.
"""
from typing import Any, Callable, Dict, Mapping

import torch
from torch import nn

from .models.backbones.skipat_vit import DEFAULT_SKIP_INDICES

# Official kwargs that only matter for training or are fixed by the official class.
_SKIPAT_IGNORED = {'drop_rate', 'attn_drop_rate', 'drop_path_rate', 'weight_init', 'embed_layer'}
_SKIPAT_KNOWN = {'img_size', 'patch_size', 'in_chans', 'num_classes', 'embed_dim', 'depth', 'num_heads',
                 'mlp_ratio', 'qkv_bias', 'representation_size', 'distilled', 'norm_layer', 'act_layer',
                 'skip_indices'} | _SKIPAT_IGNORED


def _norm_eps(norm_layer: Any, default: float) -> float:
    if norm_layer is None:
        return default
    if isinstance(norm_layer, Mapping) and norm_layer.get('type') == 'LayerNorm':
        return float(norm_layer.get('eps', 1e-5))
    raise ValueError(f'unsupported norm_layer {norm_layer!r}: only LayerNorm ({{"type": "LayerNorm", "eps": ...}})')


def _skipat_vit(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """``VisionTransformerSkipAt(**arch)`` -> mmpretrain ``ImageClassifier(SkipAtViT, VisionTransformerClsHead)``."""
    unknown = set(arch) - _SKIPAT_KNOWN
    if unknown:
        raise ValueError(f'unknown VisionTransformerSkipAt kwargs: {sorted(unknown)}')
    if arch.get('distilled'):
        raise ValueError('distilled=True (DeiT distillation token) is not supported by SkipAtViT')
    if arch.get('act_layer') not in (None, 'GELU'):
        raise ValueError(f"unsupported act_layer {arch['act_layer']!r}: SkipAt uses GELU")
    num_classes = int(arch.get('num_classes', 1000))
    if num_classes < 1:
        raise ValueError('num_classes must be >= 1 (the official num_classes=0 returns features; use the '
                         'SkipAtViT backbone directly for that)')
    embed_dim, depth = int(arch.get('embed_dim', 768)), int(arch.get('depth', 12))
    skip = tuple(arch.get('skip_indices', DEFAULT_SKIP_INDICES))
    backbone = dict(
        type='SkipAtViT',
        arch=dict(embed_dims=embed_dim, num_layers=depth, num_heads=int(arch.get('num_heads', 12)),
                  feedforward_channels=int(embed_dim * float(arch.get('mlp_ratio', 4.)))),
        img_size=arch.get('img_size', 224), patch_size=int(arch.get('patch_size', 16)),
        in_channels=int(arch.get('in_chans', 3)), skip_indices=skip, phi_chain='continue',
        qkv_bias=bool(arch.get('qkv_bias', True)), norm_eps=_norm_eps(arch.get('norm_layer'), 1e-6),
        out_type='cls_token', final_norm=True)
    head = dict(type='VisionTransformerClsHead', num_classes=num_classes, in_channels=embed_dim,
                hidden_dim=arch.get('representation_size'))
    return _build_classifier(backbone, head, state_dict)


def _build_classifier(backbone: dict, head: dict, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from .engine.convert import convert_for_model
    # mmpretrain's registry follows the current default scope: pin it, whatever the caller set.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(type='ImageClassifier', backbone=backbone, head=head))
    state, _ = convert_for_model(state_dict, model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f'official checkpoint does not match the converted model: missing {missing}, '
                       f'unexpected {unexpected}')
    return model.eval()


_BUILDERS: Dict[str, Callable[[Mapping, Mapping], nn.Module]] = {
    'skipat_vit': _skipat_vit,
}
# Families that have official fixtures but whose port is tracked in later issues.
_PLANNED = ('lit_ti', 'lit', 'evo_deit', 'evo_levit', 'uformer')


def from_official(name: str, arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build our equivalent of the official ``name`` model with ``arch`` kwargs and load ``state_dict``.

    Args:
        name: ``skipat_vit`` (ported); ``lit_ti``, ``lit``, ``evo_deit``, ``evo_levit``, ``uformer`` are
            not ported yet and raise ``ValueError`` saying so.
        arch: The official constructor kwargs, as stored in the parity fixtures.
        state_dict: The official model's ``state_dict()`` (keys exactly as the official code names them).
    Returns:
        The model in eval mode; ``model(x)`` returns what the official forward returns.
    """
    if name in _BUILDERS:
        return _BUILDERS[name](arch, state_dict)
    if name in _PLANNED:
        raise ValueError(f'from_official: {name!r} is not ported yet (ported: {sorted(_BUILDERS)})')
    raise ValueError(f'from_official: unknown model {name!r}; expected one of {sorted(_BUILDERS) + list(_PLANNED)}')
