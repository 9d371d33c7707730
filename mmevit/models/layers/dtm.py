"""Deformable Token Merging (DTM), LIT's down-sampling between stages.

DTM = DCNv1 2x2/stride-2 convolution (no modulation mask, one deformable group, with bias) whose offsets come
from a zero-initialised 2x2/stride-2 conv on the same input, then BatchNorm2d and GELU (Pan et al., "Less is
More: Pay Less Attention in Vision Transformers", AAAI 2022). Parameter names are the official ones
(``dconv.weight``, ``dconv.bias``, ``dconv.conv_offset.*``, ``norm_layer.*``), so official checkpoints load.

Offsets: channel ``2 * (i * 2 + j)`` is the row offset and ``2 * (i * 2 + j) + 1`` the column offset of kernel
tap ``(i, j)``; the tap samples ``(2 * oy + i + dy, 2 * ox + j + dx)`` bilinearly, reading 0 outside the map
(torchvision's ``deform_conv2d`` convention, which the official CUDA op matches exactly).

Two implementations of the deformable conv, equal to float rounding:
- ``'gather'``: the kernel taps do not overlap, so each output token is one GEMM row of the 4 bilinear samples
  of its taps. The samples are weighted sums of 4 input tokens, which ``F.embedding_bag`` gathers straight
  from the (B, H*W, C) token layout the blocks produce (no NCHW copies); the GEMM is oneDNN's in CPU inference
  (``fused_linear.py``). On CPU it is 3-5.5x faster than ``torchvision.ops.deform_conv2d`` and mmcv's
  ``deform_conv2d`` (LIT-Ti's three DTMs at 224, batch 8, one thread: 8.5 / 7.5 / 7.5 ms against 47 / 28 / 23
  ms for both libraries); it also runs in bfloat16 (neither library has a bfloat16 CPU kernel) and for any
  batch size.
- ``'torchvision'``: ``torchvision.ops.deform_conv2d`` on NCHW (the reference; measured as fast as the
  official CUDA op on a GPU). mmcv's ``DeformConv2d`` is not used: it has no bias, refuses batch sizes not
  divisible by its ``im2col_step`` and has no bfloat16 CPU kernel.
``'auto'`` picks ``'gather'`` on CPU and ``'torchvision'`` elsewhere.

As in the official code (``custom_fwd(cast_inputs=float32)`` / ``apex.amp.float_function``), DTM runs in
float32 with autocast disabled; its output is float32 under autocast.
"""
import math
from contextlib import nullcontext
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fused_linear import linear_fn

DTM_IMPLS = ('auto', 'gather', 'torchvision')

# Kernel tap (i, j) of a 2x2 kernel, in the official offset-channel order (row-major taps).
_TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))


def deform_conv2x2_gather(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor = None) -> torch.Tensor:
    """DCNv1 2x2/stride-2 convolution, padding 0, on a channels-last map.

    Args:
        x: Input (B, H, W, C); H and W even.
        offset: (B, H/2, W/2, 8) in the official channel layout ((dy, dx) per tap, taps row-major).
        weight: (C_out, C, 2, 2). bias: (C_out,) or None.
    Returns:
        (B, H/2, W/2, C_out).
    """
    B, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    if H % 2 or W % 2:
        raise ValueError(f'deform_conv2x2_gather needs even sides, got {H}x{W}')
    if offset.shape != (B, Ho, Wo, 8):
        raise ValueError(f'offset must be (B, H/2, W/2, 8) = {(B, Ho, Wo, 8)}, got {tuple(offset.shape)}')
    off = offset.reshape(B, Ho, Wo, 4, 2)
    dt, dev = off.dtype, off.device
    tap_i = torch.tensor([t[0] for t in _TAPS], dtype=dt, device=dev)
    tap_j = torch.tensor([t[1] for t in _TAPS], dtype=dt, device=dev)
    # Sampling positions (B, Ho, Wo, 4).
    h = torch.arange(0, H, 2, dtype=dt, device=dev).view(1, Ho, 1, 1) + tap_i + off[..., 0]
    w = torch.arange(0, W, 2, dtype=dt, device=dev).view(1, 1, Wo, 1) + tap_j + off[..., 1]
    inside = (h > -1) & (h < H) & (w > -1) & (w < W)
    h0, w0 = h.floor(), w.floor()
    lh, lw = h - h0, w - w0
    hh, hw = 1 - lh, 1 - lw
    h0, w0 = h0.long(), w0.long()
    h1, w1 = h0 + 1, w0 + 1
    ok_h0, ok_h1, ok_w0, ok_w1 = h0 >= 0, h1 < H, w0 >= 0, w1 < W
    # Bilinear weights of the 4 corners; a corner outside the map reads 0 (its weight is dropped).
    corner_w = torch.stack([hh * hw * (ok_h0 & ok_w0), hh * lw * (ok_h0 & ok_w1),
                            lh * hw * (ok_h1 & ok_w0), lh * lw * (ok_h1 & ok_w1)], dim=-1)
    corner_w = corner_w * inside.unsqueeze(-1)
    h0, h1 = h0.clamp(0, H - 1), h1.clamp(0, H - 1)
    w0, w1 = w0.clamp(0, W - 1), w1.clamp(0, W - 1)
    rows = torch.stack([h0 * W + w0, h0 * W + w1, h1 * W + w0, h1 * W + w1], dim=-1)
    rows = rows + (torch.arange(B, device=dev) * (H * W)).view(B, 1, 1, 1, 1)
    # One bag of 4 weighted input tokens per (output token, tap): the bilinear sample, all channels at once.
    samples = F.embedding_bag(rows.reshape(-1, 4), x.reshape(B * H * W, C),
                              per_sample_weights=corner_w.reshape(-1, 4).to(x.dtype), mode='sum')
    # (B*Ho*Wo, 4 taps * C) @ (4 taps * C, C_out): weight reordered to (C_out, i, j, C).
    out = linear_fn(samples.view(B * Ho * Wo, 4 * C), weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 4 * C),
                    bias)
    return out.view(B, Ho, Wo, weight.shape[0])


class DeformConv2x2(nn.Module):
    """The official ``DeformConv2dPack`` as LIT uses it: DCNv1, 2x2 kernel, stride 2, padding 0, with bias,
    offsets predicted from the input by ``conv_offset`` (2x2/stride-2 conv, zero-initialised).

    Args:
        in_channels / out_channels: Channels.
        impl: ``'auto'``, ``'gather'`` or ``'torchvision'`` (see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, impl: str = 'auto', device=None, dtype=None) -> None:
        super().__init__()
        if impl not in DTM_IMPLS:
            raise ValueError(f'impl must be one of {DTM_IMPLS}, got {impl!r}')
        dd = dict(device=device, dtype=dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 2, 2, **dd))
        self.bias = nn.Parameter(torch.empty(out_channels, **dd))
        self.conv_offset = nn.Conv2d(in_channels, 2 * 2 * 2, 2, stride=2, **dd)
        if self.weight.device.type != 'meta':
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weight uniform(+-1/sqrt(C*4)) (PyTorch's conv bound, which the DCN packages of that era use) and zero
        bias; the offset conv is zero (official), so the layer starts as a plain 2x2/stride-2 conv."""
        bound = 1 / math.sqrt(self.in_channels * 4)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def resolved_impl(self, device: torch.device) -> str:
        if self.impl != 'auto':
            return self.impl
        return 'gather' if device.type == 'cpu' else 'torchvision'

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: Channels-last input (B, H, W, C), H and W even.
        Returns:
            The output (B, H/2, W/2, C_out) and the predicted offsets (B, 8, H/2, W/2) (official layout).
        """
        nchw = x.permute(0, 3, 1, 2)  # a view: a channels-last NCHW tensor, as oneDNN convolutions like it
        offset = self.conv_offset(nchw)
        if self.resolved_impl(x.device) == 'gather':
            out = deform_conv2x2_gather(x, offset.permute(0, 2, 3, 1), self.weight, self.bias)
        else:
            from torchvision.ops import deform_conv2d
            out = deform_conv2d(nchw.contiguous(), offset, self.weight, self.bias, stride=2).permute(0, 2, 3, 1)
        return out, offset


class DeformableTokenMerging(nn.Module):
    """DTM: tokens (B, H*W, C_in) -> DCNv1 2x2/2 -> BatchNorm2d -> GELU -> tokens (B, ceil(H/2)*ceil(W/2), C_out).

    Odd sides are zero-padded at the bottom/right first (the official code only sees even maps), so every
    token lands in an output token. Runs in float32 with autocast off, as the official code does.

    Args:
        in_channels / out_channels: Token widths before and after merging.
        impl: Deformable-conv implementation (``DeformConv2x2``).
    """

    def __init__(self, in_channels: int, out_channels: int, impl: str = 'auto', device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dconv = DeformConv2x2(in_channels, out_channels, impl, **dd)
        self.norm_layer = nn.BatchNorm2d(out_channels, **dd)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
        B, N, C = x.shape
        H, W = hw_shape
        if N != H * W:
            raise ValueError(f'{N} tokens do not fill a {H}x{W} grid')
        dev = x.device.type
        with torch.autocast(dev, enabled=False) if torch.amp.is_autocast_available(dev) else nullcontext():
            x = x.to(self.dconv.weight.dtype).reshape(B, H, W, C)
            if H % 2 or W % 2:
                x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            y, _ = self.dconv(x)
            # (B, Ho, Wo, C) seen as a channels-last NCHW tensor: BatchNorm2d and GELU keep that layout.
            y = self.act(self.norm_layer(y.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        Ho, Wo = y.shape[1:3]
        return y.reshape(B, Ho * Wo, y.shape[-1]), (Ho, Wo)
