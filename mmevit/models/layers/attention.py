"""Multi-head self-attention on ``F.scaled_dot_product_attention``.

One fused ``qkv`` projection (timm/official key layout ``attn.qkv`` / ``attn.proj``), with the eager
softmax(QK^T)V path kept in the same forward behind ``fused_attn`` so that tests can compare the two. In CPU
inference the projections run as oneDNN GEMMs, the output projection with the block's residual add fused in
(``fused_linear.py``; ``fused_linear = False`` turns that off).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .fused_linear import linear, linear_fn


class MultiheadSelfAttention(nn.Module):
    """Pre-norm ViT attention: ``proj(softmax(q k^T / sqrt(d)) v)``.

    Args:
        dim: Token width.
        num_heads: Number of heads; ``dim`` must be divisible by it.
        qkv_bias: Whether the fused qkv projection has a bias.
        attn_drop: Dropout on the attention probabilities (training only).
        proj_drop: Dropout after the output projection.
        fused_attn: Use SDPA (True) or the eager reference path (False).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., fused_attn: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = fused_attn
        self.fused_linear = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                residual: Optional[torch.Tensor] = None, num_queries: Optional[int] = None) -> torch.Tensor:
        """``proj(attention(x))``, or ``residual + proj(attention(x))`` when ``residual`` is given.

        ``attn_mask``: boolean (True = attend) or additive float, broadcastable to (B, heads, N, N).
        ``num_queries``: only the first rows attend (keys and values come from every row); the output has
            those rows only, as has ``residual``. A classifier's last block needs the CLS row alone.
        """
        B, N, C = x.shape
        if num_queries is None:
            qkv = linear(x, self.qkv, fused=self.fused_linear)
            q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:  # keys and values of every row, queries of the first rows only (rows of the fused qkv weight)
            w, b = self.qkv.weight, self.qkv.bias
            q = linear_fn(x[:, :num_queries], w[:C], None if b is None else b[:C], fused=self.fused_linear)
            kv = linear_fn(x, w[C:], None if b is None else b[C:], fused=self.fused_linear)
            q = q.reshape(B, num_queries, self.num_heads, self.head_dim).transpose(1, 2)
            k, v = kv.reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            N = num_queries
        if attn_mask is not None and attn_mask.is_floating_point() and attn_mask.dtype != q.dtype:
            attn_mask = attn_mask.to(q.dtype)  # an fp32 bias table under autocast
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                attn = attn.masked_fill(~attn_mask, float('-inf')) if attn_mask.dtype == torch.bool \
                    else attn + attn_mask
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        if residual is None:
            return self.proj_drop(linear(x, self.proj, fused=self.fused_linear))
        if self.training:
            return residual + self.proj_drop(self.proj(x))
        return linear(x, self.proj, residual=residual, fused=self.fused_linear)
