"""Property-based checks (hypothesis) of the shape logic of every family.

Backbones: for a random batch (1-2), height and width (from 1 px, odd sizes included, to 80 px) and a random
increasing subset of ``out_indices`` (given as positive or negative indices), each output ``i`` is
``(B, C_i, ceil(H / s_i), ceil(W / s_i))`` with the documented widths ``C_i`` and strides ``s_i``: inputs whose
sides are not multiples of a stride are padded (ViT/LIT: corner padding to the patch size, LIT's DTM pads odd
maps; LeViT: its stride-2 convolutions and subsampling round up), never refused. Restoration networks return
the input's shape for any H, W (and any T >= 1 for the video denoiser). All outputs are finite.

A small, fixed number of derandomised examples per property keeps this file fast and deterministic in CI.
"""
import functools

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmevit.models.backbones.evo_levit import EvoLeViT
from mmevit.models.backbones.evo_vit import EvoViT
from mmevit.models.backbones.lit import LIT
from mmevit.models.backbones.skipat_vit import SkipAtViT
from mmevit.models.denoisers.uformer import Uformer
from mmevit.models.denoisers.uniformer_denoiser import UniFormerDenoiser

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

VIT = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=64)
LIT_REL = dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_heads=[1, 2, 3, 4], mlp_ratios=[2, 2, 2, 2],
               position='relative')
LIT_ABS = dict(LIT_REL, position='absolute', norm_eps=1e-6)
EVO_SCHEDULE = dict(keep_ratios=(1, 1, .5, .5, .5, .5), tradeoffs=(1, 1, .5, .5, .5, .5), selection_layers=(2, 4))
LEVIT = dict(embed_dims=[16, 24, 32], key_dim=8, num_heads=[2, 3, 4], depths=[3, 2, 2])
UFORMER = dict(embed_dims=4, depths=[1] * 9, num_heads=[1, 1, 2, 4, 8, 8, 4, 2, 1])
UNIFORMER = dict(embed_dims=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 4], mlp_ratio=2.)

sides = st.integers(min_value=1, max_value=80)
batches = st.integers(min_value=1, max_value=2)


def out_indices(num: int):
    """A non-empty increasing subset of range(num), written with positive or with negative indices."""
    subset = st.lists(st.integers(0, num - 1), min_size=1, max_size=num, unique=True).map(sorted)
    return st.tuples(subset, st.booleans()).map(lambda t: tuple(i - num if t[1] else i for i in t[0]))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def run(model: torch.nn.Module, x: torch.Tensor):
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(x)


def check_maps(outs, B: int, H: int, W: int, channels, strides) -> None:
    assert [tuple(o.shape) for o in outs] == [(B, c, ceil_div(H, s), ceil_div(W, s))
                                              for c, s in zip(channels, strides)]
    assert all(torch.isfinite(o).all() for o in outs)


def normalised(indices, num: int):
    return [i % num for i in indices]


# ---------------------------------------------------------------------------------------------- backbones
@PROPERTY
@given(B=batches, H=sides, W=sides, indices=out_indices(6), skip=st.sampled_from([(), (2, 3), (1, 2, 3, 4, 5)]))
def test_skipat_vit_featmaps(B, H, W, indices, skip):
    """Every block outputs the patch grid: (B, embed_dims, ceil(H/16), ceil(W/16))."""
    torch.manual_seed(0)
    model = SkipAtViT(VIT, img_size=32, skip_indices=skip, out_indices=indices)
    outs = run(model, torch.rand(B, 3, H, W))
    check_maps(outs, B, H, W, [32] * len(indices), [16] * len(indices))


@PROPERTY
@given(B=batches, H=sides, W=sides, indices=out_indices(4), position=st.sampled_from(['relative', 'absolute']))
def test_lit_featmaps(B, H, W, indices, position):
    """Stage i: (B, out_channels[i], ceil(H / out_strides[i]), ...) with out_strides = 4 * 2**i."""
    torch.manual_seed(0)
    model = LIT(LIT_REL if position == 'relative' else LIT_ABS, img_size=32, out_indices=indices)
    assert model.out_channels == tuple(LIT_REL['embed_dims'][i] for i in normalised(indices, 4))
    assert model.out_strides == tuple(4 * 2 ** i for i in normalised(indices, 4))
    outs = run(model, torch.rand(B, 3, H, W))
    check_maps(outs, B, H, W, model.out_channels, model.out_strides)


@PROPERTY
@given(B=batches, H=sides, W=sides, indices=out_indices(6), pruned=st.booleans())
def test_evo_vit_featmaps(B, H, W, indices, pruned):
    """Token pruning keeps the spatial order and the full grid: every layer gives (B, C, ceil(H/16), ...)."""
    torch.manual_seed(0)
    schedule = EVO_SCHEDULE if pruned else dict(keep_ratios=(1,) * 6, tradeoffs=(1,) * 6)
    model = EvoViT(VIT, img_size=32, out_indices=indices, **schedule)
    outs = run(model, torch.rand(B, 3, H, W))
    check_maps(outs, B, H, W, [32] * len(indices), [16] * len(indices))


@PROPERTY
@given(B=batches, H=sides, W=sides, indices=out_indices(3))
def test_evo_levit_featmaps(B, H, W, indices):
    """Stage s: (B, embed_dims[s], ceil(H / (16 * 2**s)), ...) (four stride-2 stem convs, then stride-2
    subsampling attentions, each rounding up)."""
    torch.manual_seed(0)
    model = EvoLeViT(LEVIT, img_size=64, out_indices=indices)
    outs = run(model, torch.rand(B, 3, H, W))
    stages = normalised(indices, 3)
    check_maps(outs, B, H, W, [LEVIT['embed_dims'][s] for s in stages], [16 * 2 ** s for s in stages])


# ---------------------------------------------------------------------------------------------- restoration
@functools.lru_cache(maxsize=None)
def _uformer(skipat) -> Uformer:
    torch.manual_seed(0)
    return Uformer(UFORMER, img_size=64, drop_path_rate=0., skipat=skipat).eval()


@PROPERTY
@given(B=batches, H=sides, W=sides, skipat=st.sampled_from([None, 'feature', 'attention']))
def test_uformer_restores_any_size(B, H, W, skipat):
    """Padded to size_divisor at the bottom/right, cropped back: the output has the input's shape."""
    x = torch.rand(B, 3, H, W)
    y = run(_uformer(skipat), x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@functools.lru_cache(maxsize=None)
def _uniformer(skip: bool) -> UniFormerDenoiser:
    torch.manual_seed(0)
    return UniFormerDenoiser(dict(UNIFORMER), skip_attention=skip).eval()


@PROPERTY
@given(B=batches, T=st.integers(1, 9), H=st.integers(1, 48), W=st.integers(1, 48), skip=st.booleans())
def test_uniformer_denoiser_restores_any_clip(B, T, H, W, skip):
    """Frames padded to the temporal window, sides to size_divisor, cropped back: the input's shape."""
    x = torch.rand(B, T, 3, H, W)
    y = run(_uniformer(skip), x)
    assert y.shape == x.shape and torch.isfinite(y).all()
