"""Non-overlapping patch embedding with corner padding for sizes not divisible by the patch size."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Conv ``patch_size`` / stride ``patch_size``, returning tokens (B, H*W, C) and the grid (H, W).

    Inputs whose sides are not multiples of ``patch_size`` are zero-padded at the bottom/right (mmcv's
    ``AdaptivePadding(padding='corner')`` convention), so every pixel lands in a patch.
    """

    def __init__(self, in_channels: int = 3, embed_dims: int = 768, patch_size: int = 16,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        if x.dim() != 4 or x.shape[1] != self.proj.in_channels:
            raise ValueError(f'expected an image batch (B, {self.proj.in_channels}, H, W), got {tuple(x.shape)}')
        p = self.patch_size
        pad_h, pad_w = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), hw
