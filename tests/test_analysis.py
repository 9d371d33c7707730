"""Layer-correlation analysis (mmevit/analysis/correlation.py, tools/analysis/layer_correlation.py) and the
SkipAt retrofit of pretrained ViTs (mmevit/analysis/retrofit.py, tools/model_converters/vit2skipat.py)."""
import itertools
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmevit.analysis.correlation import (AttentionRecorder, MinibatchCKA, PairwiseCosine, analyse_attention,
                                         chunk_sizes, gram, hsic, linear_cka, suggest_skip_indices)
from mmevit.analysis.retrofit import init_phi_identity, retrofit_skipat
from mmevit.engine.convert import CheckpointMismatchError, build_from_spec
from mmevit.models.backbones.skipat_vit import SkipAtViT
from mmevit.models.layers import SkipAtPhi

from tools_helpers import load_tool

TINY = dict(embed_dims=16, num_layers=4, num_heads=2, feedforward_channels=32)


def _vit(skip=(), seed=0, **kw) -> SkipAtViT:
    torch.manual_seed(seed)
    return SkipAtViT(arch=TINY, img_size=32, skip_indices=skip, out_type='raw', **kw).eval()


# ---------------------------------------------------------------------- CKA
@pytest.mark.parametrize('unbiased', [False, True])
def test_cka_of_a_representation_with_itself_is_one(unbiased):
    x = torch.randn(20, 7, 5)
    assert linear_cka(x, x, unbiased) == pytest.approx(1., abs=1e-12)


@pytest.mark.parametrize('unbiased', [False, True])
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(unbiased):
    torch.manual_seed(0)
    x, y = torch.randn(30, 8).double(), torch.randn(30, 6).double()
    y = y + x[:, :6]  # correlated, so the value is not near 0
    q, _ = torch.linalg.qr(torch.randn(8, 8).double())
    ref = linear_cka(x, y, unbiased)
    assert 0.2 < ref < 0.99
    assert linear_cka(x @ q, y, unbiased) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y, unbiased) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(x + 5., y, unbiased) == pytest.approx(ref, abs=1e-10)  # centred inside HSIC
    # An anisotropic (invertible, non-orthogonal) map changes it.
    a = torch.diag(torch.tensor([30., 10., 3., 1., 1., .3, .1, .03], dtype=torch.float64))
    assert abs(linear_cka(x @ a, y, unbiased) - ref) > 0.05
    assert linear_cka(x @ a, x, unbiased) < 0.9


def test_biased_cka_is_the_feature_space_formula():
    torch.manual_seed(1)
    x, y = torch.randn(25, 9).double(), torch.randn(25, 4).double()
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert linear_cka(x, y) == pytest.approx(float(ref), abs=1e-12)


def test_unbiased_hsic_is_the_u_statistic():
    """Song et al. 2012: the mean over ordered distinct (i, j, q, r) of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    torch.manual_seed(2)
    k, l = gram(torch.randn(6, 3)), gram(torch.randn(6, 4))
    terms = [k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
             for i, j, q, r in itertools.permutations(range(6), 4)]
    assert float(hsic(k, l, unbiased=True)) == pytest.approx(float(sum(terms) / len(terms)), rel=1e-10)
    with pytest.raises(ValueError, match='at least 4'):
        hsic(k[:3, :3], l[:3, :3], unbiased=True)


def test_minibatch_cka_accumulates_hsic_over_batches():
    torch.manual_seed(3)
    feats = [torch.randn(12, 5), torch.randn(12, 7), torch.randn(12, 2)]
    feats[1][:, :5] += feats[0]
    one = MinibatchCKA(3, unbiased=False)
    one.update(feats)
    m = one.compute()
    assert torch.allclose(m, m.T) and torch.allclose(torch.diagonal(m), torch.ones(3, dtype=m.dtype))
    assert float(m[0, 1]) == pytest.approx(linear_cka(feats[0], feats[1]), abs=1e-12)
    two = MinibatchCKA(3, unbiased=True)
    two.update([f[:6] for f in feats])
    two.update([f[6:] for f in feats])
    h = lambda a, b: sum(float(hsic(gram(a[s]), gram(b[s]), True)) for s in (slice(0, 6), slice(6, 12)))  # noqa
    ref = h(feats[0], feats[2]) / (h(feats[0], feats[0]) * h(feats[2], feats[2])) ** .5
    assert float(two.compute()[0, 2]) == pytest.approx(ref, abs=1e-12)
    assert two.examples == 12 and two.batches == 2
    with pytest.raises(ValueError, match='3 layers'):
        two.update(feats[:2])


def test_pairwise_cosine_is_the_mean_over_examples():
    torch.manual_seed(4)
    v = [torch.rand(5, 9) for _ in range(3)]
    pc = PairwiseCosine(3)
    pc.update([x[:2] for x in v])
    pc.update([x[2:] for x in v])
    ref = F.cosine_similarity(v[0], v[2], dim=1).mean()
    assert float(pc.compute()[0, 2]) == pytest.approx(float(ref), abs=1e-6)
    assert float(pc.compute()[1, 1]) == pytest.approx(1., abs=1e-12)


def test_suggest_skip_indices_compares_with_the_last_computed_block():
    cka = [[1., .95, .85, .5],
           [.95, 1., .97, .5],
           [.85, .97, 1., .92],
           [.5, .5, .92, 1.]]
    # Block 1 follows block 0 (0.95); block 2 is close to block 1 (0.97) but block 1 is skipped, and
    # to block 0 (the reference) only 0.85: kept. Block 3 is close to block 2, the new reference.
    assert suggest_skip_indices(cka, [0, 1, 2, 3], 0.9) == [1, 3]
    assert suggest_skip_indices(cka, [0, 1, 2, 3], 0.99) == []
    assert suggest_skip_indices(cka, [0, 4, 5, 9], 0.9) == [4, 9]
    with pytest.raises(ValueError, match='threshold'):
        suggest_skip_indices(cka, [0, 1, 2, 3], 1.5)


def test_chunk_sizes_never_leave_a_batch_too_small_for_the_estimator():
    assert chunk_sizes(10, 4, 4) == [4, 6]
    assert chunk_sizes(12, 4, 4) == [4, 4, 4]
    assert chunk_sizes(5, 16, 4) == [5]
    with pytest.raises(ValueError, match='at least 4'):
        chunk_sizes(3, 16, 4)


# ---------------------------------------------------------------------- recording
def test_recorder_matches_a_direct_eager_computation_and_leaves_the_model_unchanged():
    model = _vit(skip=(2,))
    x = torch.randn(3, 3, 32, 48)
    inputs = {}
    handles = [model.blocks[i].attn.register_forward_pre_hook(
        lambda m, a, i=i: inputs.__setitem__(i, a[0])) for i in (0, 1, 3)]
    with torch.no_grad():
        ref_out = model(x)[0]
        with AttentionRecorder(model) as rec:
            out = model(x)[0]
    for h in handles:
        h.remove()
    assert torch.equal(out, ref_out)  # recording does not change the forward
    assert rec.names == ['blocks.0.attn', 'blocks.1.attn', 'blocks.3.attn']  # block 2 has no attention
    for i in (0, 1, 3):
        attn, h = model.blocks[i].attn, inputs[i]
        B, N, C = h.shape
        qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias).reshape(B, N, 3, 2, C // 2).permute(2, 0, 3, 1, 4)
        weights = ((qkv[0] @ qkv[1].transpose(-2, -1)) / (C // 2) ** .5).softmax(-1)  # (B, heads, N, N)
        assert torch.allclose(rec.cls_attn[f'blocks.{i}.attn'], weights[:, :, 0].mean(1), atol=1e-6)
        assert rec.cls_attn[f'blocks.{i}.attn'].shape == (3, 1 + 2 * 3)
        attn.fused_attn = False
        assert torch.allclose(rec.msa[f'blocks.{i}.attn'], attn(h), atol=1e-6)
        attn.fused_attn = True
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed on exit


def test_recorder_refuses_a_model_without_attention():
    with pytest.raises(ValueError, match='no MultiheadSelfAttention'):
        AttentionRecorder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match='not MultiheadSelfAttention'):
        AttentionRecorder(_vit(), names=['blocks.0.mlp'])


def test_analyse_attention_gives_symmetric_matrices_per_recorded_block():
    model = _vit().train()
    batches = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    res = analyse_attention(model, batches)
    assert model.training  # measured in eval mode, the mode restored
    assert res['blocks'] == [0, 1, 2, 3] and res['num_images'] == 8 and res['estimator'] == 'unbiased'
    for key in ('cka_msa', 'cka_cls_attn', 'cos_cls_attn'):
        m = torch.tensor(res[key])
        assert m.shape == (4, 4) and torch.allclose(m, m.T)
        assert torch.allclose(torch.diagonal(m), torch.ones(4, dtype=m.dtype), atol=1e-9)
    # The CLS rows over the patch tokens: positive vectors, so their cosines lie in (0, 1].
    assert torch.tensor(res['cos_cls_attn']).min() > 0
    no_cls = analyse_attention(_vit(with_cls_token=False), batches, num_prefix_tokens=0)
    assert 'cka_cls_attn' not in no_cls and len(no_cls['cka_msa']) == 4


def test_analyse_attention_on_evo_vit_skips_cls_maps_of_pruned_layers():
    from mmevit.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(dict(type='EvoViT', arch=dict(TINY, num_layers=12), img_size=64))
    res = analyse_attention(model, [torch.randn(4, 3, 64, 64)])
    assert res['blocks'] == list(range(12)) and len(res['cka_msa']) == 12
    assert 'cka_cls_attn' not in res and 'token pruning' in res['cls_attn_skipped']


def test_recorder_leaves_out_the_cls_row_of_masked_attention():
    model = _vit()
    attn = model.blocks[0].attn
    with AttentionRecorder(model, names=['blocks.0.attn']) as rec:
        attn(torch.randn(2, 5, 16), attn_mask=torch.ones(5, 5, dtype=torch.bool))
    assert 'blocks.0.attn' in rec.msa and 'blocks.0.attn' not in rec.cls_attn


# ---------------------------------------------------------------------- the analysis tool
def _cls_setup(tmp_path, skip=(3, 4, 5, 6, 7, 8)):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from tools_helpers import make_cls_data, write_cls_config
    make_cls_data(str(tmp_path / 'cls'), num=6, size=40)
    config = write_cls_config(tmp_path, img_size=32)
    if skip != (3, 4, 5, 6, 7, 8):
        text = open(config).read().replace('skip_indices=(3, 4, 5, 6, 7, 8)', f'skip_indices={skip!r}')
        open(config, 'w').write(text)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(config).model)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return config, ckpt


def test_layer_correlation_tool_writes_heatmaps_and_json(tmp_path, capsys):
    tool = load_tool('analysis/layer_correlation')
    config, ckpt = _cls_setup(tmp_path, skip=())
    out = tmp_path / 'out'
    assert tool.main([config, ckpt, '--dataset', '--num-images', '6', '--batch-size', '4',
                      '--out-dir', str(out), '--threshold', '0.5']) == 0
    for name in ('cka_msa.png', 'cka_cls_attn.png', 'cos_cls_attn.png'):
        with open(out / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    res = json.loads((out / 'layer_correlation.json').read_text())
    assert res['blocks'] == list(range(12)) and res['num_images'] == 6 and res['batch_sizes'] == [6]
    assert len(res['cka_msa']) == 12 and len(res['cos_cls_attn'][0]) == 12
    assert res['suggested_skip_indices'] == suggest_skip_indices(res['cka_msa'], res['blocks'], 0.5)
    assert res['threshold'] == 0.5 and 'last block kept' in res['skip_rule']
    assert 'suggested skip_indices' in capsys.readouterr().out
    # Existing outputs are never overwritten.
    before = (out / 'layer_correlation.json').read_bytes()
    assert tool.main([config, ckpt, '--images', str(tmp_path / 'cls' / 'val'), '--out-dir', str(out)]) == 1
    assert 'refusing to overwrite' in capsys.readouterr().err
    assert (out / 'layer_correlation.json').read_bytes() == before


def test_layer_correlation_tool_on_an_image_folder_with_skipped_blocks(tmp_path, capsys):
    tool = load_tool('analysis/layer_correlation')
    config, ckpt = _cls_setup(tmp_path)
    out = tmp_path / 'out'
    assert tool.main([config, ckpt, '--images', str(tmp_path / 'cls' / 'val'), '--num-images', '5',
                      '--out-dir', str(out), '--biased']) == 0
    res = json.loads((out / 'layer_correlation.json').read_text())
    assert res['blocks'] == [0, 1, 2, 9, 10, 11] and res['blocks_without_attention'] == [3, 4, 5, 6, 7, 8]
    assert res['estimator'] == 'biased' and res['num_images'] == 5
    # A checkpoint that does not fit the config is refused with the keys named.
    bad = str(tmp_path / 'bad.pth')
    state = torch.load(ckpt, weights_only=True)['state_dict']
    del state['backbone.blocks.1.mlp.fc1.weight']
    torch.save({'state_dict': state}, bad)
    assert tool.main([config, bad, '--dataset', '--num-images', '4', '--out-dir', str(tmp_path / 'o2')]) == 1
    assert 'missing keys (1): backbone.blocks.1.mlp.fc1.weight' in capsys.readouterr().err
    assert tool.main([config, ckpt, '--images', str(tmp_path / 'nothing'), '--out-dir', str(tmp_path / 'o3')]) == 1
    assert 'image folder not found' in capsys.readouterr().err


# ---------------------------------------------------------------------- retrofit
def test_identity_phi_is_the_identity_map():
    phi = SkipAtPhi(12, 24, 5)
    init_phi_identity(phi)
    z = 3. * torch.randn(2, 20, 12)
    assert torch.allclose(phi(z, (4, 5)), z, atol=2e-5)
    with pytest.raises(ValueError, match='hidden >= dim'):
        init_phi_identity(SkipAtPhi(12, 6, 5))


def _official_vit(fixtures_dir):
    """The official SkipAt fixture without its Phis: an official/timm ViT checkpoint (``vit-*.t7`` layout)."""
    fx = torch.load(osp.join(fixtures_dir, 'skipat', 'skipat_tiny_160_b2.pt'), weights_only=False)
    state = {k: v for k, v in fx['state_dict'].items() if not k.startswith('param_')}
    arch = dict(embed_dims=36, num_layers=12, num_heads=3, feedforward_channels=144)
    return fx['state_dict'], state, arch


def test_retrofit_copies_shared_weights_exactly_and_drops_skipped_attention(fixtures_dir):
    _, vit_state, arch = _official_vit(fixtures_dir)
    model = SkipAtViT(arch=arch, img_size=160, skip_indices=(2, 3, 7))
    state, attention, other = retrofit_skipat({'model': vit_state}, model)
    model.load_state_dict(state, strict=True)
    for k, v in state.items():
        if '.phi.' not in k:
            assert torch.equal(v, vit_state[k]), k
    assert sorted(attention) == sorted(f'blocks.{i}.{n}' for i in (2, 3, 7) for n in (
        'norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight', 'attn.proj.bias'))
    assert sorted(other) == ['head.bias', 'head.weight']
    assert model(torch.randn(1, 3, 160, 160))[0].shape == (1, 36, 10, 10)


def test_identity_retrofit_starts_as_attention_reuse():
    """At step 0 each skipped block adds the MSA output of the last block that computed attention."""
    vit = _vit()
    model = _vit(skip=(1, 2), seed=1)
    state, _, _ = retrofit_skipat(vit.state_dict(), model)
    model.load_state_dict(state, strict=True)
    msa = {}
    vit.blocks[0].attn.register_forward_hook(lambda m, a, o: msa.__setitem__(0, o))
    for i in (1, 2):
        vit.blocks[i].attn.register_forward_hook(lambda m, a, o: msa[0])
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(model(x)[0], vit(x)[0], atol=1e-4)


def test_retrofit_from_mmpretrain_classifier_and_every_phi_parameter_learns():
    from mmpretrain.models import VisionTransformer
    torch.manual_seed(0)
    src = VisionTransformer(arch=TINY, img_size=32, patch_size=16)
    ckpt = {'state_dict': {**{'backbone.' + k: v for k, v in src.state_dict().items()},
                           'head.layers.head.weight': torch.zeros(5, 16), 'head.layers.head.bias': torch.zeros(5)}}
    model = _vit(skip=(2, 3)).train()
    state, attention, other = retrofit_skipat(ckpt, model)
    model.load_state_dict(state, strict=True)
    assert torch.equal(state['blocks.1.mlp.fc2.weight'], src.state_dict()['layers.1.ffn.layers.1.weight'])
    assert torch.equal(state['norm.weight'], src.state_dict()['ln1.weight'])
    assert 'layers.2.attn.qkv.weight' in attention and 'layers.3.ln1.bias' in attention
    assert sorted(other) == ['head.layers.head.bias', 'head.layers.head.weight']
    # The zero fc2 columns of the free hidden channels get gradients, then pass them on: after one step
    # every Phi parameter has a non-zero gradient.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(2):
        opt.zero_grad()
        model(x)[0].square().mean().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if '.phi.' in n}
        opt.step()
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), \
        [n for n, g in grads.items() if g is None or not g.abs().sum() > 0]


def test_retrofit_refuses_what_is_not_a_plain_vit(fixtures_dir):
    official, vit_state, arch = _official_vit(fixtures_dir)
    model = SkipAtViT(arch=arch, img_size=160, skip_indices=(3, 4))
    with pytest.raises(ValueError, match='SkipAt checkpoint'):
        retrofit_skipat(official, model)
    with pytest.raises(CheckpointMismatchError, match='4 blocks, the target 12'):
        retrofit_skipat(_vit().state_dict(), model)
    with pytest.raises(ValueError, match='skips no block'):
        retrofit_skipat(vit_state, SkipAtViT(arch=arch, img_size=160, skip_indices=()))
    with pytest.raises(ValueError, match='phi_init'):
        retrofit_skipat(vit_state, model, phi_init='zeros')


def test_retrofit_default_init_is_seeded():
    vit = _vit().state_dict()
    a, _, _ = retrofit_skipat(vit, _vit(skip=(2,), seed=5), phi_init='default', seed=1)
    b, _, _ = retrofit_skipat(vit, _vit(skip=(2,), seed=6), phi_init='default', seed=1)
    c, _, _ = retrofit_skipat(vit, _vit(skip=(2,), seed=5), phi_init='default', seed=2)
    assert torch.equal(a['blocks.2.phi.fc1.weight'], b['blocks.2.phi.fc1.weight'])
    assert not torch.equal(a['blocks.2.phi.fc1.weight'], c['blocks.2.phi.fc1.weight'])


def test_vit2skipat_cli(tmp_path, fixtures_dir, capsys):
    tool = load_tool('model_converters/vit2skipat')
    _, vit_state, _ = _official_vit(fixtures_dir)
    src, dst = str(tmp_path / 'vit-t.t7'), str(tmp_path / 'skipat.pth')
    torch.save({'model': vit_state}, src)
    spec = 'SkipAtViT:arch=dict(embed_dims=36,num_layers=12,num_heads=3,feedforward_channels=144),img_size=160'
    assert tool.main([src, dst, '--model', spec, '--skip-indices', '3', '4', '5']) == 0
    printed = capsys.readouterr().out
    assert 'dropped the attention of the skipped blocks (18 keys)' in printed and 'blocks.5.attn.qkv.weight' in printed
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['skip_indices'] == [3, 4, 5] and saved['meta']['phi_init'] == 'identity'
    assert saved['meta']['dropped_keys'] == ['head.weight', 'head.bias']
    model = build_from_spec(spec + ',skip_indices=(3,4,5)', device='cpu')
    model.load_state_dict(saved['state_dict'], strict=True)
    assert torch.equal(saved['state_dict']['blocks.6.attn.qkv.weight'], vit_state['blocks.6.attn.qkv.weight'])
    # init_cfg=Pretrained loads it too (the fine-tuning path).
    ft = SkipAtViT(arch=model.arch, img_size=160, skip_indices=(3, 4, 5),
                   init_cfg=dict(type='Pretrained', checkpoint=dst))
    ft.init_weights()
    assert torch.equal(ft.blocks[4].phi.fc2.bias, saved['state_dict']['blocks.4.phi.fc2.bias'])
    # Refusals: existing DST, DST == SRC, skip_indices inside --model.
    before = open(dst, 'rb').read()
    assert tool.main([src, dst, '--model', spec, '--skip-indices', '3']) == 1
    assert 'pass --force' in capsys.readouterr().err
    assert open(dst, 'rb').read() == before
    assert tool.main([src, src, '--model', spec, '--skip-indices', '3', '--force']) == 1
    assert 'is the source checkpoint' in capsys.readouterr().err
    assert tool.main([src, str(tmp_path / 'x.pth'), '--model', spec + ',skip_indices=(3,)',
                      '--skip-indices', '3']) == 1
    assert '--skip-indices' in capsys.readouterr().err
    assert tool.main([src, str(tmp_path / 'y.pth'), '--arch', 't', '--skip-indices', '3']) == 1
    assert 'shape mismatches' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'x.pth') and not osp.exists(tmp_path / 'y.pth')


@pytest.mark.e2e
def test_command_lines_retrofit_then_analyse(tmp_path):
    """Both tools as users run them: retrofit a ViT into a SkipAt checkpoint, then analyse a ViT config."""
    from tools_helpers import run_tool
    src, dst = str(tmp_path / 'vit.pth'), str(tmp_path / 'skipat.pth')
    torch.save({'state_dict': _vit().state_dict()}, src)
    spec = 'SkipAtViT:arch=dict(embed_dims=16,num_layers=4,num_heads=2,feedforward_channels=32),img_size=32'
    proc = run_tool(['model_converters/vit2skipat.py', src, dst, '--model', spec, '--skip-indices', '1', '2'])
    assert 'dropped the attention of the skipped blocks (12 keys)' in proc.stdout
    state = torch.load(dst, weights_only=True)['state_dict']
    build_from_spec(spec + ',skip_indices=(1,2)', device='cpu').load_state_dict(state, strict=True)

    config, ckpt = _cls_setup(tmp_path, skip=())
    proc = run_tool(['analysis/layer_correlation.py', config, ckpt, '--images', str(tmp_path / 'cls' / 'val'),
                     '--num-images', '4', '--out-dir', str(tmp_path / 'out')])
    assert 'suggested skip_indices' in proc.stdout
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'cka_cls_attn.png', 'cka_msa.png', 'cos_cls_attn.png', 'layer_correlation.json']
