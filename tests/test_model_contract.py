"""The model contract of every mmevit network (issue 12), on the tiny configurations of the registry sweep
(``test_registry_sweep.SMALL_KWARGS`` / ``INPUTS``), and on the meta device at full size:

- gradient checkpointing (``with_cp=True``) recomputes the blocks in the backward and gives the same outputs,
  gradients and buffers as without, in training mode with dropout and drop path;
- train/eval switching: eval outputs are deterministic and depend only on the state dict;
- ``torch.jit.trace`` and ``torch.export.export`` work and match eager, also on an input they were not traced
  with (every network traces and exports: none has a documented exception);
- bf16 autocast on CPU runs, stays finite and close to float32;
- a state dict saved with ``torch.save`` and loaded (``weights_only=True``) into a model built with another seed
  reproduces the model exactly;
- every ``arch_zoo`` entry runs a forward on the meta device at the paper's input size with the right shapes.
"""
import copy
import io

import pytest
import torch
from mmengine.registry import DefaultScope
from test_registry_sweep import INPUTS, SMALL_KWARGS

from mmevit.models.backbones.evo_levit import EvoLeViT
from mmevit.models.backbones.evo_vit import EvoViT
from mmevit.models.backbones.lit import LIT
from mmevit.models.backbones.skipat_vit import SkipAtViT
from mmevit.models.denoisers.uformer import Uformer
from mmevit.models.denoisers.uniformer_denoiser import UniFormerDenoiser
from mmevit.registry import MODELS

NETWORKS = ['SkipAtViT', 'LIT', 'EvoViT', 'EvoLeViT', 'Uformer', 'UniFormerDenoiser']
WRAPPERS = ['Denoiser', 'VideoDenoiser']  # mmengine models around a network (``generator``)
DENOISERS = {'Uformer', 'UniFormerDenoiser', 'Denoiser', 'VideoDenoiser'}  # output = input + residual

# Regularisation on top of the sweep's tiny kwargs for the checkpointing test: every dropout the family has, so
# that the recomputation must redraw the same masks.
DROPOUT = {
    'SkipAtViT': dict(drop_rate=0.1, attn_drop_rate=0.1),
    'LIT': dict(drop_rate=0.1, attn_drop_rate=0.1),
    'EvoViT': dict(drop_rate=0.1, attn_drop_rate=0.1),
    'EvoLeViT': dict(),  # drop path only (LeViT has no dropout)
    'Uformer': dict(drop_rate=0.1, attn_drop_rate=0.1),
    'UniFormerDenoiser': dict(drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.1),
}


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """One intra-op thread: on these tiny models thread synchronisation dominates, and on a shared 2-core
    machine two OpenMP threads made this file up to 10x slower (measured: the checkpointing sweep 30 s vs 3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """The sweep's tiny ``name`` (for a wrapper: ``overrides`` go to its generator), built after
    ``torch.manual_seed(seed)``."""
    kwargs = copy.deepcopy(SMALL_KWARGS[name])
    if name in WRAPPERS:
        kwargs['generator'].update(overrides)
    else:
        kwargs.update(overrides)
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmevit'):
        return MODELS.build(dict(type=name, **kwargs))


def make_input(name: str, seed: int = 123) -> torch.Tensor:
    torch.manual_seed(seed)
    return INPUTS[name]()


def flat(outs) -> list:
    """The tensors of a (nested) tuple/list of outputs, in order."""
    if isinstance(outs, torch.Tensor):
        return [outs]
    return [t for o in outs for t in flat(o)]


def generator_of(model: torch.nn.Module) -> torch.nn.Module:
    return model.generator if hasattr(model, 'generator') else model


# ---------------------------------------------------------------------------------------------- with_cp
@pytest.mark.parametrize('name', NETWORKS + WRAPPERS)
def test_with_cp_same_outputs_gradients_and_buffers(name):
    """with_cp=True vs False, same weights and RNG seed, training mode with dropout and drop path: the same
    outputs and gradients (and, with Evo-LeViT's BatchNorms, the same running statistics afterwards), and the
    checkpointed model really recomputes its blocks during the backward."""
    generator = name if name not in WRAPPERS else SMALL_KWARGS[name]['generator']['type']
    check_with_cp(name, **DROPOUT[generator])


@pytest.mark.parametrize('name,schedule', [('EvoViT', dict(stage_wise=False)),
                                           ('EvoLeViT', dict(stage_wise=False, learn_tradeoff=False))])
def test_with_cp_evo_layer_wise_training(name, schedule):
    """The same on Evo-ViT's other training path (the official first phase: a selection before every pruned
    layer, fixed trade-off)."""
    check_with_cp(name, **DROPOUT[name], **schedule)


def check_with_cp(name: str, **extra) -> None:
    ref, cp = build(name, **extra), build(name, with_cp=True, **extra)
    assert generator_of(cp).with_cp and not generator_of(ref).with_cp
    cp.load_state_dict(ref.state_dict())
    x = make_input(name)
    results = []
    for model in (ref, cp):
        model.train()
        calls = {'backward': 0}
        phase = ['forward']

        def count(module, args, output):
            if phase[0] == 'backward':
                calls['backward'] += 1

        hooks = [m.register_forward_hook(count) for m in model.modules()]
        torch.manual_seed(7)  # the same dropout / drop-path draws in both runs
        outs = flat(model(x))
        loss = sum((o.float() * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs)
        phase[0] = 'backward'
        loss.backward()
        for h in hooks:
            h.remove()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((outs, grads, dict(model.named_buffers()), calls['backward']))
    (ref_outs, ref_grads, ref_bufs, ref_calls), (cp_outs, cp_grads, cp_bufs, cp_calls) = results
    assert ref_calls == 0 and cp_calls > 0, 'with_cp=True must recompute blocks in the backward'
    # The checkpointed forward is the same computation (nothing is recomputed yet): bit-identical. The gradients
    # come from recomputed activations: bit-identical on the CPU too (measured), asserted to 1e-6.
    assert len(ref_outs) == len(cp_outs) and all(torch.equal(a, b) for a, b in zip(ref_outs, cp_outs))
    assert {n for n, g in ref_grads.items() if g is None} == {n for n, g in cp_grads.items() if g is None}
    assert any(g is not None for g in ref_grads.values())
    for n, g in ref_grads.items():
        if g is not None:
            torch.testing.assert_close(cp_grads[n], g, rtol=0, atol=1e-6, msg=lambda m: f'{name} grad {n}: {m}')
    for n, b in ref_bufs.items():
        assert torch.equal(cp_bufs[n], b), f'{name}: buffer {n} differs after a checkpointed training step'


@pytest.mark.parametrize('name', NETWORKS)
def test_with_cp_is_off_in_eval_and_without_grad(name, monkeypatch):
    """Checkpointing is a training-time option: in eval mode, or under no_grad, nothing is checkpointed."""
    from mmevit.models.layers import grad_checkpoint
    calls = []
    original = grad_checkpoint.checkpoint
    monkeypatch.setattr(grad_checkpoint, 'checkpoint', lambda *a, **k: calls.append(1) or original(*a, **k))
    model = build(name, with_cp=True)
    x = make_input(name)
    model.eval()
    flat(model(x))[0].sum().backward()
    model.train()
    with torch.no_grad():
        model(x)
    assert not calls
    model(x)
    assert calls


# ---------------------------------------------------------------------------------------------- train / eval
@pytest.mark.parametrize('name', NETWORKS + WRAPPERS)
def test_train_eval_switch(name):
    """eval() reaches every submodule and makes the forward deterministic; train() reaches every submodule; the
    eval output after a training-mode forward and a return to eval depends only on the state dict (LIT's DTM and
    Evo-LeViT's BatchNorms update their running statistics in training: restoring the state dict restores the
    output exactly)."""
    extra = {'VideoDenoiser': dict(drop_path_rate=0.1)}.get(name, {})  # its sweep generator has no drop path
    model = build(name, **extra)
    x = make_input(name)
    model.eval()
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        first = flat(model(x))
        second = flat(model(x))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    state = copy.deepcopy(model.state_dict())
    model.train()
    assert all(m.training for m in model.modules())
    with torch.no_grad():
        train_out = flat(model(x))
    # Training mode is really different (drop path / dropout on, batch statistics).
    assert not all(torch.equal(a, b) for a, b in zip(first, train_out))
    model.eval()
    model.load_state_dict(state)
    with torch.no_grad():
        again = flat(model(x))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


# ---------------------------------------------------------------------------------------------- tracing
@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')  # shape arithmetic baked in: fixed input size
@pytest.mark.parametrize('name', NETWORKS + WRAPPERS)
def test_jit_trace_matches_eager(name):
    """``torch.jit.trace`` in eval mode (with ``check_trace``) gives eager's outputs, also on an input it was
    not traced with (data-dependent parts such as Evo-ViT's token selection are traced as ops, not baked in)."""
    model = build(name).eval()
    x, x2 = make_input(name), make_input(name, seed=321)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=True, strict=False)
        for inp in (x, x2):
            ref, out = flat(model(inp)), flat(traced(inp))
            assert len(ref) == len(out)
            for a, b in zip(ref, out):
                torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', NETWORKS)
def test_torch_export_matches_eager(name):
    """``torch.export.export`` (non-strict, static shapes) gives eager's outputs on a fresh input, and leaves the
    eager model intact (Uformer's index caches once kept the fake tensors export runs on)."""
    model = build(name).eval()
    x, x2 = make_input(name), make_input(name, seed=321)
    with torch.no_grad():
        before = flat(model(x2))
        exported = torch.export.export(model, (x,), strict=False).module()
        after, out = flat(model(x2)), flat(exported(x2))
    assert len(before) == len(after) == len(out)
    for a, b, c in zip(before, after, out):
        assert type(b) is torch.Tensor and torch.equal(a, b)
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- bf16 autocast
# Relative error ||bf16 - fp32|| / ||fp32|| of the outputs (of the restored residual, output - input, for the
# denoisers, whose output is dominated by the input). bf16 keeps 8 significand bits (relative rounding 2^-9, about
# 0.2 %, per op); through these tiny networks the error measured 0.24-0.77 % (every output, three weight/input
# seeds each), so 5 % holds with a 6x margin and still flags errors well beyond bf16 rounding (a wrong dtype
# path, an overflow, most tokens of an Evo-ViT stage selected differently).
BF16_REL_BOUND = 0.05


@pytest.mark.parametrize('name', NETWORKS)
def test_bf16_autocast_close_to_fp32(name):
    model = build(name).eval()
    x = make_input(name)
    with torch.no_grad():
        ref = flat(model(x))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = flat(model(x))
    assert len(ref) == len(out)
    for a, b in zip(ref, out):
        assert b.shape == a.shape and torch.isfinite(b).all()
        if name in DENOISERS:
            a, b = a - x, b.float() - x
        rel = ((b.float() - a).norm() / a.norm()).item()
        assert rel < BF16_REL_BOUND, f'{name}: bf16 relative error {rel:.4f}'


# ---------------------------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize('name', NETWORKS + WRAPPERS)
def test_state_dict_round_trip_is_exact(name):
    src, dst = build(name, seed=0).eval(), build(name, seed=1).eval()
    state = src.state_dict()
    assert any(not torch.equal(v, dst.state_dict()[k]) for k, v in state.items()), 'seeds gave the same weights'
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    dst.load_state_dict(loaded, strict=True)
    got = dst.state_dict()
    assert list(got) == list(state)  # parameters and buffers, same order
    for k, v in state.items():
        assert (got[k].shape, got[k].dtype) == (v.shape, v.dtype) and torch.equal(got[k], v), k
    x = make_input(name)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(flat(src(x)), flat(dst(x))))


# ---------------------------------------------------------------------------------------------- meta device
def _unique_archs(cls) -> list:
    """One name per distinct ``arch_zoo`` entry (the aliases share the dict)."""
    seen, names = [], []
    for k, v in cls.arch_zoo.items():
        if v not in seen:
            seen.append(v)
            names.append(k)
    return names


def _expected_vit(arch):  # one stride-16 map at 224
    return [(1, arch['embed_dims'], 14, 14)]


def _expected_lit(arch):  # strides 4..32 at 224
    return [(1, d, 56 // 2 ** i, 56 // 2 ** i) for i, d in enumerate(arch['embed_dims'])]


def _expected_levit(arch):  # strides 16, 32, 64 at 224 (ceil)
    return [(1, d, s, s) for d, s in zip(arch['embed_dims'], (14, 7, 4))]


# (class, paper input, expected output shapes from the arch dict)
META_CASES = {
    SkipAtViT: ((1, 3, 224, 224), _expected_vit),
    EvoViT: ((1, 3, 224, 224), _expected_vit),
    LIT: ((1, 3, 224, 224), _expected_lit),
    EvoLeViT: ((1, 3, 224, 224), _expected_levit),
    Uformer: ((1, 3, 256, 256), lambda arch: [(1, 3, 256, 256)]),                     # SIDD blocks
    UniFormerDenoiser: ((1, 7, 3, 128, 128), lambda arch: [(1, 7, 3, 128, 128)]),     # 7-frame clips
}


@pytest.mark.parametrize('cls,arch', [(cls, a) for cls in META_CASES for a in _unique_archs(cls)],
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_full_size_forward_on_meta_device(cls, arch):
    """Full-size models cost nothing on the meta device: build every arch and run the paper's input size."""
    shape, expected = META_CASES[cls]
    with torch.device('meta'):
        model = cls(arch).eval()
    assert all(p.is_meta for p in model.parameters())
    with torch.no_grad():
        outs = flat(model(torch.empty(shape, device='meta')))
    assert [tuple(o.shape) for o in outs] == expected(cls.arch_zoo[arch])
    assert all(o.is_meta for o in outs)
