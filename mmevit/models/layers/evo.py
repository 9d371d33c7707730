"""Evo-ViT building blocks: class-attention scores, structure-preserving token selection, the
representative token, and LeViT's Linear/Conv + BatchNorm pairs (fusable for deployment).

Evo-ViT (Xu et al., AAAI 2022, arXiv 2108.01390) ranks the patch tokens by a *global class attention*: the
attention row of the CLS query, accumulated over layers. Only that row is needed, so attention itself runs
through SDPA and the row is recomputed alone (one query against all keys, O(N d) per head) instead of
materialising the N x N matrix; ``fused_attn=False`` keeps the eager full-matrix path for comparison. Scores,
their blending, sorting and selection run in float32 even under autocast: bf16 rounding reorders near-tied
scores and flips which tokens are kept.
"""
from contextlib import nullcontext
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiheadSelfAttention


def _autocast_off(device: torch.device):
    """Autocast disabled on ``device`` (a no-op context on devices without autocast, e.g. ``meta``)."""
    return (torch.autocast(device_type=device.type, enabled=False) if torch.amp.is_autocast_available(device.type)
            else nullcontext())


def cls_attention(q_cls: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q_cls k^T * scale)`` of the CLS query: (B, H, 1, d) x (B, H, N, d) -> (B, H, N) in float32."""
    with _autocast_off(q_cls.device):
        # k @ q^T: a matrix-vector product over k's rows (q @ k^T as a 1-row GEMM is several times slower).
        logits = (k.float() @ q_cls.float().transpose(-2, -1)).squeeze(-1) * scale
        return logits.softmax(dim=-1)


def attention_with_cls_row(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, need_row: bool,
                           fused: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Attention output (B, H, Nq, dv) and, when ``need_row``, the CLS query's attention row (B, H, Nk) in
    float32. ``fused``: SDPA plus the row computed alone; otherwise the eager full matrix (row read off it).
    ``scale`` must be ``q.shape[-1] ** -0.5`` (SDPA's default)."""
    if fused:
        out = F.scaled_dot_product_attention(q, k, v)
        return out, (cls_attention(q[:, :, :1], k, scale) if need_row else None)
    with _autocast_off(q.device):
        attn = ((q.float() @ k.float().transpose(-2, -1)) * scale).softmax(dim=-1)
    out = attn.to(v.dtype) @ v
    return out, (attn[:, :, 0] if need_row else None)


class EvoAttention(MultiheadSelfAttention):
    """ViT multi-head self-attention (timm keys ``qkv``/``proj``) that can also return the CLS query's
    attention row per head (B, H, N), float32."""

    def forward(self, x: torch.Tensor, need_cls_attn: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.training and self.attn_drop.p > 0:
            # Dropout on the probabilities: the eager path (the CLS row is read before dropout).
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            row = cls_attention(q[:, :, :1], k, self.scale) if need_cls_attn else None
            out = self.attn_drop(attn) @ v
        else:
            out, row = attention_with_cls_row(q, k, v, self.scale, need_cls_attn, self.fused_attn)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(out)), row


# ---------------------------------------------------------------------------------------- token selection
def select_tokens(scores: torch.Tensor, num_keep: int) -> torch.Tensor:
    """Indices (B, num_keep) of the highest global-attention scores, highest first (the official
    descending sort truncated), computed in float32."""
    return torch.topk(scores.float(), num_keep, dim=1, sorted=True).indices


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b]]`` for (B, N, C) tokens and (B, K) indices."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def scatter_tokens(x: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Out-of-place ``x[b, idx[b]] = src[b]``: kept tokens written back to their spatial positions."""
    return x.scatter(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]), src)


def blend_scores(scores: Optional[torch.Tensor], new: torch.Tensor, alpha,
                 idx: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Global class attention update ``g = (1 - alpha) g + alpha a`` (float32).

    ``scores`` is None at the first layer (``g = a``). With ``idx`` only the kept entries are updated
    (``new`` holds their attention, in ``idx`` order); the placeholders keep their scores.
    """
    new = new.float()
    if scores is None:
        return new
    if idx is None:
        return (1 - alpha) * scores + alpha * new
    return scores.scatter(1, idx, (1 - alpha) * scores.gather(1, idx) + alpha * new)


def representative_token(x: torch.Tensor, scores: torch.Tensor, keep_idx: torch.Tensor) -> torch.Tensor:
    """Evo-LeViT's representative token (B, 1, C): the placeholders (tokens not in ``keep_idx``) averaged
    with weights ``g_j / sum g_j`` over the placeholders; the weights are float32."""
    weights = scores.float().scatter(1, keep_idx, 0.)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return (weights.to(x.dtype).unsqueeze(1) @ x)


def subsample_grid(x: torch.Tensor, hw: Tuple[int, int], stride: int = 2) -> torch.Tensor:
    """(B, H*W, ...) row-major grid -> (B, ceil(H/s)*ceil(W/s), ...): LeViT's ``x[:, ::s, ::s]``."""
    B, H, W = x.shape[0], hw[0], hw[1]
    return x.reshape(B, H, W, *x.shape[2:])[:, ::stride, ::stride].flatten(1, 2)


# ---------------------------------------------------------------------------------------- LeViT's BN pairs
class LinearBN(nn.Module):
    """LeViT's ``Linear_BN``: bias-free Linear, then BatchNorm1d over all tokens (any leading dims).

    ``fuse()`` returns the equivalent ``nn.Linear`` with bias (eval statistics).
    """

    def __init__(self, in_features: int, out_features: int, bn_weight_init: float = 1.,
                 device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.linear = nn.Linear(in_features, out_features, bias=False, **dd)
        self.bn = nn.BatchNorm1d(out_features, **dd)
        self.bn_weight_init = bn_weight_init

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        self.bn.reset_parameters()
        nn.init.constant_(self.bn.weight, self.bn_weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return self.bn(y.flatten(0, -2)).reshape(y.shape)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        w, b = _bn_scale_shift(self.bn)
        fused = nn.Linear(self.linear.in_features, self.linear.out_features, device=w.device, dtype=w.dtype)
        fused.weight.copy_(self.linear.weight * w[:, None])
        fused.bias.copy_(b)
        return fused


class ConvBN(nn.Module):
    """Bias-free Conv2d then BatchNorm2d (LeViT's ``Conv2d_BN``); ``fuse()`` gives the biased conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2,
                 padding: int = 1, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, **dd)
        self.bn = nn.BatchNorm2d(out_channels, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        w, b = _bn_scale_shift(self.bn)
        c = self.conv
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=True,
                          device=w.device, dtype=w.dtype)
        fused.weight.copy_(c.weight * w[:, None, None, None])
        fused.bias.copy_(b)
        return fused


class BNLinear(nn.Module):
    """LeViT's classifier ``BN_Linear``: BatchNorm1d then Linear (keys ``bn``, ``l``); ``fuse()`` folds the
    BatchNorm into the Linear."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.bn = nn.BatchNorm1d(in_features, **dd)
        self.l = nn.Linear(in_features, out_features, **dd)  # noqa: E741  (the official key name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        w, b = _bn_scale_shift(self.bn)
        fused = nn.Linear(self.l.in_features, self.l.out_features, device=w.device, dtype=w.dtype)
        fused.weight.copy_(self.l.weight * w[None, :])
        fused.bias.copy_(self.l.bias + self.l.weight @ b)
        return fused


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm in eval as ``y = x * scale + shift``."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return scale, bn.bias - bn.running_mean * scale


def fuse_bn_modules(module: nn.Module) -> None:
    """Replace every ``LinearBN``/``ConvBN``/``BNLinear`` below ``module`` by its fused layer, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, (LinearBN, ConvBN, BNLinear)):
            setattr(module, name, child.fuse())
        else:
            fuse_bn_modules(child)
