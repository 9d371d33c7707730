"""The one-flag fast inference mode (``mmevit.engine.inference_compile``, ``InferenceCompileHook``,
``tools/test.py --compile``): every network compiled with frozen weights gives its eager outputs, keeps its
state-dict keys, and still trains correctly (freezing only touches graphs compiled without autograd)."""
import pytest
import torch
from mmengine.config import Config
from test_model_contract import NETWORKS, build, flat, make_input

from mmevit.engine import runner_setup
from mmevit.engine.hooks.compile_hook import InferenceCompileHook
from mmevit.engine.inference_compile import compile_for_inference, compile_networks, is_compiled


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# Compiling takes 8-50 s per network here: the three slowest to compile run under the ``slow`` marker.
SLOW_TO_COMPILE = {'Uformer', 'EvoLeViT', 'LIT'}


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_COMPILE else n
                                  for n in NETWORKS])
def test_compiled_matches_eager_and_keeps_state_dict(name):
    eager, compiled = build(name).eval(), build(name).eval()
    keys = list(compiled.state_dict())
    assert compile_for_inference(compiled) is compiled and is_compiled(compiled) and not is_compiled(eager)
    assert list(compiled.state_dict()) == keys
    for seed in (1, 2):  # a second input of the same shape reuses the graph
        x = make_input(name, seed)
        with torch.no_grad():
            want, got = flat(eager(x)), flat(compiled(x))
        assert len(want) == len(got)
        for w, g in zip(want, got):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_training_through_a_compiled_module_is_not_frozen():
    """With autograd on (eval mode, so no random masks), the compiled graph reads the live parameters: gradients equal eager's, and after an
    optimizer step the output follows the new weights."""
    eager, compiled = build('SkipAtViT').eval(), build('SkipAtViT').eval()  # no dropout: same graph both ways
    compile_for_inference(compiled)
    x = make_input('SkipAtViT')
    for m in (eager, compiled):
        sum(o.square().mean() for o in flat(m(x))).backward()
    for (n, pe), (_, pc) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, atol=1e-5, rtol=1e-4, msg=n)
    with torch.no_grad():
        for m in (eager, compiled):
            for p in m.parameters():
                p.sub_(0.1 * p.grad)
        for w, g in zip(flat(eager(x)), flat(compiled(x))):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


class _Segmentor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Conv2d(3, 4, 3)
        self.decode_head = torch.nn.Conv2d(4, 2, 1)


class _TTA(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module


def test_compile_networks_picks_the_networks():
    seg = _Segmentor()
    assert compile_networks(seg) == ['backbone']
    assert is_compiled(seg.backbone) and not is_compiled(seg.decode_head)
    tta = _TTA(_Segmentor())
    assert compile_networks(tta, ('backbone', 'decode_head')) == ['backbone', 'decode_head']
    with pytest.raises(ValueError, match=r"none of the submodules \('generator',\)"):
        compile_networks(_Segmentor(), ('generator',))
    with pytest.raises(TypeError, match='needs an nn.Module'):
        compile_for_inference(lambda x: x)
    # torch.compile takes a mode or options, not both: the CPU default options give way to a mode.
    for kwargs in (dict(mode='max-autotune'), dict(options={'cpp_wrapper': False}), {}):
        assert is_compiled(compile_for_inference(torch.nn.Linear(2, 2), **kwargs))


def test_hook_arguments_and_config_edit():
    with pytest.raises(ValueError, match='non-empty list'):
        InferenceCompileHook(networks='backbone')
    cfg = Config(dict(custom_hooks=[dict(type='RNGStateHook')]))
    runner_setup.enable_inference_compile(cfg)
    runner_setup.enable_inference_compile(cfg)  # once only
    assert [h['type'] for h in cfg.custom_hooks] == ['RNGStateHook', 'mmevit.InferenceCompileHook']
