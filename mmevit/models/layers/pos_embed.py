"""Absolute position embedding resampling (bicubic, float32, prefix tokens kept aside)."""
from typing import Tuple

import torch
import torch.nn.functional as F


def resample_abs_pos_embed(pos_embed: torch.Tensor, src_shape: Tuple[int, int], dst_shape: Tuple[int, int],
                           num_prefix_tokens: int = 1, mode: str = 'bicubic') -> torch.Tensor:
    """Resize a (1, P + Hs*Ws, C) position embedding to a (1, P + Hd*Wd, C) one.

    The ``num_prefix_tokens`` leading rows (cls token) are kept unchanged; the grid rows are interpolated
    in float32 (align_corners=False) and cast back. Returns the input itself when the grid is unchanged.
    """
    if tuple(src_shape) == tuple(dst_shape):
        return pos_embed
    Hs, Ws = src_shape
    if pos_embed.shape[1] != num_prefix_tokens + Hs * Ws:
        raise ValueError(f'pos_embed has {pos_embed.shape[1]} rows, expected {num_prefix_tokens} + '
                         f'{Hs}x{Ws} = {num_prefix_tokens + Hs * Ws}')
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dtype = grid.dtype
    grid = grid.float().reshape(1, Hs, Ws, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst_shape), mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst_shape[0] * dst_shape[1], -1).to(dtype)
    return torch.cat([prefix, grid], dim=1)
