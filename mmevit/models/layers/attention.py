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
            those rows only, as has ``residual``. A classifier's last block needs the CLS row alone; for a few
            rows no key or value is projected at all (``_few_query_attention``).
        """
        B, N, C = x.shape
        if num_queries is not None and self._reassociate(x, num_queries, attn_mask):
            x = self._few_query_attention(x, num_queries).transpose(1, 2).reshape(B, num_queries, C)
            return self._project(x, residual)
        if num_queries is None:
            qkv = linear(x, self.qkv, fused=self.fused_linear)
            q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:  # keys and values of every row, queries of the first rows only (rows of the fused qkv weight)
            w, b = self.qkv.weight, self.qkv.bias
            q = self._query_rows(x, num_queries)
            kv = linear_fn(x, w[C:], None if b is None else b[C:], fused=self.fused_linear)
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
        return self._project(x.transpose(1, 2).reshape(B, N, C), residual)

    def _project(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        if residual is None:
            return self.proj_drop(linear(x, self.proj, fused=self.fused_linear))
        if self.training:
            return residual + self.proj_drop(self.proj(x))
        return linear(x, self.proj, residual=residual, fused=self.fused_linear)

    def _query_rows(self, x: torch.Tensor, r: int) -> torch.Tensor:
        """The queries of the first ``r`` rows (B, heads, r, head_dim), from the q rows of the qkv weight."""
        C = x.shape[-1]
        w, b = self.qkv.weight[:C], None if self.qkv.bias is None else self.qkv.bias[:C]
        q = linear_fn(x[:, :r], w, b, fused=self.fused_linear)
        return q.reshape(x.shape[0], r, self.num_heads, self.head_dim).transpose(1, 2)

    def _reassociate(self, x: torch.Tensor, num_queries: int, attn_mask: Optional[torch.Tensor]) -> bool:
        """Whether ``_few_query_attention`` serves these queries: fused inference without a mask, when it
        needs fewer MACs (``r (C + heads N)`` against the ``N C`` of projecting the keys and values)."""
        N, C = x.shape[1:]
        return (self.fused_attn and attn_mask is None and not (self.training and self.attn_drop.p)
                and num_queries * (C + self.num_heads * N) < N * C)

    def _few_query_attention(self, x: torch.Tensor, r: int) -> torch.Tensor:
        """Attention of the first ``r`` rows of ``x`` (B, heads, r, head_dim) without projecting any key or
        value. Per head, ``q . (W_k x_j + b_k) = (W_k^T q) . x_j + q . b_k``, where the last term is the same
        for every key and cancels in the softmax, and ``sum_j a_j (W_v x_j + b_v) = W_v (sum_j a_j x_j) + b_v``
        since the probabilities ``a`` sum to 1: two (heads r, C) x (C, N) products replace the 2 N C^2 MACs
        of the key/value projection (a classifier's CLS-only last block at 512^2: 5 M instead of 302 M)."""
        B, N, C = x.shape
        H, d = self.num_heads, self.head_dim
        w, b = self.qkv.weight, self.qkv.bias
        q = self._query_rows(x, r) * self.scale                                  # (B, H, r, d)
        qk = (q @ w[C:2 * C].reshape(H, d, C)).reshape(B, H * r, C)               # W_k^T q per head
        attn = torch.softmax(qk @ x.transpose(1, 2), dim=-1)                      # (B, H r, N)
        ctx = (attn @ x).reshape(B, H, r, C)                                      # sum_j a_j x_j
        out = ctx @ w[2 * C:].reshape(H, d, C).transpose(1, 2)                    # (B, H, r, d)
        return out if b is None else out + b[2 * C:].reshape(H, 1, d)
