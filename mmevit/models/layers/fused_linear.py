"""``act(fc(x))`` and ``residual + fc(x)`` with the activation or residual add fused into a oneDNN GEMM on CPU.

For CPU inference in float32/bfloat16, PyTorch's oneDNN linear with a post-op (``torch.ops.mkldnn.
_linear_pointwise``, the kernel ``torch.compile`` emits for these patterns on CPU) computes the same values as
``F.linear`` followed by ``F.gelu`` or ``+ residual``, without writing and re-reading the (tokens x hidden)
intermediate and without ``addmm``'s copy of the bias into the output. Measured on the 2-core AMD EPYC machine the
project runs on, for LIT's shapes: 1.3-2.6x faster than ``F.linear`` alone, more with the post-op (MKL's sgemm is
slow there). Everything else (autograd, autocast, other devices and dtypes, builds without oneDNN) takes the plain
``F.linear`` path, so training is unchanged.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

_OP = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None)
ACTS = ('gelu', None)


def _dispatch_mode_active() -> bool:
    """A tensor dispatch mode (FLOP counter, fake tensors, ...) is tracing the ops: give it standard ones."""
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
    except ImportError:  # pragma: no cover - older torch
        return False
    return _get_current_dispatch_mode() is not None


def fusable(x: torch.Tensor) -> bool:
    """Whether the oneDNN kernel applies: CPU, float32/bfloat16, no autograd graph, no autocast, no dispatch
    mode (``torch.utils.flop_counter`` counts the plain ops), not under ``torch.jit.trace`` (the tracer cannot
    record the op's ``Scalar?[]`` argument; the traced graph gets the plain ops), not being traced by
    ``torch.compile`` (inductor sees the plain ops and emits this fusion itself, weights pre-packed under
    ``freezing``)."""
    return (_OP is not None and not torch.compiler.is_compiling() and x.device.type == 'cpu'
            and x.dtype in (torch.float32, torch.bfloat16)
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled('cpu')
            and torch.backends.mkldnn.is_available() and not _dispatch_mode_active() and not torch.jit.is_tracing())


def has_hooks(module: nn.Module) -> bool:
    """Forward (pre-)hooks on ``module`` or global ones: a fused path that bypasses the module call would
    hide its input/output from them, so callers take the plain path instead."""
    return bool(module._forward_hooks or module._forward_pre_hooks or _module._global_forward_hooks
                or _module._global_forward_pre_hooks)


def _check_args(act: Optional[str], residual: Optional[torch.Tensor]) -> None:
    if act not in ACTS:
        raise ValueError(f'act must be one of {ACTS}, got {act!r}')
    if act is not None and residual is not None:
        raise ValueError('linear: give an activation or a residual, not both')


def linear(x: torch.Tensor, fc: nn.Linear, act: Optional[str] = None, residual: Optional[torch.Tensor] = None,
           fused: bool = True) -> torch.Tensor:
    """``act(fc(x))`` (``act``: ``'gelu'`` = exact GELU, or None) or ``residual + fc(x)``.

    With ``fused`` and ``fusable(x)``, one oneDNN GEMM with the activation / residual add as its post-op;
    otherwise ``fc(x)`` then the activation / add.
    """
    _check_args(act, residual)
    if fused and fusable(x) and not has_hooks(fc):
        out = _onednn(x, fc.weight, fc.bias, act, residual)
        if out is not None:
            return out
    return _post_op(fc(x), act, residual)  # a module call: its hooks run (e.g. the analysis tools' recorders)


def linear_fn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, act: Optional[str] = None,
              residual: Optional[torch.Tensor] = None, fused: bool = True) -> torch.Tensor:
    """``linear`` on a bare (out, in) weight and bias."""
    _check_args(act, residual)
    if fused and fusable(x):
        out = _onednn(x, weight, bias, act, residual)
        if out is not None:
            return out
    return _post_op(F.linear(x, weight, bias), act, residual)


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], act: Optional[str],
            residual: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The fused kernel, or None when the weight's or the residual's dtype differs from the input's, or the
    input is not contiguous (windows and permuted maps: oneDNN would copy it first)."""
    if weight.dtype != x.dtype or (residual is not None and residual.dtype != x.dtype) or not x.is_contiguous():
        return None
    if residual is not None:
        return _OP.binary(x, residual, weight, bias, 'add')
    return _OP(x, weight, bias, act or 'none', [], 'none' if act else '')


def _post_op(y: torch.Tensor, act: Optional[str], residual: Optional[torch.Tensor]) -> torch.Tensor:
    if act == 'gelu':
        return F.gelu(y)
    return y if residual is None else residual + y
