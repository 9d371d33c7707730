"""Uformer and SkipAt-Uformer: parity with the official code, variants, any input size, SkipAt modes,
checkpoint conversion, errors."""
import glob
import json
import os.path as osp

import pytest
import torch
from input_cases import assert_bad_batches_refused

import mmevit
from mmevit.engine.convert import check_state_dict, convert_for_model
from mmevit.models.denoisers import uformer as uformer_module
from mmevit.models.denoisers.uformer import (AttentionReuse, ShiftMask, Uformer, WindowAttention,
                                             convert_uformer_state_dict, shift_attention_mask)
from mmevit.analysis.official import OfficialUformerOps, to_official_state_dict

TINY = dict(embed_dims=4, depths=[2] * 9, num_heads=[1, 2, 4, 8, 16, 16, 8, 4, 2])
OFFICIAL_TINY = dict(img_size=64, embed_dim=4, depths=[2] * 9, num_heads=[1, 2, 4, 8, 16, 16, 8, 4, 2],
                     win_size=8, modulator=True, dd_in=3)
LAYERS = [f'encoderlayer_{i}' for i in range(4)] + ['conv'] + [f'decoderlayer_{i}' for i in range(4)]


def tiny(**kwargs) -> Uformer:
    kwargs.setdefault('img_size', 64)
    kwargs.setdefault('drop_path_rate', 0.)
    return Uformer(TINY, **kwargs)


def set_fused(model, fused: bool) -> None:
    for m in model.modules():
        if hasattr(m, 'fused_attn'):
            m.fused_attn = fused


def _fixture_paths():
    from conftest import FIXTURES
    return sorted(glob.glob(osp.join(FIXTURES, 'uformer', '*.pt'))) or ['<missing>']


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize('fused', [True, False], ids=['sdpa', 'eager'])
@pytest.mark.parametrize('path', _fixture_paths(), ids=osp.basename)
def test_parity_with_official_fixture(path, fused):
    assert osp.isfile(path), 'no Uformer parity fixtures found in ../shared/fixtures/uformer'
    fx = torch.load(path, weights_only=False)
    model = mmevit.from_official('uformer', fx['arch'], fx['state_dict'])
    assert not model.training and isinstance(model, Uformer)
    set_fused(model, fused)
    outs = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o[0]))
             for n in LAYERS]
    with torch.no_grad():
        out = model(fx['input'])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(out, fx['output'], atol=1e-4, rtol=1e-3)
    for name in LAYERS:  # ours are (B, H, W, C) maps, the official ones row-major tokens
        ours = outs[name].flatten(1, 2)
        torch.testing.assert_close(ours, fx['extra'][name], atol=1e-4, rtol=1e-3, msg=lambda m: f'{name}: {m}')
    # With autograd on, the plain torch path (no fused oneDNN linears) gives the same.
    torch.testing.assert_close(model(fx['input']).detach(), fx['output'], atol=1e-4, rtol=1e-3)


def test_reference_ops_reproduce_fixture():
    """The stand-in for the official forward used below is itself checked against the official output."""
    path = _fixture_paths()[0]
    fx = torch.load(path, weights_only=False)
    with torch.no_grad():
        out = OfficialUformerOps(fx['arch'], fx['state_dict'])(fx['input'])
    torch.testing.assert_close(out, fx['output'], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize('shift', [0, 2])
def test_window_partition_compile_formulation_is_the_gather(monkeypatch, shift):
    """Under torch.compile, window_partition / window_reverse use roll + permute (which inductor fuses) instead
    of the cached gather index; both give the same windows."""
    x = torch.randn(2, 8, 12, 3)
    gather = uformer_module.window_partition(x, 4, shift)
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    windows = uformer_module.window_partition(x, 4, shift)
    assert torch.equal(windows, gather) and windows.shape == (2 * 6, 16, 3)
    assert torch.equal(uformer_module.window_reverse(windows, 4, (8, 12), shift), x)


def test_official_use_checkpoint_becomes_with_cp():
    fx = torch.load(_fixture_paths()[0], weights_only=False)
    model = mmevit.from_official('uformer', dict(fx['arch'], use_checkpoint=True), fx['state_dict'])
    assert model.with_cp and not mmevit.from_official('uformer', fx['arch'], fx['state_dict']).with_cp
    with torch.no_grad():
        torch.testing.assert_close(model(fx['input']), fx['output'], atol=1e-4, rtol=1e-3)


def test_from_official_rejects_unknown_and_unported():
    with pytest.raises(ValueError, match='unknown Uformer kwargs'):
        mmevit.from_official('uformer', dict(OFFICIAL_TINY, bogus=1), {})
    with pytest.raises(ValueError, match="token_mlp='ffn' is not ported"):
        mmevit.from_official('uformer', dict(OFFICIAL_TINY, token_mlp='ffn'), {})
    with pytest.raises(ValueError, match='cross_modulator'):
        mmevit.from_official('uformer', dict(OFFICIAL_TINY, cross_modulator=True), {})


# ---------------------------------------------------------------------------------------------- variants
def _manifest(fixtures_root):
    with open(osp.join(fixtures_root, 'manifests', 'uformer.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('variant,arch', [('Uformer_T', 't'), ('Uformer_S', 's'), ('Uformer_B', 'b')])
def test_full_size_keys_params_and_flops_match_official(fixtures_dir, variant, arch):
    """The official T/S/B key set converts exactly onto ours (dropping only the derived
    relative_position_index buffers), with the official parameter count and ``flops()``. Meta device."""
    man = _manifest(fixtures_dir)[variant]
    assert man['ctor']['img_size'] == 128
    model = Uformer(arch, device='meta')
    official = {k: torch.empty(shape, device='meta') for k, shape in man['keys'].items()}
    state, dropped = convert_uformer_state_dict(official, model)
    assert sorted(dropped) == sorted(man['buffer_keys'])
    check_state_dict(state, model)  # same keys, same shapes
    assert sum(p.numel() for p in model.parameters()) == man['num_params']
    for size in (128, 256):
        assert model.flops((size, size)) == man['flops_official_method'][f'img_size_{size}']
    assert model.size_divisor == 128


def test_custom_arch_and_aliases():
    model = Uformer(dict(embed_dims=8, depths=[1, 1, 2, 1, 1, 1, 2, 1, 1], num_heads=[1, 1, 2, 2, 4, 4, 2, 2, 1]),
                    img_size=64)
    assert len(model.encoderlayer_2.blocks) == 2 and model.decoderlayer_3.blocks[0].attn.num_heads == 1
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert Uformer('uformer-t', device='meta').embed_dims == 16
    assert Uformer('B', device='meta').arch['depths'] == [1, 2, 8, 8, 2, 8, 8, 2, 1]


# ---------------------------------------------------------------------------------------------- any size
@pytest.mark.parametrize('hw', [(50, 61), (64, 64), (7, 33)])
def test_any_size_equals_official_on_padded_input(hw):
    """Our forward pads bottom/right with zeros to the next multiple (64 for img_size 64) and crops: the same
    as the official model run on the zero-padded square input, cropped."""
    torch.manual_seed(0)
    model = tiny().eval()
    ref = OfficialUformerOps(OFFICIAL_TINY, to_official_state_dict(model))
    x = torch.rand(2, 3, *hw)
    padded = torch.zeros(2, 3, 64, 64)
    padded[:, :, :hw[0], :hw[1]] = x
    with torch.no_grad():
        ours = model(x)
        expected = ref(padded)[:, :, :hw[0], :hw[1]]
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('fused', [True, False])
def test_non_square_any_size_equals_padded_then_cropped(fused):
    torch.manual_seed(0)
    model = tiny(pad_mode='reflect').eval()
    set_fused(model, fused)
    x = torch.rand(1, 3, 70, 150)
    padded = torch.nn.functional.pad(x, (0, 192 - 150, 0, 128 - 70), mode='reflect')
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_aligned(padded)[:, :, :70, :150], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='divisible by 64'):
        model.forward_aligned(x)


def test_training_size_is_not_padded_and_windows_follow_img_size():
    model = Uformer('t', device='meta')  # img_size 128: bottleneck 8x8 = one window, no shift
    assert [b.shift_size for b in model.encoderlayer_0.blocks] == [0, 4]
    assert [b.shift_size for b in model.conv.blocks] == [0, 0] and model.conv.win_size == 8
    small = tiny()  # img_size 64: encoder level 3 is one unshifted window, the bottleneck 4x4
    assert [b.shift_size for b in small.encoderlayer_3.blocks] == [0, 0]
    assert small.conv.win_size == 4 and small.conv.blocks[0].attn.relative_position_bias_table.shape == (49, 16)
    assert small.size_divisor == 64


# ---------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize('grid', [(4, 5), (2, 2), (1, 3), (3, 1), (8, 8)])
def test_shift_mask_matches_official_mask(grid):
    """The border-window masks (fused and eager paths) give the attention of the official full SW-MSA mask."""
    torch.manual_seed(0)
    win, shift, B = 4, 2, 2
    hw = (grid[0] * win, grid[1] * win)
    attn = WindowAttention(8, 2, win)
    torch.nn.init.normal_(attn.relative_position_bias_table)
    x = torch.randn(B * grid[0] * grid[1], win * win, 8)
    full = shift_attention_mask(hw, win, shift)
    q, k, v = attn._split_heads(attn.qkv(x))
    logits = (q * attn.scale) @ k.transpose(-2, -1) + attn.relative_position_bias()
    logits = logits.view(B, -1, 2, win * win, win * win) + full.unsqueeze(1)
    expected = attn.proj(attn._merge_heads(logits.view(-1, 2, win * win, win * win).softmax(-1) @ v))
    mask = ShiftMask.build(B, hw, win, shift, x.device, x.dtype)
    for fused in (True, False):
        attn.fused_attn = fused
        with torch.no_grad():
            torch.testing.assert_close(attn(x, mask)[0], expected, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- SkipAt
@pytest.mark.parametrize('mode', [None, 'feature', 'attention'])
def test_skipat_modes_forward_backward_every_parameter(mode):
    torch.manual_seed(0)
    model = tiny(skipat=mode, drop_path_rate=0.1, attn_drop_rate=0.1).train()
    out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 3, 64, 96) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        set_fused(model, False)
        torch.testing.assert_close(model(x), a, atol=1e-5, rtol=1e-4)


def test_skipat_structure_and_params():
    base, feat, att = (Uformer('s', skipat=m, device='meta') for m in (None, 'feature', 'attention'))
    for i in range(4):
        for blk in feat._layer(i, 'decoder').blocks:
            assert not hasattr(blk, 'attn') and not hasattr(blk, 'norm1') and blk.phi.fc2.out_features == blk.dim
        for blk in att._layer(i, 'decoder').blocks:
            assert isinstance(blk.attn, AttentionReuse) and blk.modulator is not None
    assert feat.decoderlayer_0.blocks[0].phi.fc1.in_features == 256  # encoder level 3 width
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(att) < n(feat) < n(base)
    assert att.flops((256, 256)) < feat.flops((256, 256)) < base.flops((256, 256))
    partial = Uformer('s', skipat='attention', skip_layers=(3,), device='meta')
    assert isinstance(partial.decoderlayer_3.blocks[0].attn, AttentionReuse)
    assert isinstance(partial.decoderlayer_2.blocks[0].attn, WindowAttention)


def test_attention_reuse_maps_decoder_head_h_to_encoder_head_h_over_r():
    """Explicit head mapping: with A from 2 encoder heads and 4 decoder heads, decoder head h = A[h // 2] V_h."""
    torch.manual_seed(0)
    reuse = AttentionReuse(16, src_heads=2)
    x, attn = torch.randn(3, 9, 16), torch.randn(3, 2, 9, 9).softmax(-1)
    v = reuse.v(x).view(3, 9, 4, 4).transpose(1, 2)  # 4 decoder heads of width 4
    heads = [attn[:, h // 2] @ v[:, h] for h in range(4)]
    expected = reuse.proj(torch.stack(heads, 1).transpose(1, 2).reshape(3, 9, 16))
    torch.testing.assert_close(reuse(x, attn), expected)
    with pytest.raises(ValueError, match='does not fit'):
        reuse(x, attn[:, :1])


def test_attention_mode_reuses_the_mirrored_encoder_attention():
    """Decoder block j of level i receives exactly the attention of encoder level 3 - i, block j."""
    torch.manual_seed(0)
    model = tiny(skipat='attention').eval()
    seen = {}
    for i in range(4):
        for j, blk in enumerate(model._layer(i, 'decoder').blocks):
            blk.attn.register_forward_hook(lambda m, args, o, key=(i, j): seen.__setitem__(key, args[1]))
    enc = {}
    for i in range(4):
        for j, blk in enumerate(model._layer(i).blocks):
            blk.attn.register_forward_hook(lambda m, args, o, key=(i, j): enc.__setitem__(key, o[1]))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert len(seen) == 8
    for (i, j), attn in seen.items():
        assert attn is enc[(3 - i, j)]


# ---------------------------------------------------------------------------------------------- checkpoints
def test_convert_official_and_own_formats():
    torch.manual_seed(0)
    model = tiny()
    official = to_official_state_dict(model)
    state, dropped = model.convert_state_dict(official)
    assert all(k.endswith('relative_position_index') for k in dropped) and len(dropped) == 18
    check_state_dict(state, model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v, msg=k)
    own, dropped = model.convert_state_dict(model.state_dict())  # identity on our own format
    assert not dropped and own.keys() == model.state_dict().keys()
    # DDP prefix and the official {'state_dict': ...} container through the generic path
    wrapped = {'state_dict': {'module.' + k: v for k, v in official.items()}}
    state, _ = convert_for_model(wrapped, model)
    check_state_dict(state, model)


@pytest.mark.parametrize('mode', ['feature', 'attention'])
def test_baseline_checkpoint_initialises_skipat(mode):
    torch.manual_seed(0)
    base = tiny()
    skip = tiny(skipat=mode)
    for source in (to_official_state_dict(base), base.state_dict()):
        state, dropped = skip.convert_state_dict(source)
        check_state_dict(state, skip, allow_missing=True)
        missing = set(skip.state_dict()) - set(state)
        if mode == 'feature':
            assert missing and all('.phi.' in k for k in missing)
            assert any(k.startswith('decoderlayer_0.blocks.0.attn.') for k in dropped)
            assert any(k.startswith('decoderlayer_2.blocks.1.modulator') for k in dropped)
        else:
            assert not missing
            v = base.state_dict()['decoderlayer_1.blocks.1.attn.qkv.weight'][-32:]
            torch.testing.assert_close(state['decoderlayer_1.blocks.1.attn.v.weight'], v)
            assert any(k.startswith('decoderlayer_1.blocks.1.attn.relative_position_bias_table') for k in dropped)
            assert not any(k.endswith('to_kv.weight') for k in dropped)


def test_bias_tables_are_resized_and_pretrained_init_cfg(tmp_path):
    torch.manual_seed(0)
    big = Uformer(TINY, img_size=128)  # bottleneck window 8: 225-row tables
    path = tmp_path / 'uformer_official.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in to_official_state_dict(big).items()}}, path)
    small = tiny(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    small.init_weights()
    assert small.conv.blocks[0].attn.relative_position_bias_table.shape == (49, 16)
    torch.testing.assert_close(small.encoderlayer_0.blocks[1].attn.qkv.weight,
                               big.encoderlayer_0.blocks[1].attn.qkv.weight)


# ---------------------------------------------------------------------------------------------- errors
def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='not in default archs'):
        Uformer('xl')
    with pytest.raises(ValueError, match='9 ints'):
        Uformer(dict(TINY, depths=[2] * 8))
    with pytest.raises(ValueError, match='not divisible by num_heads'):
        Uformer(dict(TINY, num_heads=[3] + TINY['num_heads'][1:]))
    with pytest.raises(ValueError, match='skipat must be one of'):
        tiny(skipat='phi')
    with pytest.raises(ValueError, match='skip_layers'):
        tiny(skipat='feature', skip_layers=(4,))
    with pytest.raises(ValueError, match='mirrored encoder'):
        Uformer(dict(TINY, depths=[2, 2, 2, 2, 2, 2, 2, 2, 1]), img_size=64, skipat='feature')
    with pytest.raises(ValueError, match='img_size must be >= 64'):
        Uformer(TINY, img_size=32)
    with pytest.raises(ValueError, match='in_channels .* must equal out_channels'):
        tiny(in_channels=4)
    model = tiny(in_channels=4, residual=False)
    assert model(torch.rand(1, 4, 20, 20)).shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match='expected 4 input channels'):
        model(torch.rand(1, 3, 20, 20))
    with pytest.raises(TypeError, match='floating-point'):
        model(torch.zeros(1, 4, 20, 20, dtype=torch.uint8))


UNIT = dict(embed_dims=4, depths=[1] * 9, num_heads=[1, 1, 2, 4, 8, 8, 4, 2, 1])


@pytest.mark.parametrize('kwargs, err, match', [
    (dict(arch=dict(UNIT, embed_dims='4')), TypeError, r"arch\['embed_dims'\] must be an int"),
    (dict(arch=dict(UNIT, embed_dims=0)), ValueError, r"arch\['embed_dims'\] must be >= 1"),
    (dict(arch=dict(UNIT, num_heads=[0] + UNIT['num_heads'][1:])), ValueError, r"arch\['num_heads'\] entry"),
    (dict(arch=dict(UNIT, depths=[-1] + [1] * 8)), ValueError, r"arch\['depths'\] entry must be >= 1"),
    (dict(arch=dict(UNIT, depths='111111111')), ValueError, r"arch\['depths'\] must be 9 ints"),
    (dict(arch=dict(UNIT, win_size=8)), ValueError, "unknown arch keys.*'win_size'"),
    (dict(img_size=64.0), TypeError, 'img_size must be an int'),
    (dict(img_size=(64, 64)), TypeError, 'img_size must be an int'),
    (dict(img_size=8), ValueError, 'img_size must be >= 16'),
    (dict(win_size=0), ValueError, 'win_size must be >= 1'),
    (dict(win_size=8.0), TypeError, 'win_size must be an int'),
    (dict(win_size='8'), TypeError, 'win_size must be an int'),
    (dict(win_size=16), ValueError, 'img_size must be >= 128'),  # the modulator needs full windows
    (dict(in_channels=0), ValueError, 'in_channels must be >= 1'),
    (dict(out_channels='3'), TypeError, 'out_channels must be an int'),
    (dict(skipat=True), ValueError, 'skipat must be one of'),
    (dict(skipat='Feature'), ValueError, 'skipat must be one of'),
    (dict(skipat='feature', skip_layers=(1.5,)), TypeError, 'skip_layers entry must be an int'),
    (dict(skipat='feature', skip_layers='01'), TypeError, 'skip_layers must be a sequence'),
    (dict(skipat='feature', skip_layers=1), TypeError, 'skip_layers must be a sequence'),
    (dict(skipat='feature', skip_layers=(1, 1)), ValueError, 'skip_layers must be distinct'),
    (dict(skipat='feature', skip_layers=(-1,)), ValueError, 'skip_layers entry must be >= 0'),
    (dict(skipat='feature', skip_layers=()), ValueError, 'skip_layers'),
    (dict(skip_layers=(9,)), ValueError, 'skip_layers'),  # checked without skipat too: not silently ignored
    (dict(skipat='feature', phi_kernel=4), ValueError, 'phi_kernel must be odd'),
    (dict(phi_kernel=0), ValueError, 'phi_kernel must be >= 1'),
    (dict(skipat='feature', phi_ratio=0), ValueError, 'phi_ratio'),
    (dict(phi_ratio='2'), TypeError, 'phi_ratio must be a number'),
    (dict(mlp_ratio=0), ValueError, 'mlp_ratio'),
    (dict(mlp_ratio=-1), ValueError, 'mlp_ratio'),
    (dict(mlp_ratio='4'), TypeError, 'mlp_ratio must be a number'),
    (dict(mlp_ratio=0.1), ValueError, 'mlp_ratio.*hidden width'),
    (dict(qk_scale='x'), TypeError, 'qk_scale'),
    (dict(qk_scale=-1.), ValueError, 'qk_scale'),
    (dict(norm_eps=0), ValueError, 'norm_eps'),
    (dict(drop_rate=-1.), ValueError, 'drop_rate'),
    (dict(attn_drop_rate=2.), ValueError, 'attn_drop_rate'),
    (dict(drop_path_rate=1.0), ValueError, 'drop_path_rate'),
    (dict(pad_mode='zeros'), ValueError, 'pad_mode'),
    (dict(residual='no'), TypeError, 'residual must be True or False'),
    (dict(shift='no'), TypeError, 'shift must be True or False'),
    (dict(token_mlp='ffn'), TypeError, 'token_mlp'),  # not ported: Python names the unknown keyword
])
def test_bad_arguments_are_named(kwargs, err, match):
    kwargs = {'arch': UNIT, 'img_size': 64, 'drop_path_rate': 0., **kwargs}
    with pytest.raises(err, match=match):
        Uformer(kwargs.pop('arch'), **kwargs)


def test_bad_inputs_are_named():
    model = Uformer(UNIT, img_size=64, drop_path_rate=0.).eval()
    assert_bad_batches_refused(model)
    with torch.no_grad():
        # Any size: zero-padded at the bottom/right to size_divisor, output cropped back; an empty batch works.
        for shape in ((0, 3, 32, 32), (1, 3, 1, 1), (2, 3, 17, 33)):
            assert model(torch.rand(shape)).shape == shape
        # reflect/circular padding cannot pad a side by more than its length: refused by name, not by F.pad.
        for mode in ('reflect', 'circular'):
            padded = Uformer(UNIT, img_size=64, drop_path_rate=0., pad_mode=mode).eval()
            with pytest.raises(ValueError, match=f"pad_mode='{mode}' cannot pad a 3x5 input"):
                padded(torch.rand(1, 3, 3, 5))
            assert padded(torch.rand(1, 3, 40, 50)).shape == (1, 3, 40, 50)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(torch.rand(1, 3, 16, 16, dtype=torch.bfloat16))
        assert out.shape == (1, 3, 16, 16) and torch.isfinite(out.float()).all()


def test_converter_cli_writes_a_strict_checkpoint(tmp_path):
    """tools/model_converters/convert.py turns an official checkpoint ({'state_dict'}, ``module.``) into one that
    loads strictly into the config's Denoiser (SkipAt: the unused query/key weights are dropped)."""
    import importlib.util
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    spec = importlib.util.spec_from_file_location('mmevit_convert_cli',
                                                  osp.join(repo, 'tools', 'model_converters', 'convert.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    torch.manual_seed(0)
    official = Uformer('t', img_size=64)
    src, dst = tmp_path / 'model_best.pth', tmp_path / 'converted.pth'
    torch.save({'epoch': 250, 'state_dict': {'module.' + k: v for k, v in to_official_state_dict(official).items()}},
               src)
    config = osp.join(repo, 'configs', 'demo', 'skipat_uformer_t_sidd_demo.py')
    assert cli.main([str(src), str(dst), '--config', config]) == 0
    state = torch.load(dst, weights_only=True)['state_dict']
    from mmengine.config import Config
    from mmevit.registry import MODELS
    model = MODELS.build(Config.fromfile(config).model)
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.generator.encoderlayer_1.blocks[1].attn.qkv.weight,
                               official.encoderlayer_1.blocks[1].attn.qkv.weight)
