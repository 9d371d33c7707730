"""Official SkipAt / timm / mmpretrain ViT checkpoints -> mmevit model checkpoints.

Used by ``tools/test.py`` (an official checkpoint given for a config's model is converted on the fly) and
``tools/model_converters/skipat2mmevit.py`` (offline conversion). The backbone part goes through
``skipat_vit.checkpoint_filter_fn``; the classifier head is renamed for mmpretrain's heads
(``head.*`` -> ``head.layers.head.*`` of ``VisionTransformerClsHead``, or ``head.fc.*`` of ``LinearClsHead``).
Every source key that does not reach the result is reported by name.
"""
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..models.backbones.skipat_vit import (DEFAULT_SKIP_INDICES, SkipAtViT, checkpoint_filter_fn,
                                           convert_mmpretrain_vit, detect_format)
from ..models.checkpoint import StateDict, strip_prefixes, unwrap_state_dict

# Official/timm classifier keys: (source prefix, candidate target prefixes in the mmpretrain model).
_HEAD_RENAMES = (
    ('head.', ('head.layers.head.', 'head.fc.')),
    ('pre_logits.fc.', ('head.layers.pre_logits.',)),
)
_HEAD_SOURCE_PREFIXES = tuple(p for p, _ in _HEAD_RENAMES)


def toolbox_free_state(checkpoint: Mapping) -> StateDict:
    """The tensors of a checkpoint container, with DDP's ``module.`` removed."""
    return strip_prefixes(unwrap_state_dict(checkpoint), ('module.',))


def is_bare_vit(state_dict: Mapping) -> bool:
    """True for a ViT state dict at the top level (official SkipAt, timm, mmevit backbone, mmpretrain
    backbone): it needs conversion before loading into a toolbox model, whose keys are ``backbone.*``."""
    keys = list(state_dict)
    return (not any(k.startswith(('backbone.', 'decode_head.', 'neck.')) for k in keys)
            and any(k.startswith(('blocks.', 'param_', 'layers.')) for k in keys))


def _dropped(source: Mapping[str, torch.Tensor], result: Mapping[str, torch.Tensor]) -> List[str]:
    """Source keys whose tensor is in no result entry (conversions rename keys but keep tensor objects)."""
    kept = {id(v) for v in result.values()}
    return [k for k, v in source.items() if id(v) not in kept]


def convert_backbone(state_dict: Mapping[str, torch.Tensor], backbone: SkipAtViT) -> StateDict:
    """Backbone keys of ``backbone`` (no prefix), head keys excluded."""
    body = {k: v for k, v in state_dict.items() if not k.startswith(_HEAD_SOURCE_PREFIXES)}
    return checkpoint_filter_fn(body, backbone)


def convert_head(state_dict: Mapping[str, torch.Tensor], own_keys: Mapping[str, torch.Size]) -> StateDict:
    """Official/timm ``head.*`` / ``pre_logits.fc.*`` -> the first matching head of ``own_keys``
    (name -> shape of the target model's state dict). Keys with no matching place are left out."""
    out: StateDict = {}
    for src_prefix, targets in _HEAD_RENAMES:
        keys = {k: v for k, v in state_dict.items() if k.startswith(src_prefix)}
        if not keys:
            continue
        for target in targets:
            renamed = {target + k[len(src_prefix):]: v for k, v in keys.items()}
            if all(k in own_keys and tuple(own_keys[k]) == tuple(v.shape) for k, v in renamed.items()):
                out.update(renamed)
                break
    return out


def convert_for_model(checkpoint: Mapping, model: nn.Module) -> Tuple[StateDict, List[str]]:
    """Convert a bare ViT checkpoint for a toolbox model whose ``backbone`` is a ``SkipAtViT``.

    Returns the model-keyed state dict and the source keys left out (e.g. an official classifier head when
    ``model`` is a segmentor, the unused attention of skipped blocks).
    """
    state = toolbox_free_state(checkpoint)
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, SkipAtViT):
        raise TypeError(f'an official SkipAt/ViT checkpoint can only be converted for a model whose backbone is '
                        f'SkipAtViT; this model ({type(model).__name__}) has {type(backbone).__name__}')
    own = {k: v.shape for k, v in model.state_dict().items()}
    out = {'backbone.' + k: v for k, v in convert_backbone(state, backbone).items()}
    out.update(convert_head(state, own))
    return out, _dropped(state, out)


# ---------------------------------------------------------------------- offline conversion (no config)
def infer_backbone_cfg(state_dict: Mapping[str, torch.Tensor],
                       skip_indices: Optional[Sequence[int]] = None) -> dict:
    """A ``SkipAtViT`` config matching a bare ViT state dict's shapes.

    ``num_heads`` does not show in the weights: it is set to 1 (the state dict does not depend on it); set
    the real value in your model config. ``skip_indices`` defaults to the paper's blocks for official
    checkpoints, to the blocks holding a Phi for mmevit ones, and to ``()`` (plain ViT) otherwise.
    """
    fmt = detect_format(state_dict)
    names = convert_mmpretrain_vit(dict(state_dict)) if fmt == 'mmpretrain' else dict(state_dict)
    try:
        proj = names['patch_embed.proj.weight']
        fc1 = names['blocks.0.mlp.fc1.weight']
        pos = names['pos_embed']
    except KeyError as e:
        raise KeyError(f'not a ViT checkpoint: missing {e} (format detected: {fmt})') from None
    dims, in_channels, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
    depth = 1 + max(int(k.split('.')[1]) for k in names if k.startswith('blocks.'))
    rows = pos.shape[1] - 1
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f'pos_embed {tuple(pos.shape)}: {rows} grid rows are not a square')
    phi_fc1 = names.get('param_1.linear1.0.weight')
    phi_blocks = sorted({int(k.split('.')[1]) for k in names if k.startswith('blocks.') and '.phi.' in k})
    if phi_fc1 is None and phi_blocks:
        phi_fc1 = names[f'blocks.{phi_blocks[0]}.phi.fc1.weight']
    if skip_indices is None:
        skip_indices = {'official': DEFAULT_SKIP_INDICES, 'mmevit': tuple(phi_blocks)}.get(fmt, ())
    skip_indices = tuple(int(i) for i in skip_indices)
    if fmt == 'mmevit' and skip_indices != tuple(phi_blocks):
        raise ValueError(f'this mmevit checkpoint skips blocks {tuple(phi_blocks)}, not {skip_indices}')
    if fmt == 'official' and len(skip_indices) > sum(1 for k in names if k.endswith('.linear1.0.weight')):
        raise ValueError(f'skip_indices {skip_indices}: the official checkpoint has fewer Phi modules')
    if skip_indices and phi_fc1 is None:
        raise ValueError(f'skip_indices {skip_indices} need Phi weights, and a {fmt} checkpoint has none: '
                         'a plain ViT cannot initialise the Phi modules (convert it with --skip-indices '
                         'omitted, and let the SkipAt model initialise Phi itself)')
    cfg = dict(type='SkipAtViT',
               arch=dict(embed_dims=int(dims), num_layers=int(depth), num_heads=1,
                         feedforward_channels=int(fc1.shape[0])),
               img_size=int(side * patch), patch_size=int(patch), in_channels=int(in_channels),
               skip_indices=skip_indices, qkv_bias='blocks.0.attn.qkv.bias' in names,
               final_norm='norm.weight' in names, with_cls_token='cls_token' in names)
    if phi_fc1 is not None:
        cfg['phi_ratio'] = phi_fc1.shape[0] / dims
    return cfg


def head_cfg(state_dict: Mapping[str, torch.Tensor], in_channels: int) -> dict:
    """``VisionTransformerClsHead`` config for an official/timm (``head.*``) or mmpretrain
    (``head.layers.head.*``) classifier."""
    w = state_dict.get('head.weight', state_dict.get('head.layers.head.weight'))
    if w is None:
        raise KeyError('no classifier head (head.weight / head.layers.head.weight) in this checkpoint')
    pre = state_dict.get('pre_logits.fc.weight', state_dict.get('head.layers.pre_logits.weight'))
    return dict(type='VisionTransformerClsHead', num_classes=int(w.shape[0]), in_channels=int(in_channels),
                hidden_dim=None if pre is None else int(pre.shape[0]))


def build_meta_backbone(cfg: dict) -> SkipAtViT:
    kwargs = {k: v for k, v in cfg.items() if k != 'type'}
    return SkipAtViT(**kwargs, device='meta')


def convert_checkpoint(checkpoint: Mapping, model: str = 'backbone',
                       skip_indices: Optional[Sequence[int]] = None) -> Tuple[StateDict, dict, List[str]]:
    """Offline conversion of a ViT checkpoint to mmevit keys.

    Args:
        checkpoint: A checkpoint (container or bare state dict) in official SkipAt, timm, mmpretrain or
            mmevit format; a ``backbone.`` prefix is removed.
        model: ``'backbone'`` (``SkipAtViT`` keys) or ``'classifier'`` (mmpretrain ``ImageClassifier`` with
            ``VisionTransformerClsHead``: ``backbone.*`` and ``head.layers.*``).
        skip_indices: The SkipAt model's skipped blocks (see ``infer_backbone_cfg``).
    Returns:
        ``(state_dict, meta, dropped)``: ``meta`` holds the backbone (and head) config the state dict loads
        into strictly, ``dropped`` the source keys that were left out.
    """
    if model not in ('backbone', 'classifier'):
        raise ValueError(f"model must be 'backbone' or 'classifier', got {model!r}")
    state = toolbox_free_state(checkpoint)
    if any(k.startswith('backbone.') for k in state):
        state = {(k[len('backbone.'):] if k.startswith('backbone.') else k): v for k, v in state.items()}
    fmt = detect_format({k: v for k, v in state.items() if not k.startswith('head.')})
    bcfg = infer_backbone_cfg({k: v for k, v in state.items() if not k.startswith('head.')}, skip_indices)
    backbone = build_meta_backbone(bcfg)
    out = convert_backbone(state, backbone)
    _check_strict(out, backbone.state_dict(), 'backbone')
    meta = dict(source_format=fmt, model=model, backbone=bcfg)
    if model == 'classifier':
        hcfg = head_cfg(state, bcfg['arch']['embed_dims'])
        meta['head'] = hcfg
        out = {'backbone.' + k: v for k, v in out.items()}
        for k, v in state.items():
            if k.startswith('head.layers.'):
                out[k] = v
        out.update(convert_head(state, _classifier_head_shapes(hcfg)))
    return out, meta, _dropped(state, out)


def _classifier_head_shapes(hcfg: dict) -> Dict[str, Tuple[int, ...]]:
    c, n, h = hcfg['in_channels'], hcfg['num_classes'], hcfg['hidden_dim']
    shapes = {'head.layers.head.weight': (n, h or c), 'head.layers.head.bias': (n,)}
    if h:
        shapes.update({'head.layers.pre_logits.weight': (h, c), 'head.layers.pre_logits.bias': (h,)})
    return shapes


def _check_strict(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], what: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [f'{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}' for k, v in state.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise KeyError(f'converted {what} does not match SkipAtViT: missing {missing}, unexpected {unexpected}, '
                       f'shape mismatches {bad}')
