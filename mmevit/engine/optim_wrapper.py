"""Mixed precision on CPUs: mmengine's ``AmpOptimWrapper`` asserts a GPU (it builds a CUDA ``GradScaler``).

``CPUAmpOptimWrapper`` runs the forward pass (data preprocessor, model and losses: everything inside
``optim_context``) under ``torch.autocast('cpu', dtype=torch.bfloat16)``. bfloat16 keeps float32's exponent
range, so no loss scaling is needed; parameters, gradients and the optimizer state stay float32.
"""
import contextlib
from typing import Iterator, Union

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

# Substrings of the errors PyTorch raises when an op has no kernel for the autocast dtype.
_DTYPE_ERRORS = ('BFloat16', 'Half', 'dtype', 'scalar type', 'not implemented for')


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` autocasts on the CPU (bfloat16 by default).

    Registered in mmengine's root ``OPTIM_WRAPPERS``, so every toolbox scope (mmseg, mmdet, mmpretrain)
    finds it as ``type='CPUAmpOptimWrapper'``.

    Args:
        dtype: ``'bfloat16'`` (default) or ``'float16'`` (CPU float16 autocast exists but is slow and needs
            loss scaling, which this wrapper does not do: prefer bfloat16).
        loss_scale: Accepted and ignored, so an ``AmpOptimWrapper`` config can be switched to this type.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``, ``accumulative_counts``).
    """

    valid_dtypes = ('bfloat16', 'float16')

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', loss_scale=None, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace('torch.', '')
        if dtype not in self.valid_dtypes:
            raise ValueError(f'CPUAmpOptimWrapper: dtype must be one of {self.valid_dtypes}, got {dtype!r}')
        self.cast_dtype = getattr(torch, dtype)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            try:
                yield
            except (RuntimeError, TypeError, NotImplementedError) as e:
                if any(s in str(e) for s in _DTYPE_ERRORS):
                    name = type(getattr(model, 'module', model)).__name__
                    raise RuntimeError(
                        f'{name} cannot run its forward pass under CPU {self.cast_dtype} autocast '
                        f'(--amp on a machine without CUDA): {e}. Train without --amp.') from e
                raise
