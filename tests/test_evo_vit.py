"""Evo-ViT (DeiT) and Evo-LeViT: parity with the official code, official token counts, full-size keys and
parameter counts, dense-prediction order, re-entrancy, float32 scores, training schedule, deploy fusion,
checkpoints and errors."""
import glob
import json
import os.path as osp
import threading
from types import SimpleNamespace

import pytest
import torch
from demo_overrides import ade_demo_config, coco_demo_config, load_tool, logged, train_and_test
from input_cases import assert_bad_batches_refused
from torch import nn

import mmevit
from mmevit.engine.convert import check_state_dict, convert_for_model
from mmevit.engine.hooks.evo_vit_hook import EvoViTScheduleHook
from mmevit.models.backbones import evo_levit, evo_vit
from mmevit.models.backbones.evo_levit import EvoLeViT, convert_official_evo_levit, official_stage_aliases
from mmevit.models.backbones.evo_vit import EvoViT, convert_official_evo_vit
from mmevit.models.heads.evo_levit_head import EvoLeViTClsHead
from mmevit.models.heads.evo_vit_head import EvoViTClsHead
from mmevit.models.layers import LinearBN, cls_attention

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOL = dict(atol=1e-4, rtol=1e-3)
VIT = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=64)
VIT_SCHEDULE = dict(keep_ratios=(1, 1, .5, .5, .5, .5), tradeoffs=(1, 1, .5, .5, .5, .5), selection_layers=(2, 4))
LEVIT = dict(embed_dims=[16, 24, 32], key_dim=8, num_heads=[2, 3, 4], depths=[3, 2, 2])


def tiny_vit(**kwargs) -> EvoViT:
    return EvoViT(VIT, **{**VIT_SCHEDULE, 'img_size': 64, **kwargs})


def tiny_levit(**kwargs) -> EvoLeViT:
    return EvoLeViT(LEVIT, **{'img_size': 64, **kwargs})


def _fixtures(pattern):
    from conftest import FIXTURES
    return sorted(glob.glob(osp.join(FIXTURES, 'evo_vit', pattern))) or ['<missing>']


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize('path', _fixtures('evo_deit_*.pt'), ids=osp.basename)
def test_evo_deit_parity(path):
    assert osp.isfile(path), 'no Evo-DeiT parity fixture found in ../shared/fixtures/evo_vit'
    fx = torch.load(path, weights_only=False)
    model = mmevit.from_official('evo_deit', fx['arch'], fx['state_dict'])
    assert not model.training
    blocks, pre_logits = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o[0])) for b in model.backbone.blocks]
    hooks.append(model.head.fc.register_forward_pre_hook(lambda m, i: pre_logits.append(i[0])))
    with torch.no_grad():
        logits = model(fx['input'])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(logits, fx['output'], **TOL)
    torch.testing.assert_close(pre_logits[0], fx['extra']['pre_logits'], **TOL)
    expected = fx['extra']['block_outputs']
    assert len(blocks) == len(expected) == 12
    for i, (ours, theirs) in enumerate(zip(blocks, expected)):  # sorted order of the kept tokens, too
        torch.testing.assert_close(ours, theirs, **TOL, msg=lambda m: f'block {i}: {m}')


@pytest.mark.parametrize('path', _fixtures('evo_levit_*.pt'), ids=osp.basename)
@pytest.mark.parametrize('fused', [True, False], ids=['sdpa', 'eager'])
def test_evo_levit_parity(path, fused):
    assert osp.isfile(path), 'no Evo-LeViT parity fixture found in ../shared/fixtures/evo_vit'
    fx = torch.load(path, weights_only=False)
    model = mmevit.from_official('evo_levit', fx['arch'], fx['state_dict'])
    for m in model.modules():
        if hasattr(m, 'fused_attn'):
            m.fused_attn = fused
    pooled = []
    model.head.register_forward_pre_hook(lambda m, a: pooled.append(a[0][-1]))
    with torch.no_grad():
        logits = model(fx['input'])
    torch.testing.assert_close(logits, fx['output'], **TOL)
    torch.testing.assert_close(pooled[0], fx['extra']['pooled_tokens'], **TOL)


def test_evo_levit_parity_from_stage_blocks_copy_and_fused(fixtures_dir):
    """The official state dict holds every tensor twice: either copy converts; ``fuse=True`` folds BNs."""
    fx = torch.load(osp.join(fixtures_dir, 'evo_vit', 'evo_levit_tiny_x444_b2.pt'), weights_only=False)
    only_stage = {k: v for k, v in fx['state_dict'].items() if not k.startswith('blocks.')}
    model = mmevit.from_official('evo_levit', dict(fx['arch'], fuse=True), only_stage)
    assert not any(isinstance(m, LinearBN) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(fx['input']), fx['output'], **TOL)


def test_from_official_rejects_unknown_and_unported():
    with pytest.raises(ValueError, match='unknown EvoVisionTransformer kwargs'):
        mmevit.from_official('evo_deit', dict(embed_dim=36, bogus=1), {})
    with pytest.raises(ValueError, match='prunecls'):
        mmevit.from_official('evo_deit', dict(prunecls=True), {})
    with pytest.raises(ValueError, match='always builds 12'):
        mmevit.from_official('evo_deit', dict(depth=6), {})
    with pytest.raises(ValueError, match='unknown Evo-LeViT model_factory kwargs'):
        mmevit.from_official('evo_levit', dict(C='32_48_64', resolution=7), {})


# ---------------------------------------------------------------------------------------------- variants
def _manifest(fixtures_root):
    with open(osp.join(fixtures_root, 'manifests', 'evo_vit.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('variant', ['evo_deit_tiny_patch16_224', 'evo_deit_small_patch16_224',
                                     'evo_deit_base_patch16_224', 'evo_deit_small_patch16_384',
                                     'evo_deit_base_patch16_384'])
def test_evo_deit_full_size_keys_and_params(fixtures_dir, variant):
    """Converted official keys = our backbone keys + the two heads, same shapes, same parameter count."""
    man = _manifest(fixtures_dir)[variant]
    ctor = man['ctor']
    arch = {192: 't', 384: 's', 768: 'b'}[ctor['embed_dim']]
    model = EvoViT(arch, img_size=ctor['img_size'], out_type='avg_featmap', train_cls_token=True, device='meta')
    assert model.keep_ratios == tuple(ctor['prune_ratio']) and model.tradeoffs == tuple(ctor['tradeoff'])
    converted = convert_official_evo_vit({k: torch.empty(s, device='meta') for k, s in man['keys'].items()})
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items() if not k.startswith('head')} == ours
    with torch.device('meta'):
        head = EvoViTClsHead(ctor['num_classes'], model.embed_dims)
    assert sum(p.numel() for p in [*model.parameters(), *head.parameters()]) == man['num_params']


@pytest.mark.parametrize('variant', ['EvoLeViT_128S', 'EvoLeViT_128', 'EvoLeViT_192', 'EvoLeViT_256',
                                     'EvoLeViT_384', 'EvoLeViT_128S_384', 'EvoLeViT_256_384'])
def test_evo_levit_full_size_keys_and_params(fixtures_dir, variant):
    man = _manifest(fixtures_dir)[variant]
    ctor = man['ctor']
    model = EvoLeViT(variant.split('_')[1].lower(), img_size=ctor['img_size'], out_type='avg_featmap',
                     device='meta')
    assert list(model.keep_ratios) == ctor['prune_ratio'][0]
    assert list(model.stage_keep_ratios) == ctor['prune_ratio'][1]
    assert official_stage_aliases(model.depths, model.num_unpruned) == man['module_aliases']
    state, dropped = convert_official_evo_levit({k: torch.empty(s, device='meta') for k, s in man['keys'].items()},
                                                model.depths, model.num_unpruned)
    assert all(k.startswith('stage_blocks.') for k in dropped)
    assert len(dropped) == sum(k.startswith('stage_blocks.') for k in man['keys'])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items() if not k.startswith('head')} == ours
    with torch.device('meta'):
        head = EvoLeViTClsHead(ctor['num_classes'], model.embed_dims[-1])
    assert set(head.state_dict()) == {k for k in man['keys'] if k.startswith('head')}  # same BN_Linear keys
    assert sum(p.numel() for p in [*model.parameters(), *head.parameters()]) == man['num_params']


@pytest.mark.parametrize('name', sorted(set(EvoViT.arch_zoo)))
def test_every_vit_alias_builds(name):
    assert EvoViT(name, device='meta').embed_dims == EvoViT.arch_zoo[name]['embed_dims']


@pytest.mark.parametrize('name', sorted(set(EvoLeViT.arch_zoo)))
def test_every_levit_alias_builds(name):
    assert list(EvoLeViT(name, device='meta').embed_dims) == EvoLeViT.arch_zoo[name]['embed_dims']


# ---------------------------------------------------------------------------------------------- token counts
def _vit_token_counts(model, x):
    counts = []
    hooks = [b.register_forward_pre_hook(lambda m, a: counts.append(a[0].shape[1])) for b in model.blocks]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return counts


@pytest.mark.parametrize('size, full, kept', [(224, 197, 99), (384, 577, 289), (160, 101, 51)])
def test_evo_deit_keeps_official_token_counts(size, full, kept):
    """Official schedule: layers 0-3 see all tokens, 4-11 CLS + int(N / 2); the stage at 8 re-selects from
    all N (it does not compound to N / 4)."""
    model = EvoViT(dict(VIT, num_layers=12), img_size=224).eval()
    assert _vit_token_counts(model, torch.randn(1, 3, size, size)) == [full] * 4 + [kept] * 8


def test_evo_levit_keeps_official_token_counts():
    """Official counts at 224: stage 1 CLS + 196 in the two unpruned layers, then CLS + 98 kept + the
    representative token; stage 2 CLS + 24 + rep (49 patches); stage 3 CLS + 8 + rep (16 patches)."""
    model = EvoLeViT(dict(LEVIT, depths=[4, 4, 4])).eval()
    counts = []
    for stage in model.stages:
        for b in stage.blocks:
            b.register_forward_pre_hook(lambda m, a: counts.append(a[0].shape[1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert counts == [197, 197, 100, 100] + [26] * 4 + [10] * 4


def test_layer_wise_training_selects_at_every_pruned_layer():
    model = tiny_vit()
    model.train()
    assert model.selections() == {2: .5, 4: .5}
    model.set_evo_schedule(stage_wise=False)
    assert model.selections() == {2: .5, 3: .5, 4: .5, 5: .5}
    assert model.selections(training=False) == {2: .5, 4: .5}  # evaluation is always stage-wise
    levit = tiny_levit()
    levit.set_evo_schedule(stage_wise=False, learn_tradeoff=False)
    levit.train()
    groups = [step for step in levit.plan() if step[0] == 'group']
    assert groups == [('group', 0, (2,), .5), ('group', 1, (0,), .5), ('group', 1, (1,), .5),
                      ('group', 2, (0,), .5), ('group', 2, (1,), .5)]
    assert [s for s in levit.plan(training=False) if s[0] == 'group'] == [
        ('group', 0, (2,), .5), ('group', 1, (0, 1), .5), ('group', 2, (0, 1), .5)]


# ---------------------------------------------------------------------------------------------- dense
class _IdentityBlock(nn.Module):
    """Returns its input unchanged (plus ``add``) and a random CLS row, so selections are random."""

    def __init__(self, heads, add=0.):
        super().__init__()
        self.heads, self.add = heads, add
        self.attn = nn.Module()
        self.attn.learn_tradeoff = nn.Parameter(torch.zeros(1))

    def forward(self, x, need_cls_attn=False):
        row = torch.rand(x.shape[0], self.heads, x.shape[1]).softmax(-1) if need_cls_attn else None
        return x + self.add, row


def _vit_embedding(model, x):
    tokens, hw = model.patch_embed(x)
    return (tokens + model._pos_embed(hw)[:, 1:]).transpose(1, 2).reshape(x.shape[0], -1, *hw)


@pytest.mark.parametrize('hw', [(64, 64), (48, 80), (50, 77)])
def test_evo_vit_identity_blocks_return_input_grid(hw):
    model = tiny_vit(out_indices=(1, 3, 5), final_norm=False).eval()
    model.blocks = nn.ModuleList([_IdentityBlock(2) for _ in model.blocks])
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        expected = _vit_embedding(model, x)
        for out in model(x):
            torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_evo_vit_placeholders_keep_their_last_value():
    """Every block adds 1 to the tokens it updates: at the end, kept tokens were updated in every layer of
    each stage, placeholders only while they were kept; nothing is out of place."""
    model = tiny_vit(out_indices=(1, 3, 5), final_norm=False, out_type='raw').eval()
    model.blocks = nn.ModuleList([_IdentityBlock(2, add=1.) for _ in model.blocks])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        base = torch.cat([model.cls_token + model.pos_embed[:, :1], _vit_embedding(model, x).flatten(2).mT], 1)
        outs = model(x)
    counts = [(o - base)[0].round() for o in outs]
    assert torch.all(counts[0] == 2)                     # layers 0-1 update everything
    assert torch.all(counts[2][0] == 6)                  # CLS is always updated
    c1, c2 = counts[1][1:, 0], counts[2][1:, 0]
    assert sorted(c1.unique().tolist()) == [2., 4.] and (c1 == 4).sum() == 8   # 16 patches, keep 8 (layers 2-3)
    assert set(c2.unique().tolist()) <= {2., 4., 6.} and torch.all(c2 - c1 >= 0)
    assert (c2 - c1 == 2).sum() == 8                     # stage 4-5 updates 8 tokens twice
    assert torch.all(counts[2] == counts[2][:, :1])      # every channel alike: tokens stay whole


@pytest.mark.parametrize('hw', [(64, 64), (80, 112), (33, 47)])
def test_evo_levit_identity_blocks_return_input_grid(hw):
    """Identity layers and a downsample that just subsamples the grid: every stage output is the stride-2
    subsampled input embedding, in spatial order (representative token and fast update change nothing)."""
    model = EvoLeViT(dict(LEVIT, embed_dims=[16, 16, 16]), img_size=64).eval()
    for stage in model.stages:
        stage.blocks = nn.ModuleList([_IdentityBlock(2) for _ in stage.blocks])
        if stage.downsample is not None:
            stage.downsample.attn.forward = lambda x, hw, need_cls_attn=False: (
                torch.cat([x[:, :1], evo_levit.subsample_grid(x[:, 1:], hw)], 1),
                torch.rand(x.shape[0], 2, x.shape[1]).softmax(-1) if need_cls_attn else None)
            stage.downsample.mlp = _Zero()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        stem = model.patch_embed(x)
        grid = stem + evo_levit.resample_abs_pos_embed(model.pos_embed, model.pretrain_grids[0], stem.shape[2:],
                                                       1)[:, 1:].mT.reshape(1, *stem.shape[1:])
        outs = model(x)
    assert len(outs) == 3
    for s, out in enumerate(outs):
        torch.testing.assert_close(out, grid[:, :, ::2 ** s, ::2 ** s], rtol=0, atol=0)


class _Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize('hw', [(64, 64), (48, 80), (17, 33)])
def test_featmap_shapes_any_size(hw):
    vit = tiny_vit(out_indices=(0, 3, -1)).eval()
    gh, gw = -(-hw[0] // 16), -(-hw[1] // 16)
    for o in vit(torch.randn(2, 3, *hw)):
        assert o.shape == (2, 32, gh, gw) and torch.isfinite(o).all()
    levit = tiny_levit().eval()
    outs = levit(torch.randn(2, 3, *hw))
    h, w = hw
    for _ in range(4):
        h, w = (h + 1) // 2, (w + 1) // 2
    for s, o in enumerate(outs):
        assert o.shape == (2, LEVIT['embed_dims'][s], h, w) and torch.isfinite(o).all()
        h, w = (h + 1) // 2, (w + 1) // 2


def test_out_types():
    x = torch.randn(2, 3, 64, 64)
    assert tiny_vit(out_type='raw')(x)[0].shape == (2, 17, 32)
    assert tiny_vit(out_type='avg_featmap').eval()(x)[0].shape == (2, 32)
    pooled, cls = tiny_vit(out_type='avg_featmap', train_cls_token=True).train()(x)[0]
    assert pooled.shape == cls.shape == (2, 32)
    assert tiny_levit(out_type='avg_featmap', out_indices=2).eval()(x)[0].shape == (2, 32)
    pooled, cls = tiny_levit(out_type='avg_featmap', out_indices=2, train_cls_token=True).train()(x)[0]
    assert pooled.shape == cls.shape == (2, 32)


def test_early_out_index_stops_the_forward():
    model = tiny_vit(out_indices=(1,)).eval()
    calls = []
    for i, b in enumerate(model.blocks):
        b.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    model(torch.randn(1, 3, 32, 32))
    assert calls == [0, 1]
    assert model.unused_parameters() == {n for n, _ in model.named_parameters()
                                         if n.startswith(('blocks.2', 'blocks.3', 'blocks.4', 'blocks.5',
                                                          'norm.'))}


# ---------------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize('build', [tiny_vit, tiny_levit], ids=['vit', 'levit'])
def test_fused_and_eager_attention_agree(build):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, 3, 64, 80)
    fused = model(x)
    for m in model.modules():
        if hasattr(m, 'fused_attn'):
            m.fused_attn = False
    for a, b in zip(model(x), fused):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_cls_row_alone_equals_full_attention_row():
    q, k = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)
    full = ((q @ k.mT) * 8 ** -0.5).softmax(-1)[:, :, 0]
    torch.testing.assert_close(cls_attention(q[:, :, :1], k, 8 ** -0.5), full)


@pytest.mark.parametrize('module, build', [(evo_vit, tiny_vit), (evo_levit, tiny_levit)], ids=['vit', 'levit'])
def test_scores_and_selection_stay_float32_under_autocast(monkeypatch, module, build):
    seen = []
    original = module.select_tokens

    def spy(scores, k):
        seen.append(scores.dtype)
        return original(scores, k)

    monkeypatch.setattr(module, 'select_tokens', spy)
    model = build().eval()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 64, 64))
    assert seen and all(d == torch.float32 for d in seen)
    assert all(torch.isfinite(o.float()).all() for o in outs)


def test_scores_are_computed_only_where_read():
    """At inference the DeiT schedule reads the CLS row of layers 3-7 only (t = 1 before, no selection after
    layer 8); the last Evo-LeViT stage computes none."""
    model = EvoViT(dict(VIT, num_layers=12)).eval()
    assert model.score_layers(model.selections()) == {3, 4, 5, 6, 7}
    levit = tiny_levit().eval()
    plan = levit.plan()
    need = levit.score_steps(plan)
    assert all(plan[i][1] < 2 or plan[i][0] == 'down' for i in need)
    assert not any(i in need for i, step in enumerate(plan) if step[1] == 2 and step[0] != 'down')


# ---------------------------------------------------------------------------------------------- re-entrancy
@pytest.mark.parametrize('build', [tiny_vit, tiny_levit], ids=['vit', 'levit'])
def test_reentrant_two_models_and_two_threads(build):
    torch.manual_seed(0)
    a, b = build().eval(), build().eval()
    xa, xb = torch.randn(2, 3, 64, 64), torch.randn(3, 3, 48, 80)
    with torch.no_grad():
        alone_a, alone_b = a(xa), b(xb)
        # Interleaved: b runs between a's calls; each gives what it gives alone.
        for _ in range(2):
            for got, want in ((a(xa), alone_a), (b(xb), alone_b)):
                for g, w in zip(got, want):
                    torch.testing.assert_close(g, w, rtol=0, atol=0)
    # One model from two threads at once, on different inputs: each thread gets what a lone call gives.
    with torch.no_grad():
        want = {'t1': a(xa), 't2': a(xb)}
    results, errors = {}, []

    def run(name, x):
        try:
            with torch.no_grad():
                results[name] = [a(x) for _ in range(3)]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n, x)) for n, x in (('t1', xa), ('t2', xb))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, outs in results.items():
        for got in outs:
            for g, w in zip(got, want[name]):
                torch.testing.assert_close(g, w, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- training
def test_unused_parameters_follow_the_mode():
    model = tiny_levit(out_type='avg_featmap', out_indices=2, train_cls_token=True)
    trade = {n for n, _ in model.named_parameters() if n.endswith('learn_tradeoff')}
    model.train()
    model.set_evo_schedule(stage_wise=True, learn_tradeoff=False)
    assert model.unused_parameters() == trade        # fixed trade-off: none is used
    model.set_evo_schedule(learn_tradeoff=True)
    used = trade - model.unused_parameters()
    assert 'stages.0.blocks.0.attn.learn_tradeoff' not in used  # the first attention sets g = a
    assert 'stages.1.downsample.attn.learn_tradeoff' in used and 'stages.2.blocks.0.attn.learn_tradeoff' not in used
    # ... and exactly the declared ones get no gradient
    pooled, cls = model(torch.randn(2, 3, 64, 64))[0]
    (pooled.pow(2).mean() + cls.pow(2).mean()).backward()
    assert {n for n, p in model.named_parameters() if p.grad is None} == model.unused_parameters()
    vit = tiny_vit(out_type='avg_featmap', train_cls_token=True)
    assert vit.unused_parameters(training=False) == {'norm_cls.weight', 'norm_cls.bias'}
    assert vit.unused_parameters(training=True) == set()


def test_schedule_hook_switches_every_evo_module():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.other = tiny_levit(), tiny_vit()

    model = Wrapper()
    runner = SimpleNamespace(model=model, epoch=0, iter=0)
    hook = EvoViTScheduleHook(switch_epoch=2)
    hook.before_train(runner)
    assert (model.backbone.stage_wise, model.backbone.learn_tradeoff, model.other.stage_wise) == (False, False, False)
    runner.epoch = 2
    hook.before_train_epoch(runner)
    assert (model.backbone.stage_wise, model.backbone.learn_tradeoff, model.other.stage_wise) == (True, True, True)
    by_iter = EvoViTScheduleHook(switch_iter=5)
    runner.iter = 4
    by_iter.before_train_iter(runner, 4)
    assert not model.backbone.stage_wise
    runner.iter = 5
    by_iter.before_train_iter(runner, 5)
    assert model.backbone.stage_wise
    with pytest.raises(ValueError, match='exactly one'):
        EvoViTScheduleHook()
    with pytest.raises(RuntimeError, match='no Evo-ViT module'):
        EvoViTScheduleHook(switch_epoch=0).before_train(SimpleNamespace(model=nn.Linear(2, 2), epoch=0, iter=0))
    from mmevit.registry import HOOKS
    assert HOOKS.get('EvoViTScheduleHook') is EvoViTScheduleHook


def test_layer_wise_training_backpropagates():
    model = tiny_levit(drop_path_rate=0.1)
    model.set_evo_schedule(stage_wise=False, learn_tradeoff=False)
    model.train()
    sum(o.pow(2).mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None}
    assert missing == model.unused_parameters()


def _samples(labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(int(y)) for y in labels]


def test_heads_official_losses_and_inference():
    torch.manual_seed(0)
    pooled, cls = torch.randn(4, 16), torch.randn(4, 16)
    head = EvoViTClsHead(num_classes=5, in_channels=16).train()
    losses = head.loss(([pooled, cls],), _samples([0, 1, 2, 3]))
    ce = nn.functional.cross_entropy
    y = torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(losses['loss'] + losses['loss_cls'],
                               0.5 * ce(head.fc(pooled), y) + 0.5 * ce(head.fc_cls(cls), y))
    head.eval()
    torch.testing.assert_close(head((pooled,)), head.fc(pooled))
    lhead = EvoLeViTClsHead(num_classes=5, in_channels=16).train()
    losses = lhead.loss(([pooled, cls],), _samples([0, 1, 2, 3]))
    assert set(losses) >= {'loss', 'loss_dist'}
    lhead.eval()
    torch.testing.assert_close(lhead((pooled,)), (lhead.head(pooled) + lhead.head_dist(pooled)) / 2)
    with pytest.raises(ValueError, match='train_cls_token=True'):
        head.loss((pooled,), _samples([0, 1, 2, 3]))


def test_deploy_fusion_keeps_outputs():
    torch.manual_seed(0)
    model = tiny_levit(out_type='avg_featmap', out_indices=2)
    head = EvoLeViTClsHead(num_classes=5, in_channels=32)
    # Non-trivial BatchNorm statistics and affines (the zero-initialised BNs would hide errors).
    for m in [*model.modules(), *head.modules()]:
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_()
            m.bias.data.normal_()
    model.eval(), head.eval()
    x = torch.randn(2, 3, 80, 64)
    with torch.no_grad():
        before = head(model(x))
        model.switch_to_deploy()
        head.switch_to_deploy()
        after = head(model(x))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in [*model.modules(), *head.modules()])
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    # A deploy model built directly has the fused keys and loads the fused state strictly.
    fresh = tiny_levit(out_type='avg_featmap', out_indices=2, deploy=True).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(head(fresh(x)), after)


# ---------------------------------------------------------------------------------------------- checkpoints
def _official_evo_deit_state(model: EvoViT) -> dict:
    """Our weights in the official EvoVisionTransformer layout (qk and v split, norms/projs outside)."""
    sd, d = {}, model.embed_dims
    for k, v in model.state_dict().items():
        if k.startswith('blocks.'):
            i, rest = k[len('blocks.'):].split('.', 1)
            if rest.startswith('norm1.'):
                sd[f'norms.{i}.' + rest[6:]] = v
                continue
            if rest.startswith('attn.qkv.'):
                p = rest[len('attn.qkv.'):]
                sd[f'qks.{i}.qk.{p}'], sd[f'vs.{i}.v.{p}'] = v[:2 * d], v[2 * d:]
                continue
            if rest.startswith('attn.proj.'):
                sd[f'projs.{i}.' + rest[len('attn.proj.'):]] = v
                continue
        sd[k] = v
    sd.update({'head.weight': torch.randn(5, d), 'head.bias': torch.randn(5),
               'head_cls.weight': torch.randn(5, d), 'head_cls.bias': torch.randn(5)})
    return sd


def test_init_cfg_loads_official_evo_vit_checkpoint(tmp_path):
    src = tiny_vit(out_type='avg_featmap', train_cls_token=True)
    path = tmp_path / 'evo_deit.pth'
    torch.save({'model': _official_evo_deit_state(src), 'epoch': 299}, path)
    dst = tiny_vit(out_type='avg_featmap', train_cls_token=True,
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0, msg=k)
    # The whole classifier (backbone + both heads) converts strictly through the generic path.
    from mmevit.official import build_classifier
    clf = build_classifier(dict(type='EvoViT', arch=VIT, img_size=64, out_type='avg_featmap', train_cls_token=True,
                                **VIT_SCHEDULE),
                           dict(type='EvoViTClsHead', num_classes=5, in_channels=32),
                           torch.load(path, weights_only=True)['model'])
    assert clf.head.fc_cls.weight.shape == (5, 32)


def test_plain_and_distilled_deit_checkpoints_initialise_evo_vit():
    """A timm DeiT checkpoint is our layout; ``norm_cls`` starts from ``norm``; a distilled DeiT drops its
    distillation token and position row; an mmpretrain ViT is renamed."""
    plain = EvoViT(VIT, img_size=64, keep_ratios=[1] * 6, tradeoffs=[1] * 6)  # a DeiT
    sd = dict(plain.state_dict())
    model = tiny_vit(out_type='avg_featmap', train_cls_token=True)
    state, dropped = model.convert_state_dict(sd)
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.norm_cls.weight, plain.norm.weight)
    distilled = dict(sd, dist_token=torch.randn(1, 1, 32),
                     pos_embed=torch.cat([sd['pos_embed'][:, :1], torch.randn(1, 1, 32), sd['pos_embed'][:, 1:]], 1))
    state, dropped = model.convert_state_dict(distilled)
    assert 'dist_token' in dropped
    torch.testing.assert_close(state['pos_embed'], sd['pos_embed'])
    mmpre = {}
    for k, v in sd.items():
        k = (k.replace('blocks.', 'layers.').replace('norm1', 'ln1').replace('norm2', 'ln2')
             .replace('mlp.fc1', 'ffn.layers.0.0').replace('mlp.fc2', 'ffn.layers.1')
             .replace('patch_embed.proj', 'patch_embed.projection'))
        mmpre['ln1.' + k[5:] if k.startswith('norm.') else k] = v
    state, _ = plain.convert_state_dict(mmpre)
    plain.load_state_dict(state, strict=True)
    with pytest.raises(KeyError, match='unrecognised'):
        model.convert_state_dict({'foo.weight': torch.zeros(1)})


def test_pos_embed_resized_on_load():
    src, dst = tiny_vit(img_size=64), tiny_vit(img_size=96)
    dst.load_state_dict(src.state_dict())
    assert dst.pos_embed.shape == (1, 37, 32)
    lsrc, ldst = tiny_levit(img_size=64), tiny_levit(img_size=128)
    ldst.load_state_dict(lsrc.state_dict())
    assert ldst.pos_embed.shape == (1, 65, 16)  # 128: 8x8 stem grid; the downsamples embed 8x8, 4x4
    assert ldst.stages[1].downsample.attn.pos_embed.shape == (1, 65, 16)
    assert ldst.stages[2].downsample.attn.pos_embed.shape == (1, 17, 24)


def test_official_evo_levit_checkpoint_file_and_segmentor(tmp_path, fixtures_dir):
    """An official checkpoint file loads through init_cfg and through the generic converter into a
    segmentor-like model (backbone keys prefixed, classifier heads dropped)."""
    fx = torch.load(osp.join(fixtures_dir, 'evo_vit', 'evo_levit_tiny_x222_b2.pt'), weights_only=False)
    path = tmp_path / 'evo_levit.pth'
    torch.save({'model': fx['state_dict']}, path)
    arch = dict(embed_dims=[32, 48, 64], key_dim=8, num_heads=[2, 3, 4], depths=[2, 2, 2])
    model = EvoLeViT(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.stages[1].downsample.attn.pos_embed, fx['state_dict']['blocks.2.poss'])

    class Segmentor(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = EvoLeViT(arch, img_size=320)
            self.decode = nn.Conv2d(64, 3, 1)

    seg = Segmentor()
    state, dropped = convert_for_model({'model': fx['state_dict']}, seg)
    assert any(k.startswith('head_cls.') for k in dropped) and any(k.startswith('stage_blocks.') for k in dropped)
    check_state_dict(state, seg, allow_missing=True)
    assert state['backbone.pos_embed'].shape == (1, 401, 32)  # resized to the 20x20 grid of 320x320


def test_converter_cli_writes_a_strict_checkpoint_for_a_config(tmp_path, fixtures_dir):
    """tools/model_converters/convert.py converts an official Evo-LeViT file for the ImageNet config's classifier
    (backbone + the four BN_Linear heads), strictly; the result reproduces the official logits."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('evo_convert_cli', osp.join(REPO, 'tools', 'model_converters',
                                                                              'convert.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    fx = torch.load(osp.join(fixtures_dir, 'evo_vit', 'evo_levit_tiny_x444_b2.pt'), weights_only=False)
    src, dst = tmp_path / 'EvoLeViT_tiny.pth', tmp_path / 'converted.pth'
    torch.save({'model': fx['state_dict']}, src)
    cfg = tmp_path / 'evo_levit_tiny.py'
    cfg.write_text(f"_base_ = {osp.join(REPO, 'configs', 'imagenet', 'evo_levit_256.py')!r}\n"
                   "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=[32, 48, 64], key_dim=8, "
                   "num_heads=[2, 3, 4], depths=[4, 4, 4])), head=dict(num_classes=10, in_channels=64))\n")
    assert cli.main([str(src), str(dst), '--config', str(cfg)]) == 0
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model_cfg = Config.fromfile(str(cfg)).model
        model_cfg.pop('train_cfg')
        model = PRETRAIN_MODELS.build(model_cfg).eval()
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(fx['input']), fx['output'], **TOL)


def test_frozen_stages():
    vit = tiny_vit(frozen_stages=2).train()
    assert not vit.pos_embed.requires_grad and not vit.cls_token.requires_grad
    for i, blk in enumerate(vit.blocks):
        assert all(p.requires_grad == (i >= 2) for p in blk.parameters()) and blk.training == (i >= 2)
    levit = tiny_levit(frozen_stages=1).train()
    assert not any(p.requires_grad for p in levit.patch_embed.parameters()) and not levit.patch_embed.training
    assert not any(p.requires_grad for p in levit.stages[0].parameters())
    assert all(p.requires_grad for p in levit.stages[1].parameters()) and levit.stages[1].training
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny_levit(frozen_stages=4)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize('kwargs, err, match', [
    (dict(keep_ratios=(1, .5, .5)), ValueError, 'keep_ratios must be a sequence of 6'),
    (dict(keep_ratios=(1, 1, .5, 1, .5, .5)), ValueError, 'once pruning starts'),
    (dict(keep_ratios=(.5,) * 6, selection_layers=(0, 3)), ValueError, 'layer 0 cannot be pruned'),
    (dict(keep_ratios=(1, 1, .5, .5, .25, .25), selection_layers=(2, 3)), ValueError, 'equal within a stage'),
    (dict(selection_layers=(3,)), ValueError, 'first selection layer'),
    (dict(keep_ratios=(1, 1, .5, .5, 0, .5)), ValueError, r'keep_ratios entries must lie in \(0'),
    (dict(tradeoffs=(1, 1, 2, .5, .5, .5)), ValueError, 'tradeoffs entries'),
    (dict(out_type='cls_token'), ValueError, 'out_type'),
    (dict(train_cls_token=True), ValueError, 'train_cls_token=True needs'),
    (dict(out_indices=(6,)), ValueError, 'out of range'),
    (dict(arch=dict(VIT, num_heads=5)), ValueError, 'divisible'),
    # the SkipAt-ViT list, for Evo-ViT
    (dict(out_indices=2.0), TypeError, 'out_indices'),
    (dict(out_indices='2'), TypeError, 'out_indices'),
    (dict(out_indices=(3, 3)), ValueError, 'out_indices must be unique'),
    (dict(out_indices=(3, 1)), ValueError, 'increasing'),
    (dict(arch=dict(VIT, num_heads=0)), ValueError, r"arch\['num_heads'\] must be >= 1"),
    (dict(arch=dict(VIT, embed_dims='32')), TypeError, r"arch\['embed_dims'\] must be an int"),
    (dict(arch=dict(VIT, feedforward_channels=-4)), ValueError, 'feedforward_channels'),
    (dict(arch=dict(VIT, depth=6)), ValueError, "unknown arch keys.*'depth'"),
    (dict(patch_size=0), ValueError, 'patch_size must be >= 1'),
    (dict(patch_size=16.0), TypeError, 'patch_size must be an int'),
    (dict(img_size=8), ValueError, r'img_size must be .* >= patch_size \(16\)'),
    (dict(img_size=64.0), TypeError, 'img_size must be an int or a pair'),
    (dict(in_channels='3'), TypeError, 'in_channels must be an int'),
    (dict(keep_ratios='111111'), ValueError, 'keep_ratios must be a sequence'),
    (dict(keep_ratios=(1, 1, 1.5, .5, .5, .5)), ValueError, 'keep_ratios entries'),
    (dict(tradeoffs=(1, 1)), ValueError, 'tradeoffs must be a sequence of 6'),
    (dict(selection_layers=(2.0, 4)), TypeError, 'selection_layers entry must be an int'),
    (dict(selection_layers='24'), TypeError, 'selection_layers must be a sequence'),
    (dict(selection_layers=(4, 2)), ValueError, 'selection_layers must be increasing'),
    (dict(selection_layers=(2, 2, 4)), ValueError, 'selection_layers must be increasing and unique'),
    (dict(selection_layers=(2, 9)), ValueError, 'out of range'),
    (dict(keep_ratios=(1,) * 6, selection_layers=(2,)), ValueError, 'nothing is pruned'),
    (dict(frozen_stages=1.5), ValueError, 'frozen_stages'),
    (dict(frozen_stages='1'), ValueError, 'frozen_stages'),
    (dict(frozen_stages=7), ValueError, 'frozen_stages'),
    (dict(drop_path_rate=-0.1), ValueError, 'drop_path_rate'),
    (dict(drop_rate=1.5), ValueError, 'drop_rate'),
    (dict(norm_eps='1e-6'), TypeError, 'norm_eps'),
    (dict(interpolate_mode='area'), ValueError, 'interpolate_mode'),
    (dict(stage_wise='no'), TypeError, 'stage_wise must be True or False'),
])
def test_bad_vit_arguments_are_named(kwargs, err, match):
    with pytest.raises(err, match=match):
        if 'arch' in kwargs:
            EvoViT(kwargs.pop('arch'), **dict(VIT_SCHEDULE, **kwargs))
        else:
            tiny_vit(**{**VIT_SCHEDULE, **kwargs})
    with pytest.raises(ValueError, match='default keep_ratios'):
        EvoViT(VIT)


@pytest.mark.parametrize('kwargs, err, match', [
    (dict(keep_ratios=[.5] * 7), ValueError, 'first layer cannot be pruned'),
    (dict(keep_ratios=[1, .5, 1, .5, .5, .5, .5]), ValueError, 'must come first'),
    (dict(stage_keep_ratios=[.5, 1, .5]), ValueError, 'stage_keep_ratios must be < 1'),
    (dict(arch=dict(LEVIT, depths=[3, 2])), ValueError, 'one entry per stage'),
    (dict(arch=dict(LEVIT, embed_dims=[16, 20, 32])), ValueError, 'divisible by key_dim'),
    (dict(arch=dict(LEVIT, resolution=7)), ValueError, 'unknown arch keys'),
    (dict(out_indices=(3,)), ValueError, 'out of range'),
    (dict(drop_path_rate=1.5), ValueError, 'drop_path_rate'),
    # the SkipAt-ViT list, for Evo-LeViT
    (dict(out_indices=2.0), TypeError, 'out_indices'),
    (dict(out_indices='2'), TypeError, 'out_indices'),
    (dict(out_indices=(1, 1)), ValueError, 'out_indices must be unique'),
    (dict(out_indices=(2, 1)), ValueError, 'increasing'),
    (dict(arch=dict(LEVIT, key_dim=0)), ValueError, r"arch\['key_dim'\] must be >= 1"),
    (dict(arch=dict(LEVIT, key_dim='8')), TypeError, r"arch\['key_dim'\] must be an int"),
    (dict(arch=dict(LEVIT, num_heads=[2, 0, 4])), ValueError, r"arch\['num_heads'\] entry must be >= 1"),
    (dict(arch=dict(LEVIT, embed_dims=[-16, 24, 32])), ValueError, 'embed_dims'),
    (dict(arch=dict(LEVIT, embed_dims=[16.0, 24, 32])), TypeError, 'embed_dims'),
    (dict(arch=dict(LEVIT, drop_path_rate='0.1')), TypeError, 'drop_path_rate must be a number'),
    (dict(arch='999'), ValueError, 'not in default archs'),
    (dict(img_size=64.0), TypeError, 'img_size must be an int or a pair'),
    (dict(img_size=0), ValueError, 'img_size must be >= 1'),
    (dict(in_channels=0), ValueError, 'in_channels must be >= 1'),
    (dict(keep_ratios='1'), ValueError, 'keep_ratios must be a sequence of 7'),
    (dict(keep_ratios=[1, 1, 0, .5, .5, .5, .5]), ValueError, 'keep_ratios entries'),
    (dict(stage_keep_ratios='555'), ValueError, 'stage_keep_ratios must be a sequence of 3'),
    (dict(attn_ratio=0), ValueError, 'attn_ratio'),
    (dict(attn_ratio=0.01), ValueError, 'attn_ratio.*hidden width'),
    (dict(mlp_ratio='2'), TypeError, 'mlp_ratio must be a number'),
    (dict(down_mlp_ratio=-1), ValueError, 'down_mlp_ratio'),
    (dict(frozen_stages=1.5), ValueError, 'frozen_stages'),
    (dict(frozen_stages=-2), ValueError, 'frozen_stages'),
    (dict(deploy='yes'), TypeError, 'deploy must be True or False'),
    (dict(train_cls_token=True), ValueError, 'train_cls_token=True needs'),
])
def test_bad_levit_arguments_are_named(kwargs, err, match):
    arch = kwargs.pop('arch', LEVIT)
    with pytest.raises(err, match=match):
        EvoLeViT(arch, **{'img_size': 64, **kwargs})


@pytest.mark.parametrize('family', ['vit', 'levit'])
def test_bad_inputs_are_named(family):
    model = (tiny_vit() if family == 'vit' else tiny_levit()).eval()
    assert_bad_batches_refused(model)
    with torch.no_grad():
        # An empty batch works (Evo-LeViT's attention reshapes name every size); sides that are not multiples of
        # the stride are padded (ViT: corner padding) or rounded up (LeViT: stride-2 convs), ceil(side / stride).
        channels = [VIT['embed_dims']] if family == 'vit' else LEVIT['embed_dims']
        for B, H, W in ((0, 32, 48), (1, 17, 33), (2, 3, 5)):
            outs = model(torch.zeros(B, 3, H, W))
            assert [tuple(o.shape) for o in outs] == [(B, c, -(-H // (16 * 2 ** i)), -(-W // (16 * 2 ** i)))
                                                      for i, c in enumerate(channels)]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(torch.rand(1, 3, 32, 32, dtype=torch.bfloat16))[-1]
        assert torch.isfinite(out.float()).all()


# ---------------------------------------------------------------------------------------------- configs, end to end
def _make_imagenet_layout(root, per_class=(4, 2)):
    """A two-class ImageNet-style folder set (train/<class>/*.JPEG, val/<class>/*.JPEG): class 'b' is brighter."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in zip(('train', 'val'), per_class):
        for c, base in (('a', 40), ('b', 200)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(base + rng.normal(0, 30, (48, 56, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f'{c}_{i}.JPEG')


TINY_IMAGENET = '''
_base_ = {base!r}
# The config's recipe on a two-class ImageNet-layout folder set: 64-px crops, batch 2, two epochs with the
# layer-to-stage switch after the first, then validation.
data_root = {data_root!r}
model = dict(head=dict(num_classes=2, topk=(1, )), data_preprocessor=dict(num_classes=2))
data_preprocessor = dict(num_classes=2)
_data = dict(_delete_=True, type='CustomDataset', data_root=data_root, metainfo=dict(classes=('a', 'b')))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    **_data, data_prefix='train', pipeline=[dict(type='LoadImageFromFile'),
                                            dict(type='RandomResizedCrop', scale=64, backend='pillow'),
                                            dict(type='PackInputs')]))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    **_data, data_prefix='val', pipeline=[dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=64),
                                          dict(type='CenterCrop', crop_size=64), dict(type='PackInputs')]))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
custom_hooks = [dict(type='mmevit.EvoViTScheduleHook', switch_epoch=1)]
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=2)]
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1))
'''


@pytest.mark.e2e
@pytest.mark.parametrize('config', ['evo_vit_t', 'evo_levit_128s'])
def test_imagenet_config_trains_switches_schedule_and_tests(tmp_path, config):
    """tools/train.py trains the ImageNet config two epochs (layer-wise, then stage-wise with the learned
    trade-off) on a tiny ImageNet-layout set; tools/test.py reports top-1 for the checkpoint."""
    import math
    import re
    _make_imagenet_layout(tmp_path / 'imagenet')
    cfg = tmp_path / f'{config}_demo.py'
    cfg.write_text(TINY_IMAGENET.format(base=osp.join(REPO, 'configs', 'imagenet', f'{config}.py'),
                                        data_root=str(tmp_path / 'imagenet')))
    work = tmp_path / 'work'
    load_tool('train').main([str(cfg), '--work-dir', str(work)])
    log = logged(work)
    assert 'epoch 0: layer-wise pruning, fixed trade-off' in log and 'epoch 1: stage-wise pruning' in log, log[-2000:]
    losses = [float(v) for v in re.findall(r'Epoch\(train\) +\[\d\]\[\d/\d\].*?\bloss: ([0-9.]+)', log)]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses), log[-2000:]
    metrics = load_tool('test').main([str(cfg), str(work / 'epoch_2.pth'), '--work-dir', str(tmp_path / 'test')])
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0, metrics


@pytest.mark.e2e
@pytest.mark.parametrize('config', ['evo_vit_s_upernet', 'evo_levit_256_upernet'])
def test_ade20k_config_trains_and_tests_on_demo_ade20k(tmp_path, config):
    from mmevit.datasets import make_demo_data
    data_root = str(tmp_path / 'ade')
    make_demo_data('ade20k', data_root, num_train=4, num_val=2, seed=0)
    log, metrics = train_and_test(ade_demo_config(config, data_root, 'upernet'), tmp_path, f'{config}_demo',
                                  'iter_2.pth')
    assert 'decode.loss_ce:' in log
    assert 0.0 <= metrics['mIoU'] <= 100.0, metrics


@pytest.mark.e2e
def test_coco_retinanet_config_trains_and_tests_on_demo_coco(tmp_path):
    import math
    import re
    from mmevit.datasets import make_demo_data
    data_root = str(tmp_path / 'coco')
    make_demo_data('coco', data_root, num_train=4, num_val=2, seed=0)
    log, metrics = train_and_test(coco_demo_config('evo_vit_s_retinanet_1x', data_root, 'retinanet'), tmp_path,
                                  'evo_vit_s_retinanet_demo', 'epoch_1.pth')
    losses = [float(v) for v in re.findall(r'Epoch\(train\) \[1\]\[\d/2\].*?\bloss: ([0-9.]+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), log[-2000:]
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, metrics
