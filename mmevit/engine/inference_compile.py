"""``compile_for_inference``: the one-flag fast inference mode (``tools/test.py --compile``,
``tools/analysis/benchmark.py --compile``).

``torch.compile`` (inductor) with *frozen weights* (``torch._inductor.config.freezing``): parameters become
constants of the graph, so inductor folds them, pre-packs the GEMM weights (MKL / oneDNN) and fuses LayerNorm,
GELU, the residual adds and the head split/merge copies into a few C++ kernels. Measured on CPU against the
default eager inference path (``docs/benchmarks.md``): SkipAt-T 224² 1.20x, SkipAt-S 512² 1.11x, Evo-ViT-S
1.18x, LIT-Ti 1.14x, the SkipAt video denoiser 1.24x, Uformer-T 0.87x; against the official SkipAt code, SkipAt
T/S/B 224² 1.29x / 1.24x / 1.22x and S 512² 1.45x. Outputs agree with eager within float rounding (tested to
1e-4).

Freezing applies only to graphs compiled with autograd off, so it never touches training; but a frozen graph
keeps the weights it was compiled with: compile a model for evaluation once its weights are final (the test
loop, not validation during training). mmengine's own ``cfg.compile`` compiles the training step only.
"""
from typing import Iterable, List

from mmengine.model import is_model_wrapper
from torch import nn

# The submodules of a toolbox model that the predict path calls as modules (``self.backbone(x)``): heads are
# reached through methods (``decode_head.predict``), which ``Module.compile`` does not cover.
NETWORKS = ('backbone', 'neck', 'generator')


def compile_for_inference(module: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile ``module``'s ``__call__`` in place (``nn.Module.compile``: parameters, state-dict keys and
    hooks stay as they are) with frozen weights; returns ``module``. ``compile_kwargs`` go to
    ``torch.compile`` (e.g. ``mode='max-autotune'``, ``dynamic=True``, ``options=``); on the CPU, without a
    ``mode``, the options default to inductor's C++ wrapper."""
    if not isinstance(module, nn.Module):
        raise TypeError(f'compile_for_inference needs an nn.Module, got {type(module).__name__}')
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True  # global in inductor; only graphs compiled without autograd are frozen
    if 'mode' not in compile_kwargs and all(p.device.type == 'cpu' for p in module.parameters()):
        # Inductor's C++ wrapper calls the graph's kernels from C++ instead of Python (about 100 calls per
        # ViT-S forward: 1.4 % of SkipAt-S at 512², for about 10 s more compilation). torch.compile takes
        # either a mode or options.
        compile_kwargs['options'] = {'cpp_wrapper': True, **compile_kwargs.get('options', {})}
    module.compile(**compile_kwargs)
    return module


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module`` runs compiled (``torch.compile(module)`` or ``module.compile()``)."""
    return hasattr(module, '_orig_mod') or getattr(module, '_compiled_call_impl', None) is not None


def compile_networks(model: nn.Module, names: Iterable[str] = NETWORKS, **compile_kwargs) -> List[str]:
    """Compile the networks of a toolbox model (mmseg/mmdet/mmpretrain, or an mmevit ``Denoiser``) for
    inference; returns the names compiled. A model with none of ``names`` is an error, not a silent no-op."""
    if is_model_wrapper(model):
        model = model.module
    if hasattr(model, 'module') and isinstance(model.module, nn.Module) and not any(
            isinstance(getattr(model, n, None), nn.Module) for n in names):
        model = model.module  # test-time augmentation wrappers (SegTTAModel, DetTTAModel)
    done = [n for n in names if isinstance(getattr(model, n, None), nn.Module)]
    if not done:
        raise ValueError(f'compile_networks: {type(model).__name__} has none of the submodules {tuple(names)}')
    for n in done:
        compile_for_inference(getattr(model, n), **compile_kwargs)
    return done
