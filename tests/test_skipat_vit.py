"""SkipAt-ViT: parity with the official code, variants, dense-prediction contract, checkpoints, errors."""
import copy
import glob
import json
import os.path as osp

import pytest
import torch
from input_cases import assert_bad_batches_refused

import mmevit
from mmevit.models.backbones.skipat_vit import (SkipAtBlock, SkipAtViT, ViTBlock, convert_official_skipat,
                                                detect_format)

TINY = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=64)


def tiny(arch=TINY, **kwargs) -> SkipAtViT:
    """A 6-block SkipAt-ViT skipping attention in blocks 2 and 3."""
    kwargs.setdefault('skip_indices', (2, 3))
    return SkipAtViT(arch, **kwargs)


def skipat_fixtures(fixtures_root: str):
    return sorted(glob.glob(osp.join(fixtures_root, 'skipat', '*.pt')))


def _fixture_paths():
    from conftest import FIXTURES
    return sorted(glob.glob(osp.join(FIXTURES, 'skipat', '*.pt'))) or ['<missing>']


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize('path', _fixture_paths(), ids=osp.basename)
def test_parity_with_official_fixture(path):
    assert osp.isfile(path), 'no SkipAt parity fixtures found in ../shared/fixtures/skipat'
    fx = torch.load(path, weights_only=False)
    model = mmevit.from_official('skipat_vit', fx['arch'], fx['state_dict'])
    assert not model.training
    blocks_out = []
    hooks = [blk.register_forward_hook(lambda m, i, o: blocks_out.append(o[0]))
             for blk in model.backbone.blocks]
    with torch.no_grad():
        logits = model(fx['input'])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(logits, fx['output'], atol=1e-4, rtol=1e-3)
    expected_blocks = fx['extra']['block_outputs']
    assert len(blocks_out) == len(expected_blocks)
    for i, (ours, theirs) in enumerate(zip(blocks_out, expected_blocks)):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-3, msg=lambda m: f'block {i}: {m}')


def test_from_official_rejects_unknown_and_unported():
    with pytest.raises(ValueError, match='unknown VisionTransformerSkipAt kwargs'):
        mmevit.from_official('skipat_vit', dict(embed_dim=36, bogus=1), {})
    with pytest.raises(ValueError, match='unknown model'):
        mmevit.from_official('resnet', {}, {})


def _official_state_dict(embed=24, depth=6, heads=2, skip=(2, 3), num_phi=6, classes=5, grid=4):
    """A random state dict in the official VisionTransformerSkipAt layout (always six param_k)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    sd = {'cls_token': r(1, 1, embed), 'pos_embed': r(1, grid * grid + 1, embed),
          'patch_embed.proj.weight': r(embed, 3, 16, 16), 'patch_embed.proj.bias': r(embed),
          'norm.weight': 1 + r(embed), 'norm.bias': r(embed), 'head.weight': r(classes, embed),
          'head.bias': r(classes)}
    for i in range(depth):
        p = f'blocks.{i}.'
        sd.update({p + 'norm1.weight': 1 + r(embed), p + 'norm1.bias': r(embed),
                   p + 'attn.qkv.weight': r(3 * embed, embed), p + 'attn.qkv.bias': r(3 * embed),
                   p + 'attn.proj.weight': r(embed, embed), p + 'attn.proj.bias': r(embed),
                   p + 'norm2.weight': 1 + r(embed), p + 'norm2.bias': r(embed),
                   p + 'mlp.fc1.weight': r(4 * embed, embed), p + 'mlp.fc1.bias': r(4 * embed),
                   p + 'mlp.fc2.weight': r(embed, 4 * embed), p + 'mlp.fc2.bias': r(embed)})
    for k in range(1, num_phi + 1):
        p = f'param_{k}.'
        sd.update({p + 'linear1.0.weight': r(2 * embed, embed), p + 'linear1.0.bias': r(2 * embed),
                   p + 'dwconv.0.weight': r(2 * embed, 1, 5, 5), p + 'dwconv.0.bias': r(2 * embed),
                   p + 'linear2.0.weight': r(embed, 2 * embed), p + 'linear2.0.bias': r(embed),
                   p + 'eca.conv.weight': r(1, 1, 3)})
    return sd


@pytest.mark.parametrize('skip', [(2, 3), (1, 4), (2, 3, 4, 5)])
def test_from_official_general_arch(skip):
    """Other depths, non-contiguous skip_indices and fewer than six skipped blocks load strictly."""
    sd = _official_state_dict(skip=skip)
    arch = dict(img_size=64, patch_size=16, num_classes=5, embed_dim=24, depth=6, num_heads=2, mlp_ratio=4.0,
                qkv_bias=True, skip_indices=list(skip))
    model = mmevit.from_official('skipat_vit', arch, sd)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5)
    assert model.backbone.skip_indices == tuple(skip)


# ---------------------------------------------------------------------------------------------- variants
def _manifest(fixtures_root):
    with open(osp.join(fixtures_root, 'manifests', 'skipat.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('variant,arch', [('skipat_tiny_patch16_224', 't'), ('skipat_small_patch16_224', 's'),
                                          ('skipat_base_patch16_224', 'b')])
def test_full_size_keys_and_params_match_official(fixtures_dir, variant, arch):
    """Same key set (after conversion) and parameter count as the official model, minus exactly the unused
    norm1/attn weights of the skipped blocks. Built on the meta device: costs nothing."""
    man = _manifest(fixtures_dir)[variant]
    model = SkipAtViT(arch, device='meta', out_type='cls_token')
    skip = model.skip_indices
    official_keys = dict(man['keys'])
    converted = convert_official_skipat({k: torch.empty(0) for k in official_keys}, skip)
    dropped = {k for k in official_keys
               if k.split('.')[0] == 'blocks' and int(k.split('.')[1]) in skip and k.split('.')[2] in ('norm1', 'attn')}
    assert len(converted) == len(official_keys) - len(dropped)
    assert {_official_name(k, skip) for k in converted} == set(official_keys) - dropped
    ours = model.state_dict()
    backbone_keys = {k for k in converted if not k.startswith('head.')}
    assert backbone_keys == set(ours)
    for k in backbone_keys:
        assert tuple(ours[k].shape) == tuple(official_keys[_official_name(k, skip)]), k
    head = sum(torch.Size(official_keys[k]).numel() for k in official_keys if k.startswith('head.'))
    dropped_params = sum(torch.Size(official_keys[k]).numel() for k in dropped)
    ours_params = sum(p.numel() for p in model.parameters())
    assert ours_params + head + dropped_params == man['num_params']


def _official_name(key: str, skip) -> str:
    """Our key -> the official key it came from."""
    if '.phi.' not in key:
        return key
    idx, rest = key[len('blocks.'):].split('.phi.', 1)
    module, param = rest.split('.', 1)
    official = {'fc1': 'linear1.0', 'dwconv': 'dwconv.0', 'fc2': 'linear2.0', 'eca': 'eca'}[module]
    return f'param_{skip.index(int(idx)) + 1}.{official}.{param}'


@pytest.mark.parametrize('name', sorted(set(SkipAtViT.arch_zoo)))
def test_every_arch_alias_builds(name):
    model = SkipAtViT(name, device='meta')
    assert model.embed_dims == SkipAtViT.arch_zoo[name]['embed_dims']
    assert sum(isinstance(b, SkipAtBlock) for b in model.blocks) == 6


def test_vit_baseline_is_same_class_without_skip():
    vit = SkipAtViT(TINY, skip_indices=())
    assert all(isinstance(b, ViTBlock) for b in vit.blocks)
    assert not any('.phi.' in k for k in vit.state_dict())


def test_custom_arch_and_errors():
    SkipAtViT(TINY, skip_indices=(1,))
    with pytest.raises(ValueError, match='not in default archs'):
        SkipAtViT('huge')
    with pytest.raises(ValueError, match='custom arch needs'):
        SkipAtViT(dict(embed_dims=32, num_layers=2))
    with pytest.raises(ValueError, match='divisible'):
        SkipAtViT(dict(TINY, num_heads=5))
    with pytest.raises(ValueError, match='block 0'):
        SkipAtViT(TINY, skip_indices=(0, 1))
    with pytest.raises(ValueError, match='increasing'):
        SkipAtViT(TINY, skip_indices=(3, 2))
    with pytest.raises(ValueError, match='do not fit 6 blocks'):
        SkipAtViT(TINY)
    with pytest.raises(ValueError, match='out of range'):
        SkipAtViT(TINY, skip_indices=(), out_indices=(6,))
    with pytest.raises(ValueError, match='phi_chain'):
        tiny(TINY, phi_chain='sideways')
    with pytest.raises(ValueError, match='out_type'):
        tiny(TINY, out_type='tokens')
    with pytest.raises(ValueError, match='with_cls_token'):
        tiny(TINY, with_cls_token=False, out_type='cls_token')
    with pytest.raises(ValueError, match='expected 3 input channels'):
        tiny(TINY)(torch.randn(1, 1, 32, 32))


# ---------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize('hw', [(64, 64), (48, 80), (50, 77), (17, 33)])
@pytest.mark.parametrize('out_indices', [(-1,), (1, 3, 5), (0, -2)])
def test_featmap_shapes_any_size(hw, out_indices):
    model = SkipAtViT(TINY, skip_indices=(2, 3), out_indices=out_indices, img_size=64).eval()
    outs = model(torch.randn(2, 3, *hw))
    gh, gw = -(-hw[0] // 16), -(-hw[1] // 16)
    assert len(outs) == len(out_indices)
    for o in outs:
        assert o.shape == (2, 32, gh, gw)
        assert torch.isfinite(o).all()


def test_out_types_and_cls_token():
    x = torch.randn(2, 3, 32, 48)
    assert tiny(TINY, out_type='raw')(x)[0].shape == (2, 1 + 2 * 3, 32)
    assert tiny(TINY, out_type='cls_token')(x)[0].shape == (2, 32)
    assert tiny(TINY, out_type='avg_featmap')(x)[0].shape == (2, 32)
    fmap, cls = tiny(TINY, output_cls_token=True)(x)[0]
    assert fmap.shape == (2, 32, 2, 3) and cls.shape == (2, 32)
    assert tiny(TINY, with_cls_token=False, out_type='raw')(x)[0].shape == (2, 6, 32)


def test_skip_attention_never_runs_in_skipped_blocks():
    model = SkipAtViT(TINY, skip_indices=(2, 3, 4)).eval()
    assert all(not hasattr(model.blocks[i], 'attn') for i in (2, 3, 4))
    calls = []
    for i, b in enumerate(model.blocks):
        if isinstance(b, ViTBlock):
            b.attn.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    model(torch.randn(1, 3, 32, 32))
    assert calls == [0, 1, 5]


def _phi_io(model, x):
    """Record each Phi's input and output."""
    io = {}
    hooks = [b.phi.register_forward_hook(lambda m, a, o, i=i: io.__setitem__(i, (a[0], o)))
             for i, b in enumerate(model.blocks) if isinstance(b, SkipAtBlock)]
    msa = {}
    hooks += [b.attn.register_forward_hook(lambda m, a, o, i=i: msa.__setitem__(i, o))
              for i, b in enumerate(model.blocks) if isinstance(b, ViTBlock)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return io, msa


def test_phi_chain_continue_is_official_semantics():
    """Non-contiguous skip: Phi_1 starts from block 1's MSA patch rows; the chain continues across the
    computed block 3, so block 4's Phi takes block 2's Phi output (official behaviour)."""
    model = SkipAtViT(TINY, skip_indices=(2, 4, 5), phi_chain='continue').eval()
    io, msa = _phi_io(model, torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(io[2][0], msa[1][:, 1:])
    torch.testing.assert_close(io[4][0], io[2][1])
    torch.testing.assert_close(io[5][0], io[4][1])


def test_phi_chain_restart_starts_from_latest_computed_block():
    model = SkipAtViT(TINY, skip_indices=(2, 4, 5), phi_chain='restart').eval()
    io, msa = _phi_io(model, torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(io[2][0], msa[1][:, 1:])
    torch.testing.assert_close(io[4][0], msa[3][:, 1:])
    torch.testing.assert_close(io[5][0], io[4][1])


def test_chain_modes_agree_on_contiguous_skip_and_many_skipped_blocks():
    torch.manual_seed(0)
    a = SkipAtViT(dict(TINY, num_layers=10), skip_indices=tuple(range(1, 10)), phi_chain='continue').eval()
    b = SkipAtViT(dict(TINY, num_layers=10), skip_indices=tuple(range(1, 10)), phi_chain='restart').eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 48, 32)
    torch.testing.assert_close(a(x)[0], b(x)[0])
    assert sum(isinstance(blk, SkipAtBlock) for blk in a.blocks) == 9  # no six-Phi limit


def test_cls_msa_is_reused_from_last_computed_block():
    model = SkipAtViT(TINY, skip_indices=(2, 4), out_type='raw').eval()
    seen = {}
    for i in (2, 4):
        model.blocks[i].register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[2]))
    io, msa = _phi_io(model, torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(seen[2], msa[1][:, :1])
    torch.testing.assert_close(seen[4], msa[3][:, :1])


def test_backward_reaches_every_parameter():
    model = SkipAtViT(TINY, skip_indices=(2, 3), out_indices=(1, 3, 5), drop_path_rate=0.1)
    outs = model(torch.randn(2, 3, 48, 64))
    sum(o.pow(2).mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f'no gradient for {no_grad}'


def test_fused_and_eager_attention_agree():
    model = SkipAtViT(TINY, skip_indices=(2,)).eval()
    x = torch.randn(2, 3, 48, 32)
    fused = model(x)[0]
    for b in model.blocks:
        if isinstance(b, ViTBlock):
            b.attn.fused_attn = False
    torch.testing.assert_close(model(x)[0], fused, atol=1e-5, rtol=1e-4)


def test_phi_matches_nchw_reference_on_non_square_grid():
    phi = SkipAtViT(TINY, skip_indices=(2,)).blocks[2].phi.eval()
    B, H, W, C = 2, 3, 5, 32
    x = torch.randn(B, H * W, C)
    h = torch.nn.functional.gelu(phi.fc1(x)).transpose(1, 2).reshape(B, -1, H, W).contiguous()
    h = torch.nn.functional.gelu(phi.dwconv(h)).flatten(2).transpose(1, 2)
    y = phi.fc2(h)
    gate = torch.sigmoid(phi.eca.conv(y.mean(1).unsqueeze(1)))
    torch.testing.assert_close(phi(x, (H, W)), y * gate)
    with pytest.raises(ValueError, match='3x4 grid'):
        phi(x, (3, 4))


def test_frozen_stages():
    model = SkipAtViT(TINY, skip_indices=(2,), frozen_stages=3)
    model.train()
    assert not model.pos_embed.requires_grad and not model.cls_token.requires_grad
    for i, blk in enumerate(model.blocks):
        assert all(p.requires_grad == (i >= 3) for p in blk.parameters()), i
        assert blk.training == (i >= 3)
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny(TINY, frozen_stages=7)


def test_layer_depth_for_layer_wise_decay():
    model = tiny(TINY)
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 8)
    assert model.get_layer_depth('backbone.blocks.3.mlp.fc1.weight', 'backbone.') == (4, 8)
    assert model.get_layer_depth('backbone.norm.weight', 'backbone.') == (7, 8)
    assert model.get_layer_depth('decode_head.conv_seg.weight', 'backbone.') == (7, 8)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_pos_embed_resized_on_load_and_at_run_time():
    src = tiny(TINY, img_size=64)      # 4x4 grid
    dst = tiny(TINY, img_size=96)      # 6x6 grid
    dst.load_state_dict(src.state_dict())
    assert dst.pos_embed.shape == (1, 37, 32)
    torch.testing.assert_close(dst.pos_embed[:, :1], src.pos_embed[:, :1])
    # A model run at its pre-training size uses pos_embed unchanged; at another size it resamples.
    assert dst.eval()(torch.randn(1, 3, 160, 48))[0].shape == (1, 32, 10, 3)


def test_init_cfg_pretrained_loads_official_checkpoint(tmp_path):
    sd = _official_state_dict(embed=32, depth=6, heads=2, skip=(2, 3), grid=4)
    path = tmp_path / 'skipat-official.t7'
    torch.save({'model': sd, 'epoch': 3}, path)
    arch = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=128)
    model = SkipAtViT(arch, skip_indices=(2, 3), img_size=64, final_norm=False,
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.blocks[2].phi.fc1.weight, sd['param_1.linear1.0.weight'])
    torch.testing.assert_close(model.blocks[3].phi.eca.conv.weight, sd['param_2.eca.conv.weight'])
    torch.testing.assert_close(model.blocks[4].attn.qkv.weight, sd['blocks.4.attn.qkv.weight'])
    # Loaded into a larger input size: pos_embed is resampled, not rejected.
    big = SkipAtViT(arch, skip_indices=(2, 3), img_size=128, init_cfg=dict(type='Pretrained',
                                                                            checkpoint=str(path)))
    big.init_weights()
    assert big.pos_embed.shape == (1, 65, 32)


def test_missing_checkpoint_file_is_named(tmp_path):
    model = tiny(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        model.init_weights()


def test_vit_checkpoints_initialise_skipat():
    """A timm/DeiT ViT checkpoint initialises SkipAt (Phi missing, skipped attention dropped); an
    mmpretrain/mmseg-format one is renamed."""
    vit = SkipAtViT(TINY, skip_indices=())
    timm_sd = dict(vit.state_dict(), **{'head.weight': torch.zeros(3, 32), 'dist_token': torch.zeros(1, 1, 32)})
    skipat = SkipAtViT(TINY, skip_indices=(2, 3))
    state, dropped = skipat.convert_state_dict(timm_sd)
    assert detect_format(timm_sd) == 'timm'
    # The classifier is not the backbone's: the generic path splits it off before; here it is left in.
    assert 'dist_token' in dropped and 'blocks.2.attn.qkv.weight' in dropped
    result = skipat.load_state_dict({k: v for k, v in state.items() if k != 'head.weight'}, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == {k for k in skipat.state_dict() if '.phi.' in k}

    mmpre = {}
    for k, v in vit.state_dict().items():
        k = (k.replace('blocks.', 'layers.').replace('norm1', 'ln1').replace('norm2', 'ln2')
             .replace('mlp.fc1', 'ffn.layers.0.0').replace('mlp.fc2', 'ffn.layers.1')
             .replace('patch_embed.proj', 'patch_embed.projection'))
        mmpre['backbone.' + ('ln1.' + k[5:] if k.startswith('norm.') else k)] = v
    assert detect_format({k[9:]: v for k, v in mmpre.items()}) == 'mmpretrain'
    state, dropped = vit.convert_state_dict({k[len('backbone.'):]: v for k, v in mmpre.items()})
    assert not dropped
    result = vit.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(KeyError, match='unrecognised'):
        vit.convert_state_dict({'foo.weight': torch.zeros(1)})


def test_shape_mismatch_is_reported_by_name(tmp_path):
    sd = tiny(dict(TINY, feedforward_channels=96)).state_dict()
    path = tmp_path / 'wrong.pth'
    torch.save({'state_dict': sd}, path)
    model = tiny(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'blocks\.0\.mlp\.fc1\.weight'):
        model.init_weights()


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize('kwargs, err, match', [
    (dict(out_indices=2.0), TypeError, 'out_indices'),
    (dict(out_indices='2'), TypeError, 'out_indices'),
    (dict(out_indices=(3, 3)), ValueError, 'out_indices must be unique'),
    (dict(out_indices=(3, 1)), ValueError, 'increasing'),
    (dict(skip_indices=(1.5,)), TypeError, 'skip_indices'),
    (dict(skip_indices='34'), TypeError, 'skip_indices'),
    (dict(arch=dict(TINY, num_heads=0)), ValueError, r"arch\['num_heads'\] must be >= 1"),
    (dict(arch=dict(TINY, embed_dims='32')), TypeError, r"arch\['embed_dims'\] must be an int"),
    (dict(arch=dict(TINY, feedforward_channels=-4)), ValueError, 'feedforward_channels'),
    (dict(patch_size=0), ValueError, 'patch_size must be >= 1'),
    (dict(img_size=8, patch_size=16), ValueError, 'img_size must be'),
    (dict(phi_kernel=4), ValueError, 'phi_kernel must be odd'),
    (dict(phi_ratio=0), ValueError, 'phi_ratio'),
])
def test_bad_arguments_are_named(kwargs, err, match):
    with pytest.raises(err, match=match):
        tiny(**kwargs)


def test_bad_inputs_are_named():
    model = tiny(img_size=32).eval()
    assert_bad_batches_refused(model)
    # An empty batch and inputs smaller than one patch work (corner padding), as for mmpretrain's ViT.
    assert [tuple(o.shape) for o in model(torch.zeros(0, 3, 32, 32))] == [(0, 32, 2, 2)]
    assert [tuple(o.shape) for o in model(torch.zeros(1, 3, 5, 7))] == [(1, 32, 1, 1)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16))[0]
    assert torch.isfinite(out.float()).all()



@pytest.mark.parametrize('bias', [True, False])
def test_few_query_attention_projects_no_key_or_value(bias):
    """num_queries rows (the CLS-only last block) reassociate q.(W_k x + b_k) and a.(W_v x + b_v): the first
    rows of full attention, their gradients too, without the N C^2 MACs of a key projection."""
    from torch.utils.flop_counter import FlopCounterMode
    from mmevit.models.layers import MultiheadSelfAttention
    torch.manual_seed(0)
    attn = MultiheadSelfAttention(48, 3, qkv_bias=bias).eval()
    x = torch.randn(2, 50, 48)
    with torch.no_grad():
        full = attn(x)
        for r in (1, 4):
            assert attn._reassociate(x, r, None)
            torch.testing.assert_close(attn(x, num_queries=r), full[:, :r], atol=1e-5, rtol=1e-5)
            res = torch.randn(2, r, 48)
            torch.testing.assert_close(attn(x, residual=res, num_queries=r), res + full[:, :r],
                                       atol=1e-5, rtol=1e-5)
        with FlopCounterMode(display=False) as counter:
            attn(x, num_queries=1)
        assert counter.get_total_flops() < 2 * 50 * 48 * 48 / 2  # under half of one key projection's FLOPs
    assert not attn._reassociate(x, 40, None)  # many queries: projecting keys and values is cheaper
    assert not attn._reassociate(x, 1, torch.ones(50, 50, dtype=torch.bool))
    grads = []
    for rows in (1, None):
        attn.zero_grad()
        out = attn.train()(x, num_queries=rows)
        (out[:, :1] * torch.linspace(-1, 1, 48)).sum().backward()
        grads.append([p.grad.clone() for p in attn.parameters()])
    for g, w in zip(*grads):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('skip', [(2, 3), (4, 5)], ids=['last-computed', 'last-skipped'])
@pytest.mark.parametrize('fused', [True, False])
def test_cls_output_computes_only_the_cls_row_of_the_last_block(skip, fused):
    """out_type='cls_token' in inference: the last block computes its CLS row alone (queries of the CLS row
    against every key; a skipped last block runs no Phi) and gives the CLS row of the full computation; in
    training, or with a hook on the last block, the whole block runs."""
    torch.manual_seed(0)
    cls = tiny(skip_indices=skip, out_type='cls_token', out_indices=(2, 5), final_norm=True).eval()
    raw = tiny(skip_indices=skip, out_type='raw', out_indices=(2, 5), final_norm=True).eval()
    raw.load_state_dict(cls.state_dict())
    if not fused:
        _unfused(cls), _unfused(raw)
    last = cls.blocks[-1]
    rows, phi_calls = [], []
    mlp_half = last.forward_mlp  # recorded without a hook (a hook turns the CLS-only path off)
    last.forward_mlp = lambda t: rows.append(t.shape[1]) or mlp_half(t)
    if skip == (4, 5):
        phi = last.phi.forward
        last.phi.forward = lambda *a: phi_calls.append(1) or phi(*a)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        got, want = cls(x), raw(x)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w[:, 0], atol=1e-5, rtol=1e-5)
        assert rows[0] == 1 and not phi_calls[:1]
        handle = last.norm2.register_forward_hook(lambda *a: None)
        torch.testing.assert_close(cls(x)[1], got[1], atol=1e-5, rtol=1e-5)
        handle.remove()
    cls.train()(x)
    assert rows[1:] == [1 + 12, 1 + 12]  # with the hook, in training: the whole block
    assert len(phi_calls) == (2 if skip == (4, 5) else 0)


# ------------------------------------------------------------------------------------------ fused inference
def _unfused(model):
    for m in model.modules():
        if hasattr(m, 'fused_linear'):
            m.fused_linear = False
    return model


def test_fused_inference_equals_plain_path_and_hooks_see_plain_values():
    """CPU inference runs oneDNN GEMMs with GELU / residual adds fused; the values are the plain path's, and a
    forward hook on an attention module still receives its MSA output (the block then takes the plain path)."""
    from mmevit.models.layers import fused_linear
    torch.manual_seed(0)
    model = tiny(skip_indices=(1, 2), out_indices=(0, 1, 2, 3)).eval()
    plain = _unfused(copy.deepcopy(model))
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert fused_linear.fusable(x)
        for a, b in zip(model(x), plain(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        seen = {}
        for name, m in (('fused', model), ('plain', plain)):
            h = m.blocks[3].attn.register_forward_hook(lambda mod, a, o, n=name: seen.__setitem__(n, o))
            m(x)
            h.remove()
    torch.testing.assert_close(seen['fused'], seen['plain'], atol=1e-5, rtol=1e-5)
    assert seen['plain'].abs().max() < 10  # the MSA output alone, not residual + MSA
