"""LIT: parity with both official designs, DTM against independent references, the dense-prediction contract,
checkpoints (official classification/dense layouts, resizing), errors."""
import glob
import json
import os.path as osp

import pytest
import torch
from demo_overrides import ade_demo_config, coco_demo_config, train_and_test
from input_cases import assert_bad_batches_refused
import torch.nn.functional as F

import mmevit
from mmevit.models.backbones.lit import LIT, convert_lit_state_dict, convert_official_lit_ti, detect_format
from mmevit.models.layers.dtm import DeformableTokenMerging, DeformConv2x2, deform_conv2x2_gather
from mmevit.models.layers.rel_pos import GlobalSelfAttention, relative_position_bias

REL = dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_heads=[1, 2, 3, 4], mlp_ratios=[2, 2, 2, 2],
           position='relative')
ABS = dict(REL, position='absolute', norm_eps=1e-6)


def _fixture_paths():
    from conftest import FIXTURES
    return sorted(glob.glob(osp.join(FIXTURES, 'lit', '*.pt'))) or ['<missing>']


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero offset convs and BatchNorm statistics, so DTM and BN are exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, DeformConv2x2):
            m.conv_offset.weight.data = torch.randn(m.conv_offset.weight.shape, generator=g) * 0.3
            m.conv_offset.bias.data = torch.randn(8, generator=g) * 0.5
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var.data = torch.rand(m.num_features, generator=g) + 0.5
        if isinstance(m, GlobalSelfAttention) and m.relative:
            m.relative_position_bias_table.data = torch.randn(m.relative_position_bias_table.shape, generator=g)
    return model


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize('path', _fixture_paths(), ids=osp.basename)
def test_parity_with_official_fixture(path):
    assert osp.isfile(path), 'no LIT parity fixtures found in ../shared/fixtures/lit'
    fx = torch.load(path, weights_only=False)
    name = 'lit_ti' if 'code_for_lit_ti' in fx['official_class'] else 'lit'
    model = mmevit.from_official(name, fx['arch'], fx['state_dict'])
    assert not model.training
    seen = {}
    hooks = [model.head.fc.register_forward_pre_hook(lambda m, a: seen.__setitem__('pre_logits', a[0]))]
    for i, stage in enumerate(model.backbone.layers):
        hooks.append(stage.blocks[-1].register_forward_hook(
            lambda m, a, o, i=i: seen.__setitem__(f'stage{i + 1}', o)))
        if stage.downsample is not None:
            hooks.append(stage.downsample.dconv.conv_offset.register_forward_hook(
                lambda m, a, o, i=i: seen.__setitem__(f'offset{i + 2}', o)))
    with torch.no_grad():
        logits = model(fx['input'])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(logits, fx['output'], atol=1e-4, rtol=1e-3)
    assert set(fx['extra']) <= set(seen)
    for key, expected in fx['extra'].items():
        torch.testing.assert_close(seen[key], expected, atol=1e-4, rtol=1e-3, msg=lambda m: f'{key}: {m}')


@pytest.mark.parametrize('path', _fixture_paths(), ids=osp.basename)
def test_parity_with_torchvision_deform_conv(path):
    """The torchvision op gives the same logits as the gather formulation (the default on CPU)."""
    fx = torch.load(path, weights_only=False)
    name = 'lit_ti' if 'code_for_lit_ti' in fx['official_class'] else 'lit'
    model = mmevit.from_official(name, fx['arch'], fx['state_dict'])
    with torch.no_grad():
        gather = model(fx['input'])
        for m in model.modules():
            if isinstance(m, DeformConv2x2):
                m.impl = 'torchvision'
        torchvision = model(fx['input'])
    torch.testing.assert_close(gather, torchvision, atol=1e-5, rtol=1e-4)


def test_official_use_checkpoint_becomes_with_cp():
    path = next(p for p in _fixture_paths() if 'code_for_lit_ti' not in torch.load(p, weights_only=False)[
        'official_class'])
    fx = torch.load(path, weights_only=False)
    model = mmevit.from_official('lit', dict(fx['arch'], use_checkpoint=True), fx['state_dict'])
    assert model.backbone.with_cp
    with torch.no_grad():
        torch.testing.assert_close(model(fx['input']), fx['output'], atol=1e-4, rtol=1e-3)


def test_from_official_rejects_unknown_and_unported():
    with pytest.raises(ValueError, match='unknown LIT-Ti LIT kwargs'):
        mmevit.from_official('lit_ti', dict(embed_dims=[8], bogus=1), {})
    with pytest.raises(ValueError, match='LIT-Ti arch needs'):
        mmevit.from_official('lit_ti', dict(embed_dims=[8, 16]), {})
    with pytest.raises(ValueError, match='qk_scale'):
        mmevit.from_official('lit', dict(qk_scale=0.1), {})
    with pytest.raises(ValueError, match='ape=True'):
        mmevit.from_official('lit', dict(ape=True), {})
    with pytest.raises(ValueError, match='patch_norm=False'):
        mmevit.from_official('lit', dict(patch_norm=False), {})
    with pytest.raises(ValueError, match='num_classes'):
        mmevit.from_official('lit', dict(num_classes=0), {})


# ---------------------------------------------------------------------------------------------- variants
def _classifier_backbone(arch: str) -> LIT:
    if arch == 'ti':
        return LIT('ti', out_indices=(3,), out_type='cls_token', with_cls_token=True, final_norm=True,
                   device='meta')
    return LIT(arch, out_indices=(3,), out_type='avg_featmap', final_norm=True, device='meta')


@pytest.mark.parametrize('variant,arch', [('lit_ti', 'ti'), ('lit_s', 's'), ('lit_m', 'm'), ('lit_b', 'b')])
def test_full_size_keys_and_params_match_official(fixtures_dir, variant, arch):
    """Converted official keys = our keys (minus the head and the recomputed relative_position_index buffers),
    same shapes, same parameter count. Built on the meta device: costs nothing."""
    with open(osp.join(fixtures_dir, 'manifests', 'lit.json')) as f:
        man = json.load(f)[variant]
    model = _classifier_backbone(arch)
    official = {k: torch.empty(s, device='meta') for k, s in man['keys'].items() if not k.startswith('head.')}
    converted, dropped = convert_lit_state_dict(official, model)
    assert set(dropped) == {k for k in official if k.endswith('relative_position_index')}
    ours = model.state_dict()
    assert set(converted) == set(ours)
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(ours[k].shape), k
    head = sum(torch.Size(s).numel() for k, s in man['keys'].items() if k.startswith('head.'))
    assert sum(p.numel() for p in model.parameters()) + head == man['num_params']


@pytest.mark.parametrize('name', sorted(set(LIT.arch_zoo)))
def test_every_arch_alias_builds(name):
    model = LIT(name, device='meta')
    assert model.embed_dims == LIT.arch_zoo[name]['embed_dims']
    assert model.out_channels == model.embed_dims and model.out_strides == (4, 8, 16, 32)


# ---------------------------------------------------------------------------------------------- DTM
def _bilinear_reference(x, offset, weight, bias):
    """DCNv1 2x2/stride-2 written out point by point: taps row-major, offsets (dy, dx) per tap, bilinear
    sampling with every out-of-map corner read as 0."""
    B, C, H, W = x.shape
    Ho, Wo = H // 2, W // 2

    def pixel(b, y, xx):
        return x[b, :, y, xx] if 0 <= y < H and 0 <= xx < W else torch.zeros(C, dtype=x.dtype)

    out = torch.zeros(B, weight.shape[0], Ho, Wo, dtype=x.dtype)
    for b in range(B):
        for oy in range(Ho):
            for ox in range(Wo):
                acc = bias.clone()
                for t, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                    py = 2 * oy + i + float(offset[b, 2 * t, oy, ox])
                    px = 2 * ox + j + float(offset[b, 2 * t + 1, oy, ox])
                    y0, x0 = int(torch.floor(torch.tensor(py))), int(torch.floor(torch.tensor(px)))
                    ly, lx = py - y0, px - x0
                    v = ((1 - ly) * (1 - lx) * pixel(b, y0, x0) + (1 - ly) * lx * pixel(b, y0, x0 + 1)
                         + ly * (1 - lx) * pixel(b, y0 + 1, x0) + ly * lx * pixel(b, y0 + 1, x0 + 1))
                    acc = acc + weight[:, :, i, j] @ v
                out[b, :, oy, ox] = acc
    return out


def test_deform_conv_matches_pointwise_bilinear_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 8, generator=g, dtype=torch.float64)
    offset = torch.randn(2, 8, 3, 4, generator=g, dtype=torch.float64) * 2.5  # many samples leave the map
    offset[0, :, 0, 0] = torch.tensor([-1.5, 0.3, 0.0, -2.0, 1.0, 6.0, 5.2, 7.9], dtype=torch.float64)
    weight = torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    expected = _bilinear_reference(x, offset, weight, bias)
    ours = deform_conv2x2_gather(x.permute(0, 2, 3, 1), offset.permute(0, 2, 3, 1), weight, bias)
    torch.testing.assert_close(ours.permute(0, 3, 1, 2), expected, atol=1e-12, rtol=1e-12)
    from torchvision.ops import deform_conv2d
    torch.testing.assert_close(deform_conv2d(x, offset, weight, bias, stride=2), expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize('impl', ['gather', 'torchvision'])
def test_dtm_with_zero_offsets_is_a_strided_conv(impl):
    dtm = DeformableTokenMerging(6, 10, impl=impl).eval()
    _randomise(dtm)
    torch.nn.init.zeros_(dtm.dconv.conv_offset.weight)
    torch.nn.init.zeros_(dtm.dconv.conv_offset.bias)
    x = torch.randn(2, 6, 8, 12)
    y, hw = dtm(x.flatten(2).transpose(1, 2), (8, 12))
    ref = F.gelu(dtm.norm_layer(F.conv2d(x, dtm.dconv.weight, dtm.dconv.bias, stride=2)))
    assert hw == (4, 6)
    torch.testing.assert_close(y, ref.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-4)


def test_dtm_starts_as_a_strided_conv():
    dtm = DeformableTokenMerging(4, 8)
    assert not dtm.dconv.conv_offset.weight.any() and not dtm.dconv.conv_offset.bias.any()


@pytest.mark.parametrize('train', [False, True])
def test_dtm_implementations_agree_and_gradients_reach_offsets(train):
    """gather and torchvision agree in values and in every gradient; the offset conv gets a gradient."""
    dtm = _randomise(DeformableTokenMerging(5, 7)).train(train)
    x = torch.randn(3, 10 * 14, 5)
    results = {}
    for impl in ('gather', 'torchvision'):
        dtm.dconv.impl = impl
        dtm.zero_grad()
        xi = x.clone().requires_grad_()
        y, _ = dtm(xi, (10, 14))
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results[impl] = [y.detach(), xi.grad] + [p.grad.clone() for p in dtm.parameters()]
    for a, b in zip(*results.values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert dtm.dconv.conv_offset.weight.grad.abs().sum() > 0 and dtm.dconv.conv_offset.bias.grad.abs().sum() > 0


def test_deform_conv_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    # Offsets away from integers: bilinear sampling is not differentiable at grid lines.
    offset = (torch.rand(1, 2, 2, 8, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    weight = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(deform_conv2x2_gather, (x, offset, weight, bias))


def test_dtm_odd_sizes_pad_and_run_in_float32_under_autocast():
    dtm = DeformableTokenMerging(4, 6).eval()
    y, hw = dtm(torch.randn(2, 7 * 5, 4), (7, 5))
    assert hw == (4, 3) and y.shape == (2, 12, 6)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y, _ = dtm(torch.randn(2, 16, 4, dtype=torch.bfloat16), (4, 4))
    assert y.dtype == torch.float32
    assert dtm(torch.randn(0, 16, 4), (4, 4))[0].shape == (0, 4, 6)
    with pytest.raises(ValueError, match='do not fill a 4x5 grid'):
        dtm(torch.randn(1, 16, 4), (4, 5))
    with pytest.raises(ValueError, match='impl must be one of'):
        DeformableTokenMerging(4, 6, impl='mmcv')


# ---------------------------------------------------------------------------------------------- attention
def test_relative_position_bias_is_swin_index():
    H, W, heads = 3, 5, 2
    table = torch.randn((2 * H - 1) * (2 * W - 1), heads)
    coords = torch.stack(torch.meshgrid(torch.arange(H), torch.arange(W), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    index = (rel[..., 0] + H - 1) * (2 * W - 1) + rel[..., 1] + W - 1
    expected = table[index.view(-1)].view(H * W, H * W, heads).permute(2, 0, 1)
    assert torch.equal(relative_position_bias(table, (H, W)), expected)


@pytest.mark.parametrize('arch', [REL, ABS], ids=['relative', 'absolute'])
@pytest.mark.parametrize('hw', [(64, 64), (50, 77)])
def test_fused_and_eager_attention_agree(arch, hw):
    model = _randomise(LIT(arch, img_size=64, with_cls_token=arch is ABS)).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():
            if hasattr(m, 'fused_attn'):
                m.fused_attn = False
        eager = model(x)
    for a, b in zip(fused, eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('arch', [REL, ABS], ids=['relative', 'absolute'])
def test_fused_linear_inference_equals_plain_path(arch):
    """CPU inference fuses GELU and the residual adds into oneDNN GEMMs: same outputs as the plain path, which
    training and autograd always take."""
    from mmevit.models.layers import fused_linear
    model = _randomise(LIT(arch, img_size=64, with_cls_token=arch is ABS)).eval()
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        assert fused_linear.fusable(x)
        fused = model(x)
        for m in model.modules():
            if hasattr(m, 'fused_linear'):
                m.fused_linear = False
        plain = model(x)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not fused_linear.fusable(x.requires_grad_())  # autograd: plain path


def test_fused_linear_helper():
    from mmevit.models.layers.fused_linear import linear
    fc = torch.nn.Linear(6, 10)
    x, r = torch.randn(2, 5, 6), torch.randn(2, 5, 10)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, fc, 'gelu'), F.gelu(fc(x)))
        torch.testing.assert_close(linear(x, fc, residual=r), r + fc(x))
        torch.testing.assert_close(linear(x.double(), fc.double()), fc(x.double()))  # float64: plain path
    with pytest.raises(ValueError, match='act must be one of'):
        linear(x, fc.float(), 'relu')
    with pytest.raises(ValueError, match='not both'):
        linear(x, fc.float(), 'gelu', residual=r)


# ---------------------------------------------------------------------------------------------- dense contract
@pytest.mark.parametrize('arch', [REL, ABS], ids=['relative', 'absolute'])
@pytest.mark.parametrize('hw', [(64, 64), (48, 80), (50, 77), (17, 33), (3, 5)])
def test_featmaps_any_size(arch, hw):
    model = LIT(arch, img_size=64).eval()
    outs = model(torch.randn(2, 3, *hw))
    assert len(outs) == 4
    for o, c, s in zip(outs, model.out_channels, model.out_strides):
        expected = [-(-hw[0] // s), -(-hw[1] // s)]
        assert list(o.shape) == [2, c] + expected, (o.shape, s)
        assert o.is_contiguous() and torch.isfinite(o).all()
    assert model.out_strides == (4, 8, 16, 32) and model.out_channels == (8, 16, 24, 32)


@pytest.mark.parametrize('out_indices', [(1, 2, 3), (0,), (-1,), (0, 2)])
def test_out_indices_and_declared_channels(out_indices):
    model = LIT(REL, img_size=64, out_indices=out_indices).eval()
    outs = model(torch.randn(1, 3, 64, 96))
    assert len(outs) == len(out_indices)
    assert tuple(o.shape[1] for o in outs) == model.out_channels
    assert tuple(96 // o.shape[3] for o in outs) == model.out_strides


def test_output_norms_apply_to_outputs_only():
    torch.manual_seed(0)
    plain = _randomise(LIT(REL, img_size=64)).eval()
    normed = LIT(REL, img_size=64, out_norm_indices=(1, 2, 3)).eval()
    for i in (1, 2, 3):
        norm = getattr(normed, f'norm{i}')
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    assert not hasattr(normed, 'norm0')
    result = normed.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(result.missing_keys) == sorted(f'norm{i}.{p}' for i in (1, 2, 3) for p in ('weight', 'bias'))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = plain(x), normed(x)
    torch.testing.assert_close(b[0], a[0])
    for i in (1, 2, 3):
        expected = getattr(normed, f'norm{i}')(a[i].flatten(2).transpose(1, 2)).transpose(1, 2).reshape(a[i].shape)
        torch.testing.assert_close(b[i], expected)


def test_classification_outputs():
    x = torch.randn(2, 3, 64, 64)
    assert LIT(REL, img_size=64, out_indices=3, out_type='avg_featmap', final_norm=True)(x)[0].shape == (2, 32)
    ti = LIT(ABS, img_size=64, out_indices=3, out_type='cls_token', with_cls_token=True, final_norm=True)
    assert ti(x)[0].shape == (2, 32)
    raw = LIT(ABS, img_size=64, out_type='raw', with_cls_token=True)(x)
    assert [tuple(o.shape) for o in raw] == [(2, 256, 8), (2, 64, 16), (2, 16, 24), (2, 5, 32)]


def test_frozen_stages_and_norm_eval():
    model = LIT(ABS, img_size=64, frozen_stages=2, out_norm_indices=(0, 1), with_cls_token=True)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    for i, stage in enumerate(model.layers):
        assert all(p.requires_grad == (i >= 2) for p in stage.parameters()), i
        assert all(m.training == (i >= 2) for m in stage.modules()), i
    assert not model.norm0.weight.requires_grad and not model.norm1.weight.requires_grad
    assert model.cls_token.requires_grad
    full = LIT(ABS, img_size=64, frozen_stages=4, with_cls_token=True, final_norm=True).train()
    assert not any(p.requires_grad for p in full.parameters())
    bn = LIT(REL, img_size=64, norm_eval=True).train()
    assert all(not m.training for m in bn.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.layers[2].blocks[0].training


def test_backward_reaches_every_parameter():
    model = LIT(ABS, img_size=64, with_cls_token=True, out_norm_indices=(0, 3), drop_path_rate=0.2)
    outs = model.train()(torch.randn(2, 3, 40, 56))
    sum(o.pow(2).mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f'no gradient for {no_grad}'
    assert model.layers[0].downsample.dconv.conv_offset.weight.grad.abs().sum() > 0


def test_bf16_autocast_forward():
    model = LIT(REL, img_size=64).eval()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 64, 48))
    assert all(torch.isfinite(o.float()).all() for o in outs)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_relative_tables_and_pos_embeds_resized_on_load_and_at_run_time():
    src = _randomise(LIT(REL, img_size=64))
    dst = LIT(REL, img_size=96)
    dst.load_state_dict(src.state_dict())
    assert dst.layers[2].blocks[0].attn.relative_position_bias_table.shape == (11 * 11, 3)
    assert dst.eval()(torch.randn(1, 3, 40, 72))[3].shape == (1, 32, 2, 3)
    # The same table on the same grid is used as is: at 64x64 input both models see the 4x4 stage-3 grid.
    a = src.layers[2].blocks[0].attn
    torch.testing.assert_close(a.bias((4, 4)), relative_position_bias(a.relative_position_bias_table, (4, 4)))
    ti_src, ti_dst = LIT(ABS, img_size=64, with_cls_token=True), LIT(ABS, img_size=128)
    state, dropped = ti_dst.convert_state_dict(ti_src.state_dict())
    assert dropped == ['cls_token']
    assert state['layers.3.pos_embed'].shape == (1, 1 + 4 * 4, 32)
    torch.testing.assert_close(state['layers.3.pos_embed'][:, :1], ti_src.layers[3].pos_embed[:, :1])
    ti_dst.load_state_dict(state)


def _official_ti_state(model: LIT) -> dict:
    """Our LIT-Ti keys back in the official layout (inverse of convert_official_lit_ti)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith('patch_embed.'):
            k = 'patch_embed1.' + k[len('patch_embed.'):]
        elif k.startswith('layers.'):
            _, i, rest = k.split('.', 2)
            i = int(i)
            if rest == 'pos_embed':
                k = f'pos_embed{i + 1}'
            elif rest.startswith('blocks.'):
                k = f'block{i + 1}.' + rest[len('blocks.'):]
            else:
                k = f'patch_embed{i + 2}.' + rest[len('downsample.'):]
        out[k] = v
    return out


def test_official_ti_layout_round_trip_and_formats():
    model = _randomise(LIT(ABS, img_size=64, with_cls_token=True, final_norm=True, out_indices=3,
                           out_type='cls_token'))
    official = _official_ti_state(model)
    assert detect_format(official) == 'lit_ti' and detect_format(model.state_dict()) == 'lit'
    assert convert_official_lit_ti(official).keys() == model.state_dict().keys()
    state, dropped = model.convert_state_dict(official)
    assert not dropped
    model.load_state_dict(state, strict=True)
    own = model.state_dict()
    same, dropped = model.convert_state_dict(own)  # mmevit format: identity
    assert not dropped and same.keys() == own.keys() and all(same[k] is v for k, v in own.items())
    with pytest.raises(KeyError, match='unrecognised LIT checkpoint'):
        model.convert_state_dict({'foo.weight': torch.zeros(1)})


def test_init_cfg_loads_official_classification_checkpoint(tmp_path):
    """lit_ti.pth-style ({'model': ..., official keys, head}) into a dense LIT-Ti: cls token, final norm and
    head are left out, weights land, and a checkpoint for another image size is resized."""
    cls_model = _randomise(LIT(ABS, img_size=64, with_cls_token=True, final_norm=True, out_indices=3,
                               out_type='cls_token'))
    official = _official_ti_state(cls_model)
    official.update({'head.weight': torch.randn(10, 32), 'head.bias': torch.randn(10)})
    path = tmp_path / 'lit_ti.pth'
    torch.save({'model': official, 'epoch': 300}, path)
    dense = LIT(ABS, img_size=96, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dense.init_weights()
    torch.testing.assert_close(dense.layers[1].downsample.dconv.conv_offset.weight,
                               official['patch_embed3.dconv.conv_offset.weight'])
    torch.testing.assert_close(dense.layers[2].blocks[1].attn.qkv.weight, official['block3.1.attn.qkv.weight'])
    assert dense.layers[0].pos_embed.shape == (1, 24 * 24, 8)


def test_init_cfg_loads_official_dense_checkpoint(tmp_path):
    """retina_lit_s-style whole-detector checkpoint (backbone.* with norm1..3, no relative_position_index,
    tables for another input size) loads through the generic prefix path."""
    det = _randomise(LIT(REL, img_size=128, out_indices=(1, 2, 3), out_norm_indices=(1, 2, 3)))
    sd = {'backbone.' + k: v for k, v in det.state_dict().items()}
    sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'retina_lit_s.pth'
    torch.save({'state_dict': sd, 'meta': {}}, path)
    model = LIT(REL, img_size=64, out_indices=(1, 2, 3), out_norm_indices=(1, 2, 3),
                init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.norm2.weight, det.norm2.weight)
    torch.testing.assert_close(model.layers[0].downsample.norm_layer.running_var,
                               det.layers[0].downsample.norm_layer.running_var)
    assert model.layers[3].blocks[0].attn.relative_position_bias_table.shape == (3 * 3, 4)
    # A segmentation model (norm0..3) takes the detection norms it has and reports norm0 missing.
    from mmevit.engine.convert import CheckpointMismatchError, check_state_dict, convert_for_model
    seg = LIT(REL, img_size=128, out_norm_indices=(0, 1, 2, 3))
    state, _ = convert_for_model({'state_dict': sd}, seg)
    with pytest.raises(CheckpointMismatchError, match='norm0.weight'):
        check_state_dict({k: v for k, v in state.items() if k.startswith(('layers', 'patch', 'norm'))}, seg)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize('kwargs, err, match', [
    (dict(arch='huge'), ValueError, 'not in default archs'),
    (dict(arch=dict(embed_dims=[8])), ValueError, 'custom arch needs'),
    (dict(arch=dict(REL, depth=[1])), ValueError, 'unknown arch keys'),
    (dict(arch=dict(REL, depths=[1, 1, 2])), ValueError, 'one entry per stage'),
    (dict(arch=dict(REL, num_heads=[1, 2, 5, 4])), ValueError, 'not divisible by num_heads'),
    (dict(arch=dict(REL, position='learned')), ValueError, "arch\\['position'\\]"),
    (dict(arch=dict(REL, embed_dims=8)), TypeError, 'non-empty list'),
    (dict(arch=dict(REL, mlp_ratios=[2, 0, 2, 2])), ValueError, 'mlp_ratios'),
    (dict(out_indices=(4,)), ValueError, 'out of range'),
    (dict(out_indices=(2, 1)), ValueError, 'increasing'),
    (dict(out_norm_indices=(0,), out_indices=(1, 2)), ValueError, 'subset of out_indices'),
    (dict(out_type='tokens'), ValueError, 'out_type'),
    (dict(out_type='cls_token', out_indices=3), ValueError, 'with_cls_token'),
    (dict(with_cls_token=True), ValueError, "position='absolute'"),
    (dict(final_norm=True, out_indices=(1, 2)), ValueError, 'include 3 in out_indices'),
    (dict(final_norm=True, out_norm_indices=(3,)), ValueError, 'twice'),
    (dict(frozen_stages=5), ValueError, 'frozen_stages'),
    (dict(dtm_impl='cuda'), ValueError, 'dtm_impl'),
    (dict(pos_interpolate_mode='area'), ValueError, 'pos_interpolate_mode'),
    (dict(patch_size=0), ValueError, 'patch_size must be >= 1'),
    (dict(img_size=(64, 64, 3)), ValueError, 'img_size'),
    # the SkipAt-ViT list, for LIT
    (dict(out_indices=2.0), TypeError, 'out_indices'),
    (dict(out_indices='2'), TypeError, 'out_indices'),
    (dict(out_indices=(3, 3)), ValueError, 'out_indices must be unique'),
    (dict(out_indices=()), ValueError, 'out_indices must not be empty'),
    (dict(out_norm_indices='1'), TypeError, 'out_norm_indices'),
    (dict(arch=dict(REL, num_heads=[1, 2, 0, 4])), ValueError, r"arch\['num_heads'\] entry must be >= 1"),
    (dict(arch=dict(REL, embed_dims=['8', 16, 24, 32])), TypeError, r"arch\['embed_dims'\] entry must be an int"),
    (dict(arch=dict(REL, embed_dims=[-8, 16, 24, 32])), ValueError, 'embed_dims'),
    (dict(arch=dict(REL, depths=[1, 0, 2, 1])), ValueError, r"arch\['depths'\] entry must be >= 1"),
    (dict(arch=dict(REL, mlp_ratios=['2', 2, 2, 2])), TypeError, 'mlp_ratios'),
    (dict(arch=dict(REL, mlp_ratios=[0.01, 2, 2, 2])), ValueError, 'mlp_ratios.*hidden width'),
    (dict(arch=dict(REL, has_msa='0011')), ValueError, 'has_msa'),  # a str would make every stage MSA
    (dict(arch=dict(REL, has_msa=[0, 0, 'yes', 1])), TypeError, 'has_msa'),
    (dict(arch=dict(REL, norm_eps=0)), ValueError, 'norm_eps'),
    (dict(patch_size=4.0), TypeError, 'patch_size must be an int'),
    (dict(patch_size='4'), TypeError, 'patch_size must be an int'),
    (dict(img_size=2), ValueError, r'img_size must be .* >= patch_size \(4\)'),
    (dict(img_size=64.0), TypeError, 'img_size must be an int or a pair'),
    (dict(img_size='64'), TypeError, 'img_size must be an int or a pair'),
    (dict(img_size=None), TypeError, 'img_size'),
    (dict(in_channels=0), ValueError, 'in_channels must be >= 1'),
    (dict(in_channels=3.0), TypeError, 'in_channels must be an int'),
    (dict(frozen_stages=1.5), ValueError, 'frozen_stages'),
    (dict(frozen_stages=-2), ValueError, 'frozen_stages'),
    (dict(drop_rate=-0.1), ValueError, 'drop_rate'),
    (dict(attn_drop_rate=1.5), ValueError, 'attn_drop_rate'),
    (dict(drop_path_rate=1.0), ValueError, 'drop_path_rate'),
    (dict(drop_path_rate='0.1'), TypeError, 'drop_path_rate must be a number'),
    (dict(final_norm='False'), TypeError, 'final_norm must be True or False'),
    (dict(qkv_bias='no'), TypeError, 'qkv_bias'),
    (dict(dtm_impl=None), ValueError, 'dtm_impl'),
    (dict(bias_interpolate_mode='area'), ValueError, 'bias_interpolate_mode'),
])
def test_bad_arguments_are_named(kwargs, err, match):
    kwargs = dict(kwargs)
    arch = kwargs.pop('arch', REL)
    kwargs.setdefault('img_size', 64)
    with pytest.raises(err, match=match):
        LIT(arch, **kwargs)


@pytest.mark.parametrize('arch', [REL, ABS], ids=['relative', 'absolute'])
def test_bad_inputs_are_named(arch):
    model = LIT(arch, img_size=32).eval()
    assert_bad_batches_refused(model)
    # An empty batch works; sides that are not multiples of the stride are padded (ceil(side / stride)), down
    # to 1x1.
    assert [tuple(o.shape) for o in model(torch.zeros(0, 3, 32, 32))] == \
        [(0, 8, 8, 8), (0, 16, 4, 4), (0, 24, 2, 2), (0, 32, 1, 1)]
    assert [tuple(o.shape) for o in model(torch.zeros(1, 3, 1, 1))] == \
        [(1, 8, 1, 1), (1, 16, 1, 1), (1, 24, 1, 1), (1, 32, 1, 1)]
    assert [tuple(o.shape) for o in model(torch.zeros(1, 3, 17, 33))] == \
        [(1, 8, 5, 9), (1, 16, 3, 5), (1, 24, 2, 3), (1, 32, 1, 2)]


# ---------------------------------------------------------------------------------------------- configs
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LIT_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', 'lit_*.py')))
RELEASE = 'https://github.com/ziplab/LIT/releases/download/v1.0/'
DIMS = {'ti': (64, 128, 320, 512), 's': (96, 192, 384, 768), 'm': (96, 192, 384, 768), 'b': (128, 256, 512, 1024)}


def _config(path: str):
    from mmengine.config import Config
    return Config.fromfile(path)


def _build(cfg, device: str = 'meta'):
    import copy
    from mmengine.registry import DefaultScope
    import importlib
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device(device):
        return registry.build(model_cfg)


def test_config_set():
    names = sorted(osp.relpath(p, osp.join(REPO, 'configs')) for p in LIT_CONFIGS)
    assert names == sorted(['imagenet/lit_ti.py', 'imagenet/lit_s.py', 'imagenet/lit_m.py', 'imagenet/lit_b.py',
                            'ade20k/lit_ti_fpn.py', 'ade20k/lit_s_fpn.py',
                            'coco/lit_ti_retinanet_1x.py', 'coco/lit_s_retinanet_1x.py',
                            'coco/lit_ti_mask-rcnn_1x.py', 'coco/lit_s_mask-rcnn_1x.py'])


@pytest.mark.parametrize('path', LIT_CONFIGS, ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs')))
def test_config_builds_in_its_toolbox(path):
    """Every config builds (meta device) in the toolbox of its folder; the recipe line is in the header; the
    backbone's declared outputs are what the neck/head take; the DTM offsets learn at 0.01x the lr."""
    cfg = _config(path)
    folder, name = osp.basename(osp.dirname(path)), osp.basename(path)
    scope = dict(imagenet='mmpretrain', ade20k='mmseg', coco='mmdet')[folder]
    assert cfg.default_scope == scope
    assert cfg.custom_imports == dict(imports=['mmevit'], allow_failed_imports=False)
    with open(path) as f:
        assert '# Recipe: 8 GPUs x ' in f.read()
    arch = name.split('_')[1].removesuffix('.py')
    assert cfg.auto_scale_lr.enable is False
    custom = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert custom['.conv_offset'] == dict(lr_mult=0.01)
    model = _build(cfg)
    backbone = model.backbone
    assert isinstance(backbone, LIT) and backbone.embed_dims == DIMS[arch]
    if folder == 'imagenet':
        assert cfg.auto_scale_lr.base_batch_size == 1024 == 8 * cfg.train_dataloader.batch_size
        assert cfg.train_cfg.max_epochs == 300 and cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert backbone.out_indices == (3,) and backbone.norm is not None
        assert backbone.out_type == ('cls_token' if arch == 'ti' else 'avg_featmap')
        assert model.head.fc.in_features == DIMS[arch][-1]
        assert cfg.model.backbone.drop_path_rate == dict(ti=0.1, s=0.2, m=0.3, b=0.5)[arch]
        return
    assert cfg.auto_scale_lr.base_batch_size == 16 == 8 * cfg.train_dataloader.batch_size
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert backbone.init_cfg is None and cfg.model.backbone.init_cfg.checkpoint == RELEASE + f'lit_{arch}.pth'
    assert backbone.out_strides == tuple(4 * 2 ** i for i in backbone.out_indices)
    assert list(backbone.out_channels) == list(model.neck.in_channels)
    if folder == 'ade20k':
        assert cfg.train_cfg.max_iters == cfg.param_scheduler[0].end == 80000
        assert cfg.optim_wrapper.optimizer.lr == 1e-4
        assert backbone.out_norm_indices == ((0, 1, 2, 3) if arch == 's' else ())
        assert backbone.img_size == ((512, 512) if arch == 's' else (224, 224))
        return
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.optim_wrapper.optimizer.lr == (2e-4 if 'mask-rcnn' in name else 1e-4)
    assert backbone.out_norm_indices == ((1, 2, 3) if arch == 's' else ())
    assert backbone.img_size == ((800, 800) if arch == 's' else (224, 224))
    feats = model.neck(backbone(torch.empty(1, 3, 800, 1344, device='meta')))
    strides = [8, 16, 32, 64, 128] if 'retinanet' in name else [4, 8, 16, 32, 64]
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-800 // s), -(-1344 // s)) for s in strides]


@pytest.mark.parametrize('path', [p for p in LIT_CONFIGS if '/imagenet/' not in p],
                         ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs')))
def test_dense_config_takes_official_classification_weights(fixtures_dir, path):
    """lit_ti.pth / lit_s.pth (keys and shapes from the manifest, on the meta device) fit the config's backbone:
    every backbone weight comes from them (tables resized to the config's input size); only the output norms of
    the dense LIT-S are new, and the cls token / final norm are left out."""
    from mmevit.engine.convert import check_state_dict
    cfg = _config(path)
    backbone = _build(cfg).backbone
    arch = osp.basename(path).split('_')[1]
    with open(osp.join(fixtures_dir, 'manifests', 'lit.json')) as f:
        keys = json.load(f)[f'lit_{arch}']['keys']
    official = {k: torch.empty(s, device='meta') for k, s in keys.items() if not k.startswith('head.')}
    state, dropped = backbone.convert_state_dict(official)
    assert {'cls_token', 'norm.weight'} & set(dropped) == ({'cls_token', 'norm.weight'} & set(official))
    missing = {f'norm{i}.{p}' for i in backbone.out_norm_indices for p in ('weight', 'bias')}
    check_state_dict({**state, **{k: v for k, v in backbone.state_dict().items() if k in missing}}, backbone)
    assert not missing & set(state)


@pytest.mark.parametrize('arch', ['ti', 's', 'm', 'b'])
def test_official_classification_checkpoint_converts_strictly_to_imagenet_config(fixtures_dir, arch):
    """lit_<arch>.pth as tools/test.py and the metafile's convert command see it (official keys and shapes from
    the manifest, with the head; meta device): every key of the config's classifier is covered, and only the
    relative_position_index buffers are dropped."""
    from mmevit.engine.convert import check_state_dict, convert_for_model
    model = _build(_config(osp.join(REPO, 'configs', 'imagenet', f'lit_{arch}.py')))
    with open(osp.join(fixtures_dir, 'manifests', 'lit.json')) as f:
        keys = json.load(f)[f'lit_{arch}']['keys']
    state, dropped = convert_for_model({'model': {k: torch.empty(s, device='meta') for k, s in keys.items()}},
                                       model)
    check_state_dict(state, model)
    assert set(dropped) == {k for k in keys if k.endswith('relative_position_index')}
    assert state['head.fc.weight'].shape == (1000, DIMS[arch][-1])


def test_offset_conv_learns_at_a_hundredth_of_the_lr():
    import copy
    from mmengine.optim import build_optim_wrapper
    cfg = _config(osp.join(REPO, 'configs', 'imagenet', 'lit_ti.py'))
    cfg.model.backbone.arch = ABS
    cfg.model.head.in_channels = 32
    model = _build(cfg, 'cpu')
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(p)]: g for g in wrapper.optimizer.param_groups for p in g['params']}
    lr = cfg.optim_wrapper.optimizer.lr
    assert groups['backbone.layers.0.downsample.dconv.conv_offset.weight']['lr'] == pytest.approx(lr * 0.01)
    assert groups['backbone.layers.0.downsample.dconv.conv_offset.bias']['weight_decay'] == 0
    assert groups['backbone.layers.0.downsample.dconv.weight']['lr'] == lr
    assert groups['backbone.layers.0.pos_embed']['weight_decay'] == 0
    assert groups['backbone.layers.2.blocks.0.attn.qkv.weight']['weight_decay'] == 0.05


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.e2e
@pytest.mark.parametrize('detector', ['retinanet', 'mask-rcnn'])
def test_lit_ti_detector_trains_and_tests_on_demo_coco(tmp_path, detector):
    """tools/train.py trains the LIT-Ti RetinaNet / Mask R-CNN config two iterations on the COCO demo set;
    tools/test.py evaluates the checkpoint and reports COCO bbox (and segm) mAP. Both tools run in-process (no
    second interpreter start-up)."""
    import math
    import re
    from mmevit.datasets import make_demo_data
    data_root = str(tmp_path / 'coco')
    make_demo_data('coco', data_root, num_train=4, num_val=2, seed=0)
    log, metrics = train_and_test(coco_demo_config(f'lit_ti_{detector}_1x', data_root, detector), tmp_path,
                                  f'lit_ti_{detector}_demo', 'epoch_1.pth')
    losses = [float(v) for v in re.findall(r'Epoch\(train\) \[1\]\[\d/2\].*?\bloss: ([0-9.]+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), log[-2000:]
    keys = ('loss_cls', 'loss_bbox') if detector == 'retinanet' else ('loss_rpn_cls', 'loss_cls', 'loss_mask')
    assert all(k + ':' in log for k in keys), log[-2000:]
    keys = ('coco/bbox_mAP', 'coco/bbox_mAP_50') + (('coco/segm_mAP',) if detector == 'mask-rcnn' else ())
    for key in keys:
        assert 0.0 <= metrics[key] <= 1.0, metrics


@pytest.mark.e2e
def test_lit_ti_semantic_fpn_trains_and_tests_on_demo_ade20k(tmp_path):
    """tools/train.py trains the LIT-Ti Semantic FPN config two iterations on the ADE20K demo set; tools/test.py
    reports mIoU for the checkpoint."""
    from mmevit.datasets import make_demo_data
    data_root = str(tmp_path / 'ade')
    make_demo_data('ade20k', data_root, num_train=4, num_val=2, seed=0)
    log, metrics = train_and_test(ade_demo_config('lit_ti_fpn', data_root, 'fpn'), tmp_path, 'lit_ti_fpn_demo',
                                  'iter_2.pth')
    assert 'decode.loss_ce:' in log
    assert 0.0 <= metrics['mIoU'] <= 100.0, metrics


def test_flop_counter_sees_the_plain_ops():
    """torch.utils.flop_counter (tools/analysis/benchmark.py --flops) cannot see oneDNN's fused kernel: under a
    dispatch mode the model takes the plain path, so the fused model counts the same MACs as the unfused one."""
    from mmevit.analysis import count_gmacs
    model = LIT(REL, img_size=64, out_indices=3, out_type='avg_featmap', final_norm=True).eval()
    x = torch.randn(1, 3, 64, 64)
    fused = count_gmacs(model, x)
    for m in model.modules():
        if hasattr(m, 'fused_linear'):
            m.fused_linear = False
    assert fused == count_gmacs(model, x) > 0
