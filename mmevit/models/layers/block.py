"""The plain pre-norm transformer block: ``x + drop_path(attn(norm1(x)))``, then ``x + drop_path(mlp(norm2(x)))``.

Key names are timm's (``norm1``, ``attn``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), which official SkipAt, LIT
and Evo-ViT checkpoints share. ``attn=None`` gives the attention-free block (``norm1``/``attn`` absent): LIT's
MLP blocks and SkipAt's skipped blocks, which replace the attention branch by their own.

In CPU inference (eval mode, no autograd) the MLP runs as two oneDNN GEMMs with the exact GELU and the residual
add fused into them (``fused_linear.py``): the same values, without the hidden-width intermediate written twice
and re-read; on AMD EPYC machines also much faster than MKL's sgemm for narrow (192-wide) inputs (about even with
it on Intel Xeon).
``fused_linear = False`` on a block (or training, autograd, autocast, or a forward hook on the block's ``attn``
or its ``mlp``, which then sees the usual values) takes the plain path.
"""
from typing import Optional, Type

import torch
from torch import nn

from .drop import drop_path
from .fused_linear import fusable, has_hooks, linear
from .mlp import Mlp


class TransformerBlock(nn.Module):
    """Args:
        dim: Token width.
        mlp_hidden: MLP hidden width.
        attn: The token mixer (called on ``norm1(x)``), or ``None`` for a block without attention branch. In
            fused inference it is called with ``residual=x`` and must return ``x + mixer(norm1(x))``.
        drop: Dropout inside the MLP.
        drop_path_rate: Stochastic depth of both residual branches.
        norm_eps: LayerNorm epsilon.
        act_layer: MLP activation class.
    """

    def __init__(self, dim: int, mlp_hidden: int, attn: Optional[nn.Module] = None, drop: float = 0.,
                 drop_path_rate: float = 0., norm_eps: float = 1e-6, act_layer: Type[nn.Module] = nn.GELU,
                 device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if attn is not None:
            self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
            self.attn = attn
        self.drop_path1 = drop_path(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = Mlp(dim, mlp_hidden, act_layer=act_layer, drop=drop, **dd)
        self.drop_path2 = drop_path(drop_path_rate)
        self.fused_linear = True

    def fused_inference(self, x: torch.Tensor) -> bool:
        """Whether this call takes the fused oneDNN path (eval mode, CPU, no autograd; see the module doc)."""
        return (self.fused_linear and not self.training and fusable(x)
                and not any(has_hooks(m) for m in (getattr(self, 'attn', self.mlp), self.mlp)))

    @property
    def has_attn(self) -> bool:
        return hasattr(self, 'attn')

    def forward_mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward half: ``x + drop_path(mlp(norm2(x)))``."""
        if self.fused_inference(x) and self.mlp.fusable_act:
            return linear(linear(self.norm2(x), self.mlp.fc1, 'gelu'), self.mlp.fc2, residual=x)
        return x + self.drop_path2(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, **attn_kwargs) -> torch.Tensor:
        if self.has_attn:
            if self.fused_inference(x):  # the attention module adds the residual inside its output projection
                x = self.attn(self.norm1(x), residual=x, **attn_kwargs)
            else:
                x = x + self.drop_path1(self.attn(self.norm1(x), **attn_kwargs))
        return self.forward_mlp(x)
