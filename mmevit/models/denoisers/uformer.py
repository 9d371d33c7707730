"""Uformer: a U-shaped window transformer for image restoration, and SkipAt-Uformer.

Paper: Wang et al., "Uformer: A General U-Shaped Transformer for Image Restoration", CVPR 2022
(arXiv 2106.03106). Official code: github.com/ZhendongWang6/Uformer (``model.py``, variants in
``utils/model_utils.py::get_arch``; MIT license). SkipAt: Venkataramanan et al., ICLR 2024 (arXiv 2301.02240),
whose Uformer experiment (SIDD) has no public code; the two readings of it are below.

Network (C = ``embed_dims``): conv 3x3 + LeakyReLU -> four encoder levels (C, 2C, 4C, 8C: LeWin blocks, then a
4x4/2 conv) -> bottleneck (16C) -> four decoder levels (2x2/2 transposed conv, concatenated with the encoder
output of that level, LeWin blocks at 16C, 8C, 4C, 2C) -> conv 3x3 -> ``input + output``.
A LeWin block is ``x + W-MSA(LN(x))`` on win x win windows (odd blocks of a level cyclically shifted by win/2,
with Swin's region mask of -100), with a relative position bias; decoder blocks add the learned modulator
(win² x dim) to the attention input only; then ``x + LeFF(LN(x))``, LeFF = Linear(d, 4d) + GELU -> depth-wise
3x3 + GELU -> Linear(4d, d). Windows and shifts are fixed at construction from ``img_size`` (the training patch
size, 128 in the official variants): a level whose resolution is <= the window has one window of that size
and no shift.

SkipAt (``skipat='feature'`` or ``'attention'``): each decoder block of ``skip_layers`` skips its window
self-attention and reuses its mirrored encoder block (same resolution, same block index, hence the same
windows and shift):
- ``'feature'``: a SkipAt parametric function Phi (``SkipAtPhi``: Linear + GELU -> depth-wise conv + GELU ->
  Linear -> ECA; hidden width ``phi_ratio`` x the decoder width) maps the encoder block's MSA output (width d)
  to the decoder width (2d) and replaces the decoder block's W-MSA branch (no ``norm1``/``attn``/modulator).
- ``'attention'``: the decoder block reuses the encoder block's attention matrices A (after the softmax; bias
  and shift mask included) and computes only values and the output projection, ``proj(A V)``. The decoder
  has r times the encoder's heads (r = 2 in every variant): decoder head h uses encoder head ``h // r``.
  The paper's FLOPs (12 -> 11, 44 -> 39, 89 -> 79 G at 256x256) fit this mode (``Uformer.flops``).

Differs from the official code:
- Any input size: inputs are padded at the bottom/right (zeros, as the official test pads) to the multiple
  that the four downsamplings and the windows need (``size_divisor``: 128 for the variants), and the output
  is cropped back; non-square inputs work (the official code takes ``H = W = sqrt(tokens)``). At multiples of
  ``size_divisor`` (the training size, SIDD's 256x256 blocks) nothing is padded.
- Tokens stay (B, H, W, C) between blocks; LeFF runs its depth-wise conv on a channels-last view; q, k, v come
  from one ``qkv`` linear (the official ``to_q``/``to_kv`` are concatenated on load); attention runs in
  ``F.scaled_dot_product_attention`` with the relative position bias as a float mask (the SW-MSA mask is only
  needed, and only applied, in the last window row and column), with the eager path behind ``fused_attn``;
  the roll and the window partition are one gather. For CPU float32 inference the linears run oneDNN's
  kernel with the bias (and LeFF's first GELU) fused (``linear``).
- Keys are the official ones except ``attn.qkv`` (``attn.qkv.to_q`` + ``attn.qkv.to_kv``), LeFF's
  ``mlp.fc1``/``mlp.dwconv``/``mlp.fc2`` (``mlp.linear1.0``/``dwconv.0``/``linear2.0``, as SkipAt's Phi) and
  ``relative_position_index``, derived and not stored (dropped from official checkpoints).
- Not ported (no official variant uses them): ``token_projection='conv'``, ``token_mlp`` 'mlp'/'ffn'/
  'fastleff', ``cross_modulator``, dilated windows, the ``mask`` argument of the forward.
"""
import functools
import math
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...official import check_kwargs, load_converted, norm_eps, register_official
from ...registry import MODELS
from ..backbones.base import (BaseBackbone, check_bool, check_image_batch, check_int, check_number,
                              check_rate, check_width)
from ..checkpoint import StateDict
from ..layers import SkipAtPhi, checkpoint_call, drop_path, init_linear_and_norm
from ..layers.fused_linear import linear

SKIPAT_MODES = (None, 'feature', 'attention')
NUM_LEVELS = 4  # encoder/decoder levels; the bottleneck is level 4

# ---------------------------------------------------------------------------------------------- windows
def _cache(maxsize: Optional[int]):
    """``functools.lru_cache`` of eager calls only. Under ``torch.jit.trace`` the traced graph then always records
    how the index/mask tensors are made, whether or not an eager call cached them before (``check_trace``
    retraces and compares the graphs); under a dispatch mode (``torch.export``'s fake tensors, FLOP counters) or
    ``torch.compile`` the tensors made there never enter the cache (a fake tensor in it would be returned to
    later eager calls)."""
    def wrap(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args):
            # is_compiling first: dynamo folds it and never reaches the dispatch-stack query (a graph break)
            if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._len_torch_dispatch_stack():
                return fn(*args)
            return cached(*args)
        call.cache_clear = cached.cache_clear
        return call
    return wrap


@_cache(maxsize=None)
def _relative_position_index(win: int, device: torch.device) -> torch.Tensor:
    """(win² * win²,) index into the (2 win - 1)² bias table, Swin's row-major layout."""
    coords = torch.stack(torch.meshgrid(torch.arange(win), torch.arange(win), indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (win - 1)
    return (rel[0] * (2 * win - 1) + rel[1]).reshape(-1).to(device)


@_cache(maxsize=32)
def _window_index(hw: Tuple[int, int], win: int, shift: int, device: torch.device
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token positions of the map rolled by ``-shift`` and cut into windows (row-major windows of row-major
    tokens), and the inverse permutation. One gather then does the roll and the partition (``torch.roll``
    followed by a permuted copy costs several times more on the CPU)."""
    H, W = hw
    pos = torch.arange(H * W, dtype=torch.int32, device=device).view(H, W)
    if shift:
        pos = pos.roll((-shift, -shift), (0, 1))
    idx = pos.view(H // win, win, W // win, win).transpose(1, 2).reshape(-1)
    inv = torch.empty_like(idx)
    inv[idx.long()] = torch.arange(idx.numel(), dtype=torch.int32, device=device)
    return idx, inv


def window_partition(x: torch.Tensor, win: int, shift: int = 0) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, win², C): the map rolled by ``-shift``, windows row-major."""
    B, H, W, C = x.shape
    if torch.compiler.is_compiling():  # inductor fuses roll + permute into one copy; the gather index would be
        if shift:                      # rebuilt inside the graph on every call
            x = x.roll((-shift, -shift), (1, 2))
        return x.view(B, H // win, win, W // win, win, C).transpose(2, 3).reshape(-1, win * win, C)
    idx, _ = _window_index((H, W), win, shift, x.device)
    return x.reshape(B, H * W, C).index_select(1, idx).view(-1, win * win, C)


def window_reverse(windows: torch.Tensor, win: int, hw: Tuple[int, int], shift: int = 0) -> torch.Tensor:
    """Inverse of ``window_partition``: (B * nW, win², C) -> (B, H, W, C)."""
    H, W = hw
    C = windows.shape[-1]
    if torch.compiler.is_compiling():  # as in window_partition
        x = windows.view(-1, H // win, W // win, win, win, C).transpose(2, 3).reshape(-1, H, W, C)
        return x.roll((shift, shift), (1, 2)) if shift else x
    _, inv = _window_index((H, W), win, shift, windows.device)
    return windows.reshape(-1, H * W, C).index_select(1, inv).view(-1, H, W, C)


def shift_attention_mask(hw: Tuple[int, int], win: int, shift: int, device=None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Swin's SW-MSA mask (nW, win², win²), as the official code builds it: the rolled map has three regions
    along each side, ``[0, n - win)``, ``[n - win, n - shift)``, ``[n - shift, n)``, and tokens of different
    regions get -100. (The model uses the equivalent ``ShiftMask``.)"""
    def regions(n: int) -> torch.Tensor:
        r = torch.zeros(n, dtype=torch.long, device=device)
        r[n - win:n - shift] = 1
        r[n - shift:] = 2
        return r

    H, W = hw
    label = regions(H)[:, None] * 3 + regions(W)[None, :]
    label = label.view(H // win, win, W // win, win).transpose(1, 2).reshape(-1, win * win)
    return (label[:, None, :] != label[:, :, None]).to(dtype) * -100.


@_cache(maxsize=32)
def _border_masks(win: int, shift: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(3, win², win²) SW-MSA masks of a window in the last window row, in the last window column and in the
    corner: every other window lies inside one region and needs none."""
    split = (torch.arange(win, device=device) >= win - shift).long() + 1  # regions 1 | 2 inside the window
    zero = torch.zeros_like(split)
    labels = [(a[:, None] * 3 + b[None, :]).reshape(-1) for a, b in ((split, zero), (zero, split), (split, split))]
    return torch.stack([(lab[:, None] != lab[None, :]).to(dtype) * -100. for lab in labels])


class ShiftMask(NamedTuple):
    """The SW-MSA mask of one level for a (B, Hn x Wn windows) batch, in the form the attention uses.

    ``masks`` (3, N, N): last window row, last window column, corner (``_border_masks``). ``border``: indices
    of the last-row and last-column windows in the (B * nW) batch; ``border_masks`` (nb, N, N) their masks
    (for one image). ``full``: (nW, N, N), set instead when most windows are border windows.
    """
    grid: Tuple[int, int, int]
    masks: torch.Tensor
    border: Optional[torch.Tensor]
    border_masks: Optional[torch.Tensor]
    full: Optional[torch.Tensor]

    @classmethod
    def build(cls, batch: int, hw: Tuple[int, int], win: int, shift: int, device, dtype) -> 'ShiftMask':
        Hn, Wn = hw[0] // win, hw[1] // win
        masks = _border_masks(win, shift, device, dtype)
        if 2 * (Hn + Wn - 1) > Hn * Wn:  # small grids: one mask for all windows
            full = masks.new_zeros(Hn, Wn, win * win, win * win)
            full[-1, :-1], full[:-1, -1], full[-1, -1] = masks
            return cls((batch, Hn, Wn), masks, None, None, full.flatten(0, 1))
        per_image = torch.cat([torch.arange(Wn, device=device) + (Hn - 1) * Wn,
                               torch.arange(Hn - 1, device=device) * Wn + Wn - 1])
        border = (torch.arange(batch, device=device)[:, None] * (Hn * Wn) + per_image).reshape(-1)
        which = torch.cat([masks.new_zeros(Wn - 1, dtype=torch.long), masks.new_full((1,), 2, dtype=torch.long),
                           masks.new_ones(Hn - 1, dtype=torch.long)])
        return cls((batch, Hn, Wn), masks, border, masks[which], None)

    def add_to(self, logits: torch.Tensor) -> torch.Tensor:
        """Add the mask to attention logits (B * nW, heads, N, N) in place."""
        B, Hn, Wn = self.grid
        grid = logits.view(B, Hn, Wn, *logits.shape[1:])
        grid[:, -1, :-1] += self.masks[0]
        grid[:, :-1, -1] += self.masks[1]
        grid[:, -1, -1] += self.masks[2]
        return logits


# ---------------------------------------------------------------------------------------------- attention
class WindowAttention(nn.Module):
    """Window MSA with a relative position bias: ``proj(softmax(q k^T / sqrt(d) + bias [+ mask]) v)``.

    Args:
        dim: Token width.
        num_heads: Heads (``dim`` must be divisible by it).
        win_size: Window side; the bias table has (2 win - 1)² rows.
        qkv_bias: Bias in the ``qkv`` projection.
        qk_scale: Attention scale (default head_dim^-0.5).
        attn_drop / proj_drop: Dropout on the attention probabilities / after ``proj``.
        fused_attn: ``F.scaled_dot_product_attention`` (True) or the eager path (False).
    """

    def __init__(self, dim: int, num_heads: int, win_size: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0., proj_drop: float = 0.,
                 fused_attn: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.win_size = win_size
        self.fused_attn = fused_attn
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * win_size - 1) ** 2, num_heads, **dd))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self) -> torch.Tensor:
        """(1, heads, win², win²)."""
        table = self.relative_position_bias_table
        N = self.win_size ** 2
        bias = table[_relative_position_index(self.win_size, table.device)]
        return bias.view(N, N, self.num_heads).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, shift_mask: Optional[ShiftMask] = None,
                return_attn: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Args:
            x: Windows (B * nW, win², C), batch-major.
            shift_mask: The SW-MSA mask, or None.
            return_attn: Also return the attention probabilities (B * nW, heads, win², win²) (eager path).
        """
        B_, N, C = x.shape
        qkv = linear(x, self.qkv)
        bias = self.relative_position_bias().to(qkv.dtype)
        attn = None
        if not self.fused_attn or return_attn:
            q, k, v = self._split_heads(qkv)
            logits = (q * self.scale) @ k.transpose(-2, -1) + bias
            if shift_mask is not None:
                shift_mask.add_to(logits)
            attn = logits.softmax(-1)
            x = self._merge_heads(self.attn_drop(attn) @ v)
        elif shift_mask is not None and shift_mask.full is not None:
            mask = (bias + shift_mask.full.unsqueeze(1).to(bias.dtype)).repeat(B_ // shift_mask.full.shape[0], 1, 1, 1)
            x = self._merge_heads(self._sdpa(*self._split_heads(qkv), mask))
        else:
            # The CPU kernels are fast with a 4-d mask of batch 1 (or the full batch): attend with the bias
            # alone, then redo the windows of the last window row and column with their shift masks.
            x = self._merge_heads(self._sdpa(*self._split_heads(qkv), bias))
            if shift_mask is not None:
                b = shift_mask.border
                mask = (bias + shift_mask.border_masks.unsqueeze(1).to(bias.dtype)).repeat(shift_mask.grid[0], 1, 1, 1)
                xb = self._merge_heads(self._sdpa(*self._split_heads(qkv.index_select(0, b)), mask))
                x = x.index_copy(0, b, xb) if torch.is_grad_enabled() else x.index_copy_(0, b, xb)
        return self.proj_drop(linear(x, self.proj)), attn

    def _split_heads(self, qkv: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        B_, N, _ = qkv.shape
        return qkv.view(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    @staticmethod
    def _merge_heads(x: torch.Tensor) -> torch.Tensor:
        B_, h, N, d = x.shape
        return x.transpose(1, 2).reshape(B_, N, h * d)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                              dropout_p=self.attn_drop.p if self.training else 0.)

    def flops(self, num_tokens: int) -> float:
        """MACs on ``num_tokens`` tokens, the official ``flops()`` convention."""
        C = self.num_heads * self.head_dim
        N = self.win_size ** 2
        return num_tokens * (3 * C * C + 2 * N * C + C * C)


class AttentionReuse(nn.Module):
    """SkipAt 'attention' mode: ``proj(A v(x))`` with the attention A of another block.

    A has ``src_heads`` heads; the ``dim`` channels of v are split into ``src_heads`` groups (decoder heads
    ``h * r .. h * r + r - 1`` of width ``dim / (r * src_heads)`` form group h, so decoder head h uses
    source head ``h // r``).
    """

    def __init__(self, dim: int, src_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.src_heads = src_heads
        self.v = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        B_, N, C = x.shape
        if attn.shape != (B_, self.src_heads, N, N):
            raise ValueError(f'reused attention {tuple(attn.shape)} does not fit {B_} windows of {N} tokens '
                             f'and {self.src_heads} heads')
        v = linear(x, self.v).view(B_, N, self.src_heads, C // self.src_heads).transpose(1, 2)
        x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(linear(x, self.proj))

    def flops(self, num_tokens: int, win_tokens: int) -> float:
        C = self.v.in_features
        return num_tokens * (C * C + win_tokens * C + C * C)


class LeFF(SkipAtPhi):
    """Uformer's LeFF: Linear(d, h) + GELU -> depth-wise 3x3 + GELU -> Linear(h, d), no ECA: SkipAt's Phi with a
    3x3 conv (same keys, ``fc1``/``dwconv``/``fc2``). Without autograd, the first GELU is fused into ``fc1``
    (``linear``) and the second runs in place on the conv's fresh output."""

    def __init__(self, dim: int, hidden_dim: int, device=None, dtype=None) -> None:
        super().__init__(dim, hidden_dim, kernel_size=3, use_eca=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
        B, N, _ = x.shape
        H, W = hw_shape
        h = linear(x, self.fc1, 'gelu')
        h = self.dwconv(h.view(B, H, W, h.shape[-1]).permute(0, 3, 1, 2))  # channels-last view, no copy
        h = (F.gelu(h) if torch.is_grad_enabled() and h.requires_grad else torch.ops.aten.gelu_(h))
        return linear(h.permute(0, 2, 3, 1).reshape(B, N, h.shape[1]), self.fc2)


def _leff_flops(m: SkipAtPhi, num_tokens: int) -> float:
    k = m.dwconv.kernel_size[0] * m.dwconv.kernel_size[1]
    hidden = m.fc1.out_features
    eca = m.fc2.out_features * 3 if isinstance(m.eca, nn.Module) and hasattr(m.eca, 'conv') else 0
    return num_tokens * (m.fc1.in_features * hidden + hidden * k + hidden * m.fc2.out_features) + eca


# ---------------------------------------------------------------------------------------------- blocks
class LeWinBlock(nn.Module):
    """LeWin transformer block on (B, H, W, C) maps.

    Args:
        dim: Width.
        num_heads: Heads of the window attention.
        win_size: Window side (already clamped to the level's resolution).
        shift_size: Cyclic shift (0 or win_size // 2).
        mlp_ratio: LeFF hidden width over ``dim``.
        qkv_bias / qk_scale / drop / attn_drop / drop_path_rate / norm_eps: As in ``Uformer``.
        modulator_rows: Rows of the modulator (win_size² of the constructor's window), 0 for none.
        mode: ``'msa'`` (W-MSA), ``'phi'`` (SkipAt feature mode) or ``'reuse'`` (SkipAt attention mode).
        src_dim / src_heads: Width / heads of the mirrored encoder block (``'phi'`` / ``'reuse'``).
        phi_ratio / phi_kernel: Phi's hidden width over ``dim`` and depth-wise kernel (``'phi'``).
        fused_attn: SDPA or the eager attention path.
    """

    def __init__(self, dim: int, num_heads: int, win_size: int, shift_size: int = 0, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0., attn_drop: float = 0.,
                 drop_path_rate: float = 0., norm_eps: float = 1e-5, modulator_rows: int = 0, mode: str = 'msa',
                 src_dim: Optional[int] = None, src_heads: Optional[int] = None, phi_ratio: float = 2.,
                 phi_kernel: int = 5, fused_attn: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dim, self.win_size, self.shift_size, self.mode = dim, win_size, shift_size, mode
        if mode == 'phi':
            self.phi = SkipAtPhi(src_dim, int(dim * phi_ratio), phi_kernel, use_eca=True, out_dim=dim, **dd)
        else:
            self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
            self.attn = (WindowAttention(dim, num_heads, win_size, qkv_bias, qk_scale, attn_drop, drop, fused_attn,
                                         **dd) if mode == 'msa' else
                         AttentionReuse(dim, src_heads, qkv_bias, attn_drop, drop, **dd))
            self.modulator = nn.Embedding(modulator_rows, dim, **dd) if modulator_rows else None
        self.drop_path1 = drop_path(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = LeFF(dim, int(dim * mlp_ratio), **dd)
        self.drop_path2 = drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor, shift_mask: Optional[ShiftMask] = None,
                src: Optional[torch.Tensor] = None, keep: Optional[str] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Args:
            x: (B, H, W, C).
            shift_mask: The level's SW-MSA mask (used when this block shifts).
            src: What the mirrored encoder block kept: its MSA output (B, H, W, C_src) for ``'phi'``, its
                attention (B * nW, heads, win², win²) for ``'reuse'``.
            keep: ``'msa'`` or ``'attn'``: also return this block's MSA output / attention probabilities.
        Returns:
            The block output and what was kept (or None).
        """
        B, H, W, C = x.shape
        kept = None
        if self.mode == 'phi':
            branch = self.phi(src.reshape(B, H * W, src.shape[-1]), (H, W)).view(B, H, W, C)
        else:
            windows = window_partition(self.norm1(x), self.win_size, self.shift_size)
            if self.modulator is not None:
                windows = windows.add_(self.modulator.weight)  # a fresh copy: in place is safe
            if self.mode == 'msa':
                out, kept = self.attn(windows, shift_mask if self.shift_size else None, return_attn=keep == 'attn')
            else:
                out = self.attn(windows, src)
            branch = window_reverse(out, self.win_size, (H, W), self.shift_size)
        if keep == 'msa':
            kept = branch
            x = x + self.drop_path1(branch)
        else:  # residuals go in place into the fresh branch outputs (a + b == b + a in floating point)
            x = self.drop_path1(branch).add_(x)
        y = self.mlp(self.norm2(x).view(B, H * W, C), (H, W)).view(B, H, W, C)
        return self.drop_path2(y).add_(x), kept

    def flops(self, hw: Tuple[int, int]) -> float:
        """MACs in the official ``flops()`` convention (LayerNorms count ``dim`` per token)."""
        n = hw[0] * hw[1]
        f = self.dim * n + _leff_flops(self.mlp, n)
        if self.mode == 'phi':
            return f + _leff_flops(self.phi, n)
        f += self.dim * n
        if self.mode == 'msa':
            return f + self.attn.flops(n)
        return f + self.attn.flops(n, self.win_size ** 2)


class UformerLayer(nn.Module):
    """``depth`` LeWin blocks at one resolution (the official ``BasicUformerLayer``)."""

    def __init__(self, dim: int, depth: int, num_heads: int, resolution: int, win_size: int, shift: bool,
                 drop_path_rates: Sequence[float], modulator: bool = False, mode: str = 'msa',
                 src_dim: Optional[int] = None, src_heads: Optional[int] = None, **block_kwargs) -> None:
        super().__init__()
        # The official rule, decided at construction: a level not larger than the window is one window.
        self.win_size = min(resolution, win_size)
        shift_size = win_size // 2 if shift and resolution > win_size else 0
        rows = win_size * win_size if modulator else 0
        self.blocks = nn.ModuleList([
            LeWinBlock(dim, num_heads, self.win_size, shift_size if i % 2 else 0,
                       drop_path_rate=drop_path_rates[i], modulator_rows=rows, mode=mode, src_dim=src_dim,
                       src_heads=src_heads, **block_kwargs)
            for i in range(depth)])

    def forward(self, x: torch.Tensor, srcs: Optional[Sequence[torch.Tensor]] = None,
                keep: Optional[str] = None, with_cp: bool = False
                ) -> Tuple[torch.Tensor, List[Optional[torch.Tensor]]]:
        """``with_cp``: each block activation-checkpointed (what it keeps for the decoder is an output)."""
        shifts = {blk.shift_size for blk in self.blocks if blk.shift_size and blk.mode == 'msa'}
        mask = (ShiftMask.build(x.shape[0], x.shape[1:3], self.win_size, shifts.pop(), x.device, x.dtype)
                if shifts else None)
        kept = []
        for i, blk in enumerate(self.blocks):
            x, k = checkpoint_call(blk, x, mask, srcs[i] if srcs is not None else None, keep, enabled=with_cp)
            kept.append(k)
        return x, kept


class Downsample(nn.Module):
    """Conv 4x4/2 (pad 1) on (B, H, W, C) maps."""

    def __init__(self, in_channels: int, out_channels: int, device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, 2, 1, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


class Upsample(nn.Module):
    """Transposed conv 2x2/2 on (B, H, W, C) maps."""

    def __init__(self, in_channels: int, out_channels: int, device=None, dtype=None) -> None:
        super().__init__()
        self.deconv = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, 2, device=device,
                                                       dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


class ConvProj(nn.Module):
    """Conv 3x3 (+ activation): the official ``InputProj`` (LeakyReLU) and ``OutputProj`` (none)."""

    def __init__(self, in_channels: int, out_channels: int, act: Optional[nn.Module] = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        layers = [nn.Conv2d(in_channels, out_channels, 3, 1, 1, device=device, dtype=dtype)]
        self.proj = nn.Sequential(*layers, *([act] if act is not None else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


# ---------------------------------------------------------------------------------------------- model
@MODELS.register_module()
class Uformer(BaseBackbone):
    """Uformer (and SkipAt-Uformer) image restoration network: ``forward(x)`` returns the restored image.

    Args:
        arch: ``'t'``, ``'s'``, ``'b'`` (``arch_zoo``) or a dict with ``embed_dims``, ``depths`` (9 ints:
            four encoder levels, bottleneck, four decoder levels) and ``num_heads`` (9 ints).
        img_size: Training patch size; decides each level's window and shift as the official constructor
            does (128 for the official variants, whose bottleneck then uses one 8x8 window, unshifted).
        in_channels: Input channels (official ``dd_in``).
        out_channels: Output channels (official ``in_chans``).
        win_size: Window side.
        mlp_ratio: LeFF hidden width over the block width.
        qkv_bias: Bias in the q/k/v projection.
        qk_scale: Attention scale (default head_dim^-0.5).
        drop_rate / attn_drop_rate / drop_path_rate: Regularisation (the official default drop path is 0.1,
            linear over the encoder, mirrored in the decoder, constant in the bottleneck).
        norm_eps: LayerNorm epsilon.
        shift: Shift the odd blocks of every level (official ``shift_flag``).
        modulator: Learned modulator in the decoder blocks (on in every official variant).
        residual: Return ``input + network(input)`` (official: when ``dd_in == 3``); needs
            ``in_channels == out_channels``.
        skipat: ``None``, ``'feature'`` or ``'attention'``: decoder-side SkipAt (module docstring).
        skip_layers: Decoder levels (0 = the bottom one, at 16C) whose blocks skip attention.
        phi_ratio / phi_kernel: Phi's hidden width over the decoder width, and its depth-wise kernel
            (``'feature'`` mode; SkipAt uses 2 and 5).
        pad_mode: ``F.pad`` mode of the bottom/right padding to ``size_divisor`` (``'constant'``: zeros).
        fused_attn: SDPA (True) or the eager attention path.
        with_cp: Gradient (activation) checkpointing in training: every LeWin block (encoder, bottleneck,
            decoder) runs under ``torch.utils.checkpoint`` (``layers/grad_checkpoint.py``); the MSA output or
            attention an encoder block keeps for its SkipAt decoder mirror is an output of that call. Same
            outputs and gradients, less memory (the official ``use_checkpoint``).
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads official or mmevit checkpoints.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny', 'uformer-t', 'uformer_t'],
                        dict(embed_dims=16, depths=[2] * 9, num_heads=[1, 2, 4, 8, 16, 16, 8, 4, 2])),
        **dict.fromkeys(['s', 'small', 'uformer-s', 'uformer_s'],
                        dict(embed_dims=32, depths=[2] * 9, num_heads=[1, 2, 4, 8, 16, 16, 8, 4, 2])),
        **dict.fromkeys(['b', 'base', 'uformer-b', 'uformer_b'],
                        dict(embed_dims=32, depths=[1, 2, 8, 8, 2, 8, 8, 2, 1],
                             num_heads=[1, 2, 4, 8, 16, 16, 8, 4, 2])),
    }
    essential_keys = {'embed_dims', 'depths', 'num_heads'}
    head_prefixes = ()  # no classifier head: every key is the network's

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 128,
                 in_channels: int = 3,
                 out_channels: int = 3,
                 win_size: int = 8,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 norm_eps: float = 1e-5,
                 shift: bool = True,
                 modulator: bool = True,
                 residual: bool = True,
                 skipat: Optional[str] = None,
                 skip_layers: Sequence[int] = (0, 1, 2, 3),
                 phi_ratio: float = 2.,
                 phi_kernel: int = 5,
                 pad_mode: str = 'constant',
                 fused_attn: bool = True,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 device=None, dtype=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._resolve_arch(arch)
        C, depths, heads = self.arch['embed_dims'], self.arch['depths'], self.arch['num_heads']
        self.embed_dims = C
        self.img_size = check_int(img_size, 'img_size', minimum=2 ** NUM_LEVELS)
        self.win_size = check_int(win_size, 'win_size')
        self.in_channels = check_int(in_channels, 'in_channels')
        self.out_channels = check_int(out_channels, 'out_channels')
        for name, flag in (('residual', residual), ('modulator', modulator), ('shift', shift),
                           ('qkv_bias', qkv_bias), ('fused_attn', fused_attn)):
            check_bool(flag, name)
        if residual and in_channels != out_channels:
            raise ValueError(f'residual=True adds the input to the output: in_channels ({in_channels}) must '
                             f'equal out_channels ({out_channels})')
        self.residual = residual
        if modulator and self.img_size // 2 ** (NUM_LEVELS - 1) < win_size:
            raise ValueError(f'the modulator has win_size² = {win_size ** 2} rows, so every decoder level needs '
                             f'full {win_size}x{win_size} windows: img_size must be >= '
                             f'{win_size * 2 ** (NUM_LEVELS - 1)}, got {img_size}')
        if skipat not in SKIPAT_MODES:
            raise ValueError(f'skipat must be one of {SKIPAT_MODES}, got {skipat!r}')
        self.skipat = skipat
        self.skip_layers = self._resolve_skip_layers(skip_layers)
        if check_int(phi_kernel, 'phi_kernel') % 2 == 0:
            raise ValueError(f'phi_kernel must be odd (a "same" depth-wise conv), got {phi_kernel}')
        # Hidden widths: LeFF's (mlp_ratio x the narrowest block, C) and Phi's (phi_ratio x the narrowest
        # decoder block, 2C) must be >= 1.
        check_width(C, mlp_ratio, 'mlp_ratio')
        check_width(2 * C, phi_ratio, 'phi_ratio')
        if qk_scale is not None:
            check_number(qk_scale, 'qk_scale')
        check_number(norm_eps, 'norm_eps')
        for name, rate in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                           ('drop_path_rate', drop_path_rate)):
            check_rate(rate, name)
        if pad_mode not in ('constant', 'reflect', 'replicate', 'circular'):
            raise ValueError(f"pad_mode must be 'constant', 'reflect', 'replicate' or 'circular', got {pad_mode!r}")
        self.pad_mode = pad_mode
        self.with_cp = bool(with_cp)

        dd = dict(device=device, dtype=dtype)
        blk = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                   attn_drop=attn_drop_rate, norm_eps=norm_eps, phi_ratio=phi_ratio, phi_kernel=phi_kernel,
                   fused_attn=fused_attn, **dd)
        # Official stochastic depth: linear over the encoder blocks, reversed for the decoder, constant
        # (the maximum) in the bottleneck.
        enc_depth = sum(depths[:NUM_LEVELS])
        enc_dpr = [drop_path_rate * i / (enc_depth - 1) if enc_depth > 1 else 0. for i in range(enc_depth)]
        dec_dpr = enc_dpr[::-1]

        self.input_proj = ConvProj(in_channels, C, nn.LeakyReLU(inplace=True), **dd)
        self.pos_drop = nn.Dropout(drop_rate)
        start = 0
        for i in range(NUM_LEVELS):
            setattr(self, f'encoderlayer_{i}', UformerLayer(
                C * 2 ** i, depths[i], heads[i], self.img_size // 2 ** i, win_size, shift,
                enc_dpr[start:start + depths[i]], **blk))
            setattr(self, f'dowsample_{i}', Downsample(C * 2 ** i, C * 2 ** (i + 1), **dd))
            start += depths[i]
        self.conv = UformerLayer(C * 16, depths[4], heads[4], self.img_size // 16, win_size, shift,
                                 [drop_path_rate] * depths[4], **blk)
        start = 0
        for i in range(NUM_LEVELS):
            up_in = C * 16 if i == 0 else C * 2 ** (NUM_LEVELS + 1 - i)
            dim = C * 2 ** (NUM_LEVELS - i)
            setattr(self, f'upsample_{i}', Upsample(up_in, dim // 2, **dd))
            mirror = NUM_LEVELS - 1 - i
            mode = {None: 'msa', 'feature': 'phi', 'attention': 'reuse'}[skipat if i in self.skip_layers else None]
            setattr(self, f'decoderlayer_{i}', UformerLayer(
                dim, depths[5 + i], heads[5 + i], self.img_size // 2 ** mirror, win_size, shift,
                dec_dpr[start:start + depths[5 + i]], modulator=modulator, mode=mode, src_dim=C * 2 ** mirror,
                src_heads=heads[mirror], **blk))
            start += depths[5 + i]
        self.output_proj = ConvProj(2 * C, out_channels, **dd)

        # Every level's resolution must be a multiple of its window at run time.
        wins = [self._layer(i).win_size * 2 ** i for i in range(NUM_LEVELS)] + [self.conv.win_size * 16]
        self.size_divisor = functools.reduce(lambda a, b: a * b // math.gcd(a, b), wins)
        if not self.is_meta():
            self.reset_parameters()

    # ------------------------------------------------------------------ construction helpers
    def _resolve_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            return self.lookup_arch(arch)
        arch = self.lookup_arch(arch)
        C = check_int(arch['embed_dims'], "arch['embed_dims']")
        out = dict(arch, embed_dims=C)
        for key in ('depths', 'num_heads'):
            val = arch[key]
            if isinstance(val, (str, bytes)) or not isinstance(val, Sequence) or len(val) != 2 * NUM_LEVELS + 1:
                raise ValueError(f"arch[{key!r}] must be 9 ints (4 encoder levels, bottleneck, 4 decoder "
                                 f"levels), got {val!r}")
            out[key] = [check_int(v, f'arch[{key!r}] entry') for v in val]
        widths = [C * 2 ** i for i in range(NUM_LEVELS + 1)] + [C * 2 ** (NUM_LEVELS - i) for i in range(NUM_LEVELS)]
        for level, (w, h) in enumerate(zip(widths, out['num_heads'])):
            if w % h:
                raise ValueError(f'level {level}: width {w} is not divisible by num_heads {h}')
        return out

    def _resolve_skip_layers(self, skip_layers: Sequence[int]) -> Tuple[int, ...]:
        """Decoder levels that skip attention, in any order; checked (types, range) also without ``skipat``,
        where they are unused (so a typo is not silently ignored)."""
        if isinstance(skip_layers, (str, bytes)) or not isinstance(skip_layers, Sequence):
            raise TypeError(f'skip_layers must be a sequence of decoder levels (0-3), got {skip_layers!r}')
        layers = tuple(check_int(i, 'skip_layers entry', minimum=0) for i in skip_layers)
        if len(set(layers)) != len(layers) or (layers and max(layers) >= NUM_LEVELS) \
                or (self.skipat and not layers):
            raise ValueError(f'skip_layers must be distinct decoder levels in 0..3, got {skip_layers!r}')
        if not self.skipat:
            return ()
        depths, heads = self.arch['depths'], self.arch['num_heads']
        for i in layers:
            mirror = NUM_LEVELS - 1 - i
            if depths[5 + i] != depths[mirror]:
                raise ValueError(f'SkipAt: decoder level {i} has {depths[5 + i]} blocks but its mirrored encoder '
                                 f'level {mirror} has {depths[mirror]}: block j reuses encoder block j')
            if self.skipat == 'attention' and heads[5 + i] % heads[mirror]:
                raise ValueError(f"skipat='attention': decoder level {i} has {heads[5 + i]} heads, not a "
                                 f'multiple of the {heads[mirror]} heads of encoder level {mirror}')
        return tuple(sorted(layers))

    def _layer(self, i: int, part: str = 'encoder') -> UformerLayer:
        return getattr(self, f'{part}layer_{i}')

    def is_meta(self) -> bool:
        return self.output_proj.proj[0].weight.device.type == 'meta'

    def reset_parameters(self) -> None:
        """The official init: trunc-normal(0.02) linears with zero bias, unit LayerNorms, trunc-normal(0.02)
        bias tables; convolutions and the modulator (an ``nn.Embedding``, N(0, 1)) keep PyTorch's defaults, and
        so does SkipAt's Phi (as in the SkipAt code)."""
        for name, m in self.named_modules():
            if '.phi' in name:
                continue
            if init_linear_and_norm(m):
                continue
            if isinstance(m, WindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=.02)

    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        return convert_uformer_state_dict(state_dict, self)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` (B, in_channels, H, W), any H and W; returns (B, out_channels, H, W)."""
        check_image_batch(x, self.in_channels, self.output_proj.proj[0].weight.dtype)
        H, W = x.shape[-2:]
        pad_h, pad_w = -H % self.size_divisor, -W % self.size_divisor
        # F.pad's reflect needs padding < side, circular padding <= side.
        slack = 0 if self.pad_mode == 'reflect' else 1
        if self.pad_mode in ('reflect', 'circular') and (pad_h >= H + slack or pad_w >= W + slack):
            raise ValueError(f'pad_mode={self.pad_mode!r} cannot pad a {H}x{W} input to {H + pad_h}x{W + pad_w} '
                             f'(a multiple of size_divisor={self.size_divisor}): its padding must be '
                             f'{"smaller than" if self.pad_mode == "reflect" else "at most"} the side; use a larger '
                             "input, or pad_mode='constant' or 'replicate'")
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=self.pad_mode)
        out = self.forward_aligned(x)
        return out[:, :, :H, :W].contiguous() if pad_h or pad_w else out

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """The official forward, on an input whose sides are multiples of ``size_divisor``."""
        if x.shape[-2] % self.size_divisor or x.shape[-1] % self.size_divisor:
            raise ValueError(f'forward_aligned needs sides divisible by {self.size_divisor}, got '
                             f'{tuple(x.shape[-2:])} (forward pads any size)')
        y = self.input_proj(x.contiguous(memory_format=torch.channels_last))
        y = self.pos_drop(y.permute(0, 2, 3, 1).contiguous())  # (B, H, W, C) from here on
        keep = {'feature': 'msa', 'attention': 'attn'}.get(self.skipat)
        cp = self.with_cp and self.training
        skips, mirrors = [], []
        for i in range(NUM_LEVELS):
            y, kept = self._layer(i)(y, keep=keep if NUM_LEVELS - 1 - i in self.skip_layers else None, with_cp=cp)
            skips.append(y)
            mirrors.append(kept)
            y = getattr(self, f'dowsample_{i}')(y)
        y, _ = self.conv(y, with_cp=cp)
        for i in range(NUM_LEVELS):
            y = torch.cat([getattr(self, f'upsample_{i}')(y), skips[NUM_LEVELS - 1 - i]], dim=-1)
            srcs = mirrors[NUM_LEVELS - 1 - i] if i in self.skip_layers else None
            y, _ = self._layer(i, 'decoder')(y, srcs, with_cp=cp)
        out = self.output_proj(y.permute(0, 3, 1, 2))
        return (x + out if self.residual else out).contiguous()

    # ------------------------------------------------------------------ analysis
    def flops(self, hw: Optional[Tuple[int, int]] = None) -> float:
        """MACs of one forward at ``hw`` (default ``img_size``; padded to ``size_divisor``), counted as the
        official ``Uformer.flops()`` does: convolutions, linears, the two attention matmuls and LayerNorms (one
        per channel and token); activations, softmax and ECA's pooling are not counted."""
        H, W = hw or (self.img_size, self.img_size)
        H, W = H + -H % self.size_divisor, W + -W % self.size_divisor
        C = self.embed_dims
        f = H * W * self.in_channels * C * 9 + H * W * 2 * C * self.out_channels * 9
        for i in range(NUM_LEVELS):
            h, w = H // 2 ** i, W // 2 ** i
            f += sum(b.flops((h, w)) for b in self._layer(i).blocks)
            f += sum(b.flops((h, w)) for b in self._layer(NUM_LEVELS - 1 - i, 'decoder').blocks)
            f += (h // 2) * (w // 2) * C * 2 ** i * C * 2 ** (i + 1) * 16  # downsample
            up = getattr(self, f'upsample_{NUM_LEVELS - 1 - i}').deconv[0]
            f += h * w * up.in_channels * up.out_channels * 4
        f += sum(b.flops((H // 16, W // 16)) for b in self.conv.blocks)
        return float(f)


# ---------------------------------------------------------------------------------------------- checkpoints
_LEFF_RENAMES = (('.mlp.linear1.0.', '.mlp.fc1.'), ('.mlp.dwconv.0.', '.mlp.dwconv.'),
                 ('.mlp.linear2.0.', '.mlp.fc2.'))
_QKV_SPLIT = re.compile(r'^(.*\.attn)\.qkv\.to_(q|kv)\.(weight|bias)$')


def resize_bias_table(table: torch.Tensor, rows: int) -> torch.Tensor:
    """Bicubic resize of a ((2w-1)², heads) relative position bias table to ``rows`` rows (Swin's rule)."""
    src, dst = math.isqrt(table.shape[0]), math.isqrt(rows)
    if src * src != table.shape[0] or dst * dst != rows:
        raise ValueError(f'bias tables must have a square number of rows, got {table.shape[0]} -> {rows}')
    grid = table.float().T.reshape(1, -1, src, src)
    out = F.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
    return out.reshape(-1, dst * dst).T.to(table.dtype)


def convert_uformer_state_dict(source: StateDict, model: Uformer) -> Tuple[StateDict, List[str]]:
    """Official Uformer or mmevit state dict -> ``model``'s keys.

    Official ``attn.qkv.to_q``/``to_kv`` are concatenated into ``attn.qkv``, LeFF keys renamed, the derived
    ``relative_position_index`` buffers dropped, bias tables of another window size resized. For SkipAt
    decoder blocks, a baseline checkpoint gives the values' part of ``qkv`` (``'attention'`` mode) and its
    unused weights (attention, ``norm1``, modulator in ``'feature'`` mode; queries, keys and the bias table in
    ``'attention'`` mode) are dropped. Returns ``(state, dropped source keys)``.
    """
    origin: Dict[str, List[str]] = {}  # our key -> the source keys it comes from
    state: StateDict = {}
    parts: Dict[str, Dict[str, Tuple[str, torch.Tensor]]] = {}
    for key, value in source.items():
        if key.endswith('.attn.relative_position_index'):
            continue
        m = _QKV_SPLIT.match(key)
        if m:
            parts.setdefault(f'{m[1]}.qkv.{m[3]}', {})[m[2]] = (key, value)
            continue
        new = key
        for old, rep in _LEFF_RENAMES:
            new = new.replace(old, rep)
        state[new] = value
        origin[new] = [key]
    for key, qkv in parts.items():
        if set(qkv) != {'q', 'kv'}:
            raise KeyError(f'official checkpoint has only to_{"".join(qkv)} for {key}: to_q and to_kv go together')
        state[key] = torch.cat([qkv['q'][1], qkv['kv'][1]], dim=0)
        origin[key] = [qkv['q'][0], qkv['kv'][0]]

    own = {k: v.shape for k, v in model.state_dict().items()}
    for i in model.skip_layers:
        for j, blk in enumerate(model._layer(i, 'decoder').blocks):
            p = f'decoderlayer_{i}.blocks.{j}.'
            if blk.mode == 'phi':
                for k in [k for k in state if k.startswith((p + 'norm1.', p + 'attn.', p + 'modulator.'))]:
                    del state[k]
            elif blk.mode == 'reuse':
                state.pop(p + 'attn.relative_position_bias_table', None)
                for suffix in ('weight', 'bias'):
                    qkv = state.pop(p + f'attn.qkv.{suffix}', None)
                    if qkv is not None:
                        C = qkv.shape[0] // 3
                        state[p + f'attn.v.{suffix}'] = qkv[2 * C:]
                        src = origin[p + f'attn.qkv.{suffix}']
                        origin[p + f'attn.v.{suffix}'] = [s for s in src if not s.endswith(f'to_q.{suffix}')]
    for key, value in list(state.items()):
        if key.endswith('relative_position_bias_table') and key in own and value.shape != own[key]:
            state[key] = resize_bias_table(value, own[key][0])
    used = {s for k in state for s in origin.get(k, [k])}
    return state, [k for k in source if k not in used]


@register_official('uformer')
def uformer_from_official(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Official ``Uformer(**arch)`` -> ``Uformer`` with the weights converted (eval mode); calling it on the
    official input returns the restored image."""
    check_kwargs(arch, _OFFICIAL_KNOWN, 'Uformer')
    for key, supported in (('token_projection', 'linear'), ('token_mlp', 'leff'), ('cross_modulator', False)):
        if arch.get(key, supported) != supported:
            raise ValueError(f'official {key}={arch[key]!r} is not ported (only {supported!r})')
    dd_in = int(arch.get('dd_in', 3))
    model = Uformer(
        arch=dict(embed_dims=int(arch.get('embed_dim', 32)), depths=list(arch.get('depths', [2] * 9)),
                  num_heads=list(arch.get('num_heads', [1, 2, 4, 8, 16, 16, 8, 4, 2]))),
        img_size=int(arch.get('img_size', 256)), in_channels=dd_in, out_channels=int(arch.get('in_chans', 3)),
        win_size=int(arch.get('win_size', 8)), mlp_ratio=float(arch.get('mlp_ratio', 4.)),
        qkv_bias=bool(arch.get('qkv_bias', True)), qk_scale=arch.get('qk_scale'), drop_path_rate=0.,
        norm_eps=norm_eps(arch.get('norm_layer'), 1e-5), shift=bool(arch.get('shift_flag', True)),
        modulator=bool(arch.get('modulator', False)), residual=dd_in == 3,
        with_cp=bool(arch.get('use_checkpoint', False)))
    return load_converted(model, state_dict)


# Official kwargs; dropout rates only matter for training and are accepted and ignored (``use_checkpoint``
# becomes ``with_cp``, which also acts in training only).
_OFFICIAL_KNOWN = {'img_size', 'in_chans', 'dd_in', 'embed_dim', 'depths', 'num_heads', 'win_size', 'mlp_ratio',
                   'qkv_bias', 'qk_scale', 'drop_rate', 'attn_drop_rate', 'drop_path_rate', 'norm_layer',
                   'patch_norm', 'use_checkpoint', 'token_projection', 'token_mlp', 'shift_flag', 'modulator',
                   'cross_modulator'}
