"""Stand-ins for the official implementations' forward passes, for parity tests and for timing our models against
the official computation at identical outputs, in one process (``official_pair``).

Each stand-in runs the official op sequence (eager attention, the official reshapes and copies) on an official
state dict and is checked against the official parity fixtures in the tests. LIT needs no stand-in: its official
computation path is our model with ``+eager`` (eager attention, plain linears) and ``dtm_impl='torchvision'``
(the deformable convolution the official code runs).
"""
from typing import Tuple

import torch
from torch import nn

from .skipat import OfficialSkipAt
from .uformer import OfficialUformerOps, to_official_state_dict

SKIPAT_WIDTHS = dict(t=(192, 3), s=(384, 6), b=(768, 12))
OFFICIAL_MODELS = tuple(f'skipat-{a}' for a in SKIPAT_WIDTHS) + tuple(f'uformer-{a}' for a in 'tsb') + \
    tuple(f'lit-{a}' for a in ('ti', 's', 'm', 'b'))


def official_pair(name: str, size: int, seed: int = 0) -> Tuple[nn.Module, nn.Module]:
    """``(official, ours)`` in eval mode with the same random weights, for a ``size`` x ``size`` input.

    ``name``: ``skipat-{t,s,b}`` (classifiers: logits), ``uformer-{t,s,b}`` (restored image) or
    ``lit-{ti,s,m,b}`` (classification features).
    """
    from mmevit.official import from_official
    if name not in OFFICIAL_MODELS:
        raise KeyError(f'no official stand-in for {name!r}; known: {", ".join(OFFICIAL_MODELS)}')
    family, arch = name.split('-', 1)
    torch.manual_seed(seed)
    if family == 'skipat':
        dim, heads = SKIPAT_WIDTHS[arch]
        kwargs = dict(img_size=size, embed_dim=dim, depth=12, num_heads=heads, num_classes=1000)
        official = OfficialSkipAt(**kwargs).eval()
        with torch.no_grad():
            for p in official.parameters():  # trunc-normal-like weights; LayerNorms near 1/0
                p.normal_(1. if p.dim() == 1 and p.shape[0] == dim else 0., 0.02)
        return official, from_official('skipat_vit', kwargs, official.state_dict())
    from mmevit.analysis.benchmark import build_model
    if family == 'uformer':
        ours = build_model(f'uformer-{arch}:img_size={size}')
        cfg = ours.arch_zoo[arch]
        official_arch = dict(img_size=size, embed_dim=cfg['embed_dims'], depths=cfg['depths'],
                             num_heads=cfg['num_heads'], win_size=8, modulator=True, dd_in=3)
        return OfficialUformerOps(official_arch, to_official_state_dict(ours)).eval(), ours
    ours = build_model(f'lit-{arch}')
    official = build_model(f'lit-{arch}:dtm_impl=torchvision+eager')
    official.load_state_dict(ours.state_dict())
    return official, ours
