"""Global multi-head self-attention with a Swin-style relative position bias over the whole feature map.

The bias table has ``(2H-1)(2W-1)`` rows (one per relative offset on an H x W grid) and one column per head;
the bias of query token ``n`` and key token ``m`` is ``table[(y_n - y_m + H - 1) * (2W - 1) + x_n - x_m + W - 1]``
(Swin's ``relative_position_index``). At another grid size the table is resized bicubically to
``(2H'-1) x (2W'-1)``, as LIT's dense backbones do at every forward. The bias goes to SDPA as its additive
float ``attn_mask``; the index is built from two small per-axis tables rather than stored as an (HW, HW) buffer.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiheadSelfAttention


def table_shape(grid: Tuple[int, int]) -> Tuple[int, int]:
    return 2 * grid[0] - 1, 2 * grid[1] - 1


def resize_rel_pos_table(table: torch.Tensor, src_grid: Tuple[int, int], dst_grid: Tuple[int, int],
                         mode: str = 'bicubic') -> torch.Tensor:
    """Resize a ((2Hs-1)(2Ws-1), heads) table to ((2Hd-1)(2Wd-1), heads) (float32 interpolation,
    align_corners=False); the table itself when the grids agree."""
    src, dst = table_shape(src_grid), table_shape(dst_grid)
    if src == dst:
        return table
    if table.shape[0] != src[0] * src[1]:
        raise ValueError(f'relative position table has {table.shape[0]} rows, expected {src[0]}x{src[1]} for a '
                         f'{src_grid[0]}x{src_grid[1]} grid')
    heads = table.shape[1]
    grid = table.float().t().reshape(1, heads, *src)
    grid = F.interpolate(grid, size=dst, mode=mode, align_corners=False)
    return grid.reshape(heads, -1).t().to(table.dtype)


def relative_position_bias(table: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(heads, H*W, H*W) bias of a ((2H-1)(2W-1), heads) table on an H x W grid (row-major tokens)."""
    H, W = hw
    dev = table.device
    dy = torch.arange(H, device=dev)
    dx = torch.arange(W, device=dev)
    dy = dy.view(H, 1) - dy.view(1, H) + H - 1  # (query row, key row)
    dx = dx.view(W, 1) - dx.view(1, W) + W - 1
    table2d = table.t().reshape(table.shape[1], 2 * H - 1, 2 * W - 1)
    # (heads, Hq, Wq, Hk, Wk) by broadcasting the per-axis offsets: no (HW)^2 index tensor.
    bias = table2d[:, dy.view(H, 1, H, 1), dx.view(1, W, 1, W)]
    return bias.reshape(table.shape[1], H * W, H * W)


class GlobalSelfAttention(MultiheadSelfAttention):
    """Global MSA over all tokens, optionally with a relative position bias over the whole H x W map (LIT-S/M/B's
    ``RelPosAttention``; without ``grid``, LIT-Ti's plain attention).

    Keys: ``qkv``, ``proj`` and, with ``grid``, ``relative_position_bias_table`` (as the official code; its
    ``relative_position_index`` buffer is not kept: the index is recomputed for the actual grid).

    Args:
        dim / num_heads / qkv_bias / attn_drop / proj_drop / fused_attn: As ``MultiheadSelfAttention``.
        grid: The (H, W) token grid the bias table is sized for (the stage map at the pre-training image size),
            or None for no relative bias.
        interpolate_mode: How the table is resized to another grid.

    ``forward(x, hw_shape, residual)`` returns ``proj(attention)``, or ``residual + proj(attention)`` (fused into
    the projection GEMM in CPU inference, ``layers/fused_linear.py``; ``fused_linear=False`` turns that off).
    """

    def __init__(self, dim: int, num_heads: int, grid: Optional[Tuple[int, int]] = None, qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0., fused_attn: bool = True,
                 interpolate_mode: str = 'bicubic', device=None, dtype=None) -> None:
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, fused_attn, device=device, dtype=dtype)
        self.grid = tuple(grid) if grid is not None else None
        self.interpolate_mode = interpolate_mode
        if self.grid is not None:
            rows, cols = table_shape(self.grid)
            self.relative_position_bias_table = nn.Parameter(torch.zeros(rows * cols, num_heads, device=device,
                                                                         dtype=dtype))

    @property
    def relative(self) -> bool:
        return self.grid is not None

    def bias(self, hw: Tuple[int, int]) -> torch.Tensor:
        """The (heads, H*W, H*W) additive relative position bias on an H x W grid."""
        table = resize_rel_pos_table(self.relative_position_bias_table, self.grid, hw, self.interpolate_mode)
        return relative_position_bias(table, hw)

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        mask = None
        if self.relative:
            if hw_shape is None:
                raise ValueError('relative position bias needs hw_shape')
            mask = self.bias(hw_shape).unsqueeze(0)  # SDPA takes it as a float mask in q's dtype
        return super().forward(x, attn_mask=mask, residual=residual)
