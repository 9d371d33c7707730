"""Retrofit SkipAt onto a pretrained ViT/DeiT: a SkipAt-ViT state dict ready for fine-tuning.

Every weight the SkipAt model shares with the ViT (patch/position embeddings, cls token, all MLP halves,
the attention of the blocks that keep it, the final norm) is copied unchanged; the ``norm1``/``attn`` of the
skipped blocks are dropped (reported); the classifier head is dropped (SkipAtViT is a backbone). Each
skipped block's Phi is initialised by one of two rules:

``'identity'`` (default): Phi starts as the identity map, so that at step 0 every skipped block *reuses* the
    MSA output of the last block that computed attention (the premise of SkipAt: those outputs are highly
    correlated, CKA close to 1) and the pretrained MLPs see inputs close to the ones they were trained on.
    Phi = ECA(fc2(GELU(dw(GELU(fc1 z))))) has no residual and two GELUs, so the identity is built in GELU's
    linear regime: for the first ``d`` hidden channels, ``fc1 = I`` with bias ``beta`` (so ``GELU(z + beta)
    = z + beta`` up to ``(z + beta) Phi_N(-(z + beta))``, below 2e-6 for ``z > 5 - beta``), the depth-wise
    conv passes the centre tap (weight 1, bias 0), ``fc2 = 2 I`` with bias ``-2 beta`` and the ECA conv is zero
    (a constant 0.5 gate, hence the 2). With ``beta = 20`` (``shift``) Phi(z) = z to ~1e-5 for z > -15 (fp32
    cancellation of ``beta``). The other ``hidden - d`` channels keep PyTorch's default init in fc1/dw and get
    zero fc2 columns: they do not change the output at step 0 but get gradients from the first step, so Phi
    can learn more than a re-scaled copy. Needs ``phi_ratio >= 1``.
``'default'``: PyTorch's default init, as the official code (where Phi is trained from scratch with the
    rest of the network); the skipped blocks' attention branch then starts as noise.
"""
from typing import List, Mapping, Tuple

import torch
from torch import nn

from ..engine.convert import (CheckpointMismatchError, check_state_dict, convert_for_model, select_network,
                              toolbox_free_state)
from ..models.backbones.base import DEFAULT_HEAD_PREFIXES
from ..models.backbones.skipat_vit import SkipAtBlock, SkipAtViT, detect_format
from ..models.checkpoint import StateDict
from ..models.layers import SkipAtPhi

PHI_INITS = ('identity', 'default')


@torch.no_grad()
def init_phi_identity(phi: SkipAtPhi, shift: float = 20.) -> None:
    """Make ``phi`` the identity map in GELU's linear regime (see the module doc)."""
    dim, hidden = phi.fc1.in_features, phi.fc1.out_features
    if hidden < dim or phi.fc2.out_features != dim:
        raise ValueError(f'an identity Phi needs hidden >= dim and out == dim, got {dim} -> {hidden} -> '
                         f'{phi.fc2.out_features} (use phi_ratio >= 1 or phi_init="default")')
    if not isinstance(phi.eca, nn.Module) or not hasattr(phi.eca, 'conv'):
        raise ValueError('init_phi_identity expects Phi with ECA')
    eye = torch.eye(dim, dtype=phi.fc1.weight.dtype, device=phi.fc1.weight.device)
    phi.fc1.weight[:dim] = eye
    phi.fc1.bias[:dim] = shift
    k = phi.dwconv.weight.shape[-1]
    phi.dwconv.weight[:dim] = 0.
    phi.dwconv.weight[:dim, 0, k // 2, k // 2] = 1.
    phi.dwconv.bias[:dim] = 0.
    phi.fc2.weight.zero_()
    phi.fc2.weight[:, :dim] = 2. * eye  # ECA's gate is sigmoid(0) = 0.5
    phi.fc2.bias.fill_(-2. * shift)
    phi.eca.conv.weight.zero_()


def retrofit_skipat(checkpoint: Mapping, model: SkipAtViT, phi_init: str = 'identity', shift: float = 20.,
                    seed: int = 0) -> Tuple[StateDict, List[str], List[str]]:
    """Pretrained ViT ``checkpoint`` (timm/DeiT, official SkipAt ``vit-*.t7``, mmpretrain/mmseg ViT, mmevit
    ViT; a container or a flat dict; a whole-classifier ``backbone.*`` checkpoint too) -> ``model``'s state.

    ``model`` is the target ``SkipAtViT`` (its ``skip_indices`` chosen; real tensors, not meta): its Phi
    weights are (re)initialised by ``phi_init`` with ``seed`` and taken into the result.
    Returns ``(state, dropped_attention, dropped_other)``: the strict-loadable state dict, the skipped
    blocks' attention keys dropped, and the other source keys left out (head, DeiT's dist token...).
    A checkpoint that already has Phi weights (a SkipAt model) is refused: convert it with
    ``tools/model_converters/convert.py`` instead.
    """
    if not isinstance(model, SkipAtViT):
        raise TypeError(f'the retrofit target must be a SkipAtViT, got {type(model).__name__}')
    if not model.skip_indices:
        raise ValueError('the target SkipAtViT skips no block: give skip_indices')
    if phi_init not in PHI_INITS:
        raise ValueError(f'phi_init must be one of {PHI_INITS}, got {phi_init!r}')
    if model.is_meta():
        raise ValueError('the retrofit target must have real tensors (Phi is initialised), not meta')
    body, _ = select_network(toolbox_free_state(checkpoint))
    fmt = detect_format({k: v for k, v in body.items() if not k.startswith(DEFAULT_HEAD_PREFIXES)})
    if fmt not in ('timm', 'mmpretrain'):
        raise ValueError(f'the source is a SkipAt checkpoint ({fmt} format, with Phi weights), not a plain ViT: '
                         'convert it with tools/model_converters/convert.py')
    timm_names = _as_timm_keys(body)
    source_blocks = {int(k.split('.')[1]) for k in timm_names.values() if k.startswith('blocks.')}
    if len(source_blocks) != model.num_layers:
        raise CheckpointMismatchError(f'the source ViT has {len(source_blocks)} blocks, the target '
                                      f'{model.num_layers}')

    state, dropped = convert_for_model(checkpoint, model)
    check_state_dict(state, model, allow_missing=True, source='source ViT')
    phi_keys = sorted(k for k in model.state_dict() if '.phi.' in k)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing != phi_keys:
        raise CheckpointMismatchError('the source ViT lacks weights the retrofit must copy: '
                                      + ', '.join(sorted(set(missing) - set(phi_keys))))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for blk in model.blocks:
            if isinstance(blk, SkipAtBlock):
                _reset(blk.phi)
                if phi_init == 'identity':
                    init_phi_identity(blk.phi, shift)
    own = model.state_dict()
    state.update({k: own[k] for k in phi_keys})
    skipped = {str(i) for i in model.skip_indices}
    attention = [k for k in dropped if timm_names.get(k, k).startswith('blocks.')
                 and timm_names.get(k, k).split('.')[1] in skipped
                 and timm_names.get(k, k).split('.')[2] in ('norm1', 'attn')]
    other = [k for k in dropped if k not in attention]
    return state, attention, other


def _as_timm_keys(body: StateDict) -> dict:
    """source key -> its timm-style name (mmpretrain ``layers.i.ln1`` -> ``blocks.i.norm1``...)."""
    from ..models.backbones.skipat_vit import convert_mmpretrain_vit
    out = {}
    for k, v in body.items():
        (new,) = convert_mmpretrain_vit({k: v})
        out[k] = new
    return out


def _reset(module: nn.Module) -> None:
    """PyTorch default init of every sub-module that has ``reset_parameters``."""
    for m in module.modules():
        if m is not module and hasattr(m, 'reset_parameters'):
            m.reset_parameters()


__all__ = ['PHI_INITS', 'init_phi_identity', 'retrofit_skipat']
