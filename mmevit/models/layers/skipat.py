"""SkipAt's parametric function Phi (Venkataramanan et al., ICLR 2024, arXiv 2301.02240).

Official code: github.com/Qualcomm-AI-research/skip-attention (``model/uformer_utils.py``: LeFF + ECA,
taken from Uformer). Phi maps the MSA output of the patch tokens of one block to an approximation of the
next block's MSA output: Linear(d, 2d) + GELU -> depth-wise 5x5 conv + GELU on the token grid ->
Linear(2d, d) -> ECA channel gating.

Differs from the official code: the token grid is passed in (non-square inputs work; the official code
reshapes to ``int(sqrt(N))`` squared), and the depth-wise conv runs on a channels-last *view* of the token
tensor instead of a transposed copy, which is what makes Phi cost on the CPU what its FLOPs say; in CPU inference
the linears run as oneDNN GEMMs with the first GELU fused (``fused_linear.py``).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fused_linear import linear


class ECA(nn.Module):
    """Efficient channel attention over tokens: ``y * sigmoid(conv1d_k(mean_tokens(y)))``.

    The 1-D conv (one channel, no bias, zero padding) slides along the channel axis.
    """

    def __init__(self, kernel_size: int = 3, device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False,
                              device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv(x.mean(dim=1, keepdim=True))  # (B, 1, C)
        return x * gate.sigmoid()


class SkipAtPhi(nn.Module):
    """The SkipAt parametric function Phi (LeFF with ECA).

    Args:
        dim: Token width d.
        hidden_dim: Hidden width (2d in SkipAt).
        kernel_size: Depth-wise conv kernel (5 in SkipAt).
        use_eca: Apply ECA channel gating to the output (on in SkipAt).
        out_dim: Output width (default ``dim``): a Phi between blocks of different widths, e.g. from a
            Uformer encoder block to its mirrored, twice as wide decoder block.
    """

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 5, use_eca: bool = True,
                 out_dim: Optional[int] = None, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.fc1 = nn.Linear(dim, hidden_dim, **dd)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2,
                                groups=hidden_dim, **dd)
        # Keep the depth-wise weight in the layout its gradient comes back in from the channels-last conv,
        # so that DDP's gradient buckets need no re-striding copy (and no "grad strides" warning).
        # (``contiguous(memory_format=channels_last)`` is a no-op here: with one input channel per group the
        # default strides already count as channels-last, so the strides are set explicitly.)
        w = self.dwconv.weight.data
        k = w.shape[2] * w.shape[3]
        self.dwconv.weight.data = torch.empty_strided(w.shape, (k, 1, w.shape[3], 1), dtype=w.dtype,
                                                      device=w.device).copy_(w)
        self.fc2 = nn.Linear(hidden_dim, dim if out_dim is None else out_dim, **dd)
        self.eca = ECA(**dd) if use_eca else nn.Identity()

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
        """Args:
            x: Patch tokens (B, H*W, d), row-major over the grid.
            hw_shape: The token grid (H, W).
        """
        B, N, _ = x.shape
        H, W = hw_shape
        if H * W != N:
            raise ValueError(f'Phi got {N} tokens for a {H}x{W} grid')
        h = linear(x, self.fc1, 'gelu')
        # (B, H, W, C) permuted to NCHW is a channels-last view: no copy before or after the conv.
        h = h.view(B, H, W, h.shape[-1]).permute(0, 3, 1, 2)
        h = F.gelu(self.dwconv(h))
        h = h.permute(0, 2, 3, 1).reshape(B, N, h.shape[1])
        return self.eca(linear(h, self.fc2))
