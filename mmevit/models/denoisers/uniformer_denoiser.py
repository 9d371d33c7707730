"""A U-shaped UniFormer video denoiser, and its SkipAt variant (decoder attention reuse).

Paper: Venkataramanan et al., "Skip-Attention: Improving Vision Transformers by Paying Less Attention", ICLR 2024
(arXiv 2301.02240), video denoising on DAVIS: "UniFormer, a U-shaped hybrid encoder-decoder with 3D convolutions
and spatio-temporal global self-attention blocks", trained multi-input multi-output on 7-frame 128x128 clips
with a Charbonnier loss at Gaussian noise sigma = 30; SkipAt "reuses the window self-attention matrix A of the
corresponding encoder block using an Identity function" (35.24 -> 35.16 dB, 17 % fewer FLOPs). No code was
released, so this network is designed here from that description and from UniFormer's blocks (Li et al., ICLR
2022, github.com/Sense-X/UniFormer, Apache-2.0: ``CBlock`` and ``SABlock``).

Network (C = ``embed_dims``; maps are (B, T, H, W, C) inside; the time axis is never downsampled):

- ``input_proj``: Conv3d 3x3x3 (3 -> C) + LeakyReLU.
- Encoder levels 0 .. 2 (widths C, 2C, 4C at 1, 1/2, 1/4 resolution), each ``depths[i]`` blocks followed by a
  per-frame 4x4/2 Conv3d (kernel (1, 4, 4)); the bottleneck (level 3, 8C, 1/8 resolution) has ``depths[3]``
  blocks.
- Decoder levels 2 .. 0 mirror the encoder: a per-frame 2x2/2 transposed Conv3d halves the width, the encoder
  output of that level is concatenated and a 1x1x1 conv (``fuse``) brings 2d back to d, then ``depths[i]``
  blocks of the same kind and width as encoder level i.
- ``output_proj``: Conv3d 3x3x3 (C -> 3); the result is ``input + output`` (global residual).
- Levels below ``conv_levels`` use UniFormer local blocks (``LocalBlock`` = ``CBlock``: ``x += DWConv3d_3(x)``,
  ``x += conv1x1 -> DWConv3d_5 -> conv1x1 (LN(x))``, ``x += MLP(LN(x))``); the others use spatio-temporal
  window self-attention blocks (``WindowSABlock`` = ``SABlock`` with 3D windows: ``x += DWConv3d_3(x)``,
  ``x += W-MSA(LN(x))`` over (t, w, w) windows, ``x += MLP(LN(x))``). A window spans ``window_size[0]``
  frames (the whole clip when it is shorter: 7-frame clips are one temporal window) and w x w pixels.
- SkipAt (``skip_attention=True``): every decoder attention block reuses the attention probabilities A of its
  mirrored encoder block (same level, same block index, hence the same windows) and computes only values and
  the output projection, ``proj(A v(LN(x)))``; its q/k projections do not exist. Decoder head h uses encoder
  head ``h // r`` (r = decoder heads / encoder heads, 1 for the built-in archs). The encoder computes A eagerly
  only in that mode (otherwise attention runs in ``F.scaled_dot_product_attention`` unless ``fused_attn`` is
  False).

Default arch ``'s'`` (``conv_levels=1``): C = 24; level 0 (C, full resolution): 1 local block; levels 1, 2
(2C, 4C at 1/2, 1/4) and the bottleneck (8C at 1/8): 4, 6 and 1 window-attention blocks with 3, 6 and 12 heads
(head width 16); window (7, 8, 8) = 448 tokens; MLP ratio 2. The decoder mirrors levels 0-2 (1, 4, 6 blocks),
so 10 decoder attention blocks reuse attention. Per 7 x 128 x 128 clip (multiply-accumulates, ``flops()``:
convolutions, linears and both attention matmuls, which is ``torch.utils.flop_counter``'s count on the eager
path, halved): baseline 33.65 G, SkipAt 28.02 G (-16.7 %, the paper's 17 %); 1.92 M / 1.79 M parameters.
``'t'``: C = 16, depths (1, 2, 4, 1), heads (2, 4, 8): 12.30 G -> 10.31 G (-16.2 %), 0.69 M / 0.66 M parameters.
The share saved is what reuse can save: per decoder attention block and token, the q/k projections (2 d²) and
q k^T (N d) out of 8 d² + 2 N d + 27 d; attention levels therefore start at 1/2 resolution and the MLP ratio
is 2 (with ratio 4 and attention from 1/4 on, reuse saves only 7-8 %).
Wall clock: reuse needs A materialised, which fused attention kernels never do. Measured on a shared CPU
(1 thread, arch 's', one 7x64x64 clip, inference, median of 15 interleaved pairs): SkipAt takes 0.60x the time
of the baseline on the eager path, but 1.9x the time of the baseline on SDPA (``fused_attn=True``, the default).

Any T >= 1 frames and any H x W: frames are padded (replicating the last) to a multiple of the temporal window
when the clip is longer than it, sides are reflect-padded at the bottom/right to ``size_divisor`` (64 for the
built-in archs: 3 downsamplings x 8-pixel windows), and the output is cropped back. Long sequences are restored
by ``VideoDenoiser`` in overlapping 7-frame windows (``temporal_sliding_restore``).

Differs from UniFormer's blocks: LayerNorm (channels) instead of BatchNorm3d in the local blocks (restoration
batches are tiny and test statistics differ from training crops); 1x1x1 convs are ``nn.Linear`` on
channels-last maps (same weights, flattened); attention is windowed in space (global over a 480p clip could not
hold the matrices the decoder reuses) and has no relative position bias (the DWConv position embedding encodes
position, as in UniFormer).
"""
import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from ..backbones.base import (BaseBackbone, check_bool, check_clip_batch, check_int, check_number,
                              check_rate, check_width)
from ..checkpoint import StateDict
from ..layers import checkpoint_call, drop_path, init_linear_and_norm
from .denoiser import Denoiser

NUM_LEVELS = 4  # encoder levels 0-2 and the bottleneck (3)
_ONEDNN_CONV = torch.backends.mkldnn.is_available() and hasattr(torch, 'mkldnn_convolution')


def conv3d(x: torch.Tensor, layer: nn.Conv3d) -> torch.Tensor:
    """``layer(x)``. For CPU float32 inference it calls oneDNN's convolution directly: PyTorch's dispatcher
    sends dense Conv3ds with few channels (the 3-channel input/output projections) to its slow reference
    kernel there (measured 10x slower for 24 -> 3 channels on a 7x64x64 clip), though not under autograd."""
    if (_ONEDNN_CONV and x.device.type == 'cpu' and x.dtype == layer.weight.dtype == torch.float32
            and not torch.is_grad_enabled() and layer.padding_mode == 'zeros' and isinstance(layer.padding, tuple)
            and not torch._C._len_torch_dispatch_stack()  # flop counters and other modes see the aten conv
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()):  # so do compile and tracing
        return torch.mkldnn_convolution(x.contiguous(), layer.weight, layer.bias, layer.padding, layer.stride,
                                        layer.dilation, layer.groups)
    return layer(x)


# ---------------------------------------------------------------------------------------------- windows
def window_partition_3d(x: torch.Tensor, window: Tuple[int, int, int]) -> torch.Tensor:
    """(B, T, H, W, C) -> (B * nW, t * h * w, C), windows batch-major then (T, H, W)-row-major."""
    B, T, H, W, C = x.shape
    t, h, w = window
    x = x.view(B, T // t, t, H // h, h, W // w, w, C).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, t * h * w, C)


def window_reverse_3d(windows: torch.Tensor, window: Tuple[int, int, int], shape: Tuple[int, int, int, int]
                      ) -> torch.Tensor:
    """Inverse of ``window_partition_3d``; ``shape`` = (B, T, H, W)."""
    B, T, H, W = shape
    t, h, w = window
    C = windows.shape[-1]  # explicit (not -1): an empty batch has no elements to infer it from
    x = windows.view(B, T // t, H // h, W // w, t, h, w, C).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(B, T, H, W, C)


# ---------------------------------------------------------------------------------------------- layers
class DWConv3d(nn.Conv3d):
    """Depth-wise ``k x k x k`` Conv3d ("same" padding) on channels-last (B, T, H, W, C) maps."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)

    def flops(self, num_tokens: int) -> float:
        return num_tokens * self.in_channels * math.prod(self.kernel_size)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``: UniFormer's ``CMlp`` / ``Mlp`` (1x1x1 convs as linears)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def flops(self, num_tokens: int) -> float:
        return num_tokens * 2 * self.fc1.in_features * self.fc1.out_features


class WindowAttention3d(nn.Module):
    """Multi-head self-attention inside (t, h, w) windows: ``proj(softmax(q k^T / sqrt(d)) v)``.

    ``forward(x, return_attn=True)`` also returns the probabilities (B * nW, heads, N, N), computed eagerly;
    otherwise SDPA runs unless ``fused_attn`` is False.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., fused_attn: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'width {dim} is not divisible by num_heads {num_heads}')
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attn: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B_, N, C = x.shape
        q, k, v = self.qkv(x).view(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = None
        if return_attn or not self.fused_attn:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
            x = self.attn_drop(attn) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B_, N, C))), attn

    def flops(self, num_tokens: int, win_tokens: int) -> float:
        C = self.num_heads * self.head_dim
        return num_tokens * (4 * C * C + 2 * win_tokens * C)


class AttentionReuse(nn.Module):
    """SkipAt with Phi = identity on the attention matrix: ``proj(A v(x))`` with the probabilities A of the
    mirrored encoder block (``src_heads`` heads). The ``dim`` channels of v form ``num_heads`` heads; decoder
    head h reads source head ``h // (num_heads // src_heads)``. No q/k projections exist."""

    def __init__(self, dim: int, num_heads: int, src_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        if dim % num_heads or num_heads % src_heads:
            raise ValueError(f'attention reuse: width {dim} must be divisible by num_heads {num_heads}, and '
                             f'num_heads by the {src_heads} heads of the mirrored encoder block')
        self.num_heads, self.src_heads = num_heads, src_heads
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def head_map(self) -> torch.Tensor:
        """Source head of each decoder head."""
        return torch.arange(self.num_heads) // (self.num_heads // self.src_heads)

    def forward(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        B_, N, C = x.shape
        if attn is None or attn.shape != (B_, self.src_heads, N, N):
            got = None if attn is None else tuple(attn.shape)
            raise ValueError(f'reused attention {got} does not fit {B_} windows of {N} tokens and '
                             f'{self.src_heads} heads')
        if self.num_heads != self.src_heads:
            attn = attn.index_select(1, self.head_map().to(attn.device))
        v = self.v(x).view(B_, N, self.num_heads, C // self.num_heads).transpose(1, 2)
        x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(x))

    def flops(self, num_tokens: int, win_tokens: int) -> float:
        C = self.v.in_features
        return num_tokens * (2 * C * C + win_tokens * C)


# ---------------------------------------------------------------------------------------------- blocks
class LocalBlock(nn.Module):
    """UniFormer's local MHRA block (``CBlock``) on (B, T, H, W, C) maps, LayerNorm instead of BatchNorm3d."""

    def __init__(self, dim: int, mlp_ratio: float = 4., drop: float = 0., drop_path_rate: float = 0.,
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.pos_embed = DWConv3d(dim, 3)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.conv1 = nn.Linear(dim, dim)
        self.attn = DWConv3d(dim, 5)
        self.conv2 = nn.Linear(dim, dim)
        self.drop_path = drop_path(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, src=None, keep: bool = False) -> Tuple[torch.Tensor, None]:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x))), None

    def flops(self, thw: Tuple[int, int, int]) -> float:
        n, C = math.prod(thw), self.conv1.in_features
        return self.pos_embed.flops(n) + self.attn.flops(n) + 2 * n * C * C + self.mlp.flops(n)


class WindowSABlock(nn.Module):
    """UniFormer's ``SABlock`` with attention inside 3D windows; ``reuse=True``: SkipAt decoder block
    (``AttentionReuse``)."""

    def __init__(self, dim: int, num_heads: int, window_size: Tuple[int, int, int], mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop: float = 0., attn_drop: float = 0., drop_path_rate: float = 0.,
                 norm_eps: float = 1e-5, reuse: bool = False, src_heads: Optional[int] = None,
                 fused_attn: bool = True) -> None:
        super().__init__()
        self.window_size, self.reuse = tuple(window_size), reuse
        self.pos_embed = DWConv3d(dim, 3)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = (AttentionReuse(dim, num_heads, src_heads, qkv_bias, attn_drop, drop) if reuse else
                     WindowAttention3d(dim, num_heads, qkv_bias, attn_drop, drop, fused_attn))
        self.drop_path = drop_path(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def window(self, T: int) -> Tuple[int, int, int]:
        """The window at run time: the whole clip in time when it is not longer than the temporal window."""
        return (min(T, self.window_size[0]),) + self.window_size[1:]

    def forward(self, x: torch.Tensor, src: Optional[torch.Tensor] = None, keep: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``src``: the mirrored encoder block's attention (reuse mode); ``keep``: also return this block's."""
        x = x + self.pos_embed(x)
        B, T, H, W, _ = x.shape
        win = self.window(T)
        windows = window_partition_3d(self.norm1(x), win)
        if self.reuse:
            out, attn = self.attn(windows, src), None
        else:
            out, attn = self.attn(windows, return_attn=keep)
        x = x + self.drop_path(window_reverse_3d(out, win, (B, T, H, W)))
        return x + self.drop_path(self.mlp(self.norm2(x))), attn

    def flops(self, thw: Tuple[int, int, int]) -> float:
        n, N = math.prod(thw), math.prod(self.window(thw[0]))
        return self.pos_embed.flops(n) + self.attn.flops(n, N) + self.mlp.flops(n)


class Level(nn.Module):
    """``depth`` blocks at one resolution."""

    def __init__(self, blocks: List[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, srcs: Optional[Sequence[torch.Tensor]] = None, keep: bool = False,
                with_cp: bool = False) -> Tuple[torch.Tensor, List[Optional[torch.Tensor]]]:
        """``with_cp``: each block activation-checkpointed (the attention it keeps is an output)."""
        kept = []
        for j, blk in enumerate(self.blocks):
            x, a = checkpoint_call(blk, x, srcs[j] if srcs is not None else None, keep, enabled=with_cp)
            kept.append(a)
        return x, kept

    def flops(self, thw: Tuple[int, int, int]) -> float:
        return sum(b.flops(thw) for b in self.blocks)


class FrameConv(nn.Module):
    """A Conv3d (or transposed) with kernel (1, k, k) on channels-last maps: per-frame down/upsampling."""

    def __init__(self, in_channels: int, out_channels: int, up: bool = False) -> None:
        super().__init__()
        self.conv = (nn.ConvTranspose3d(in_channels, out_channels, (1, 2, 2), (1, 2, 2)) if up else
                     nn.Conv3d(in_channels, out_channels, (1, 4, 4), (1, 2, 2), (0, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)

    def flops(self, thw_in: Tuple[int, int, int]) -> float:
        c = self.conv
        k = math.prod(c.kernel_size)
        if isinstance(c, nn.ConvTranspose3d):  # every input pixel scatters a k-kernel
            return math.prod(thw_in) * c.in_channels * c.out_channels * k
        t, h, w = thw_in
        return t * (h // 2) * (w // 2) * c.in_channels * c.out_channels * k


# ---------------------------------------------------------------------------------------------- model
@MODELS.register_module()
class UniFormerDenoiser(BaseBackbone):
    """U-shaped UniFormer video denoiser (module docstring); ``forward(x)`` returns the restored clip.

    Args:
        arch: ``'t'`` / ``'s'`` (``arch_zoo``) or a dict with ``embed_dims``, ``depths`` (4 ints: encoder levels
            0-2 and the bottleneck; decoder level i mirrors encoder level i) and ``num_heads`` (one int per
            attention level, i.e. levels ``conv_levels`` .. 3).
        conv_levels: Levels (from the top) made of local blocks; the rest use window self-attention.
        window_size: (frames, height, width) of the attention windows.
        in_channels: Channels of a frame (the residual needs the output to have the same).
        mlp_ratio: MLP hidden width over the block width (default: the arch's ``mlp_ratio``, else 4).
        qkv_bias / drop_rate / attn_drop_rate / drop_path_rate / norm_eps: Usual meanings
            (stochastic depth linear over the encoder, mirrored in the decoder, maximal in the bottleneck).
        skip_attention: SkipAt: every decoder attention block reuses its mirrored encoder block's attention.
        fused_attn: SDPA (True) or the eager attention path.
        with_cp: Gradient (activation) checkpointing in training: every block (local or window attention, in
            the encoder, bottleneck and decoder) runs under ``torch.utils.checkpoint``
            (``layers/grad_checkpoint.py``); the attention an encoder block keeps for its decoder mirror is an
            output of that call. Same outputs and gradients, less memory.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads mmevit checkpoints (a baseline checkpoint
            into a SkipAt model keeps the values' part of the decoder ``qkv``).

    Input (B, T, C, H, W) in [0, 1] (frames along dim 1, as the video datasets pack them); output the same shape.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=16, depths=[1, 2, 4, 1], num_heads=[2, 4, 8], mlp_ratio=2.)),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=24, depths=[1, 4, 6, 1], num_heads=[3, 6, 12],
                                             mlp_ratio=2.)),
    }
    essential_keys = {'embed_dims', 'depths', 'num_heads'}
    optional_keys = {'mlp_ratio'}
    head_prefixes = ()

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 conv_levels: int = 1,
                 window_size: Sequence[int] = (7, 8, 8),
                 in_channels: int = 3,
                 mlp_ratio: Optional[float] = None,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_eps: float = 1e-5,
                 skip_attention: bool = False,
                 fused_attn: bool = True,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv_levels = check_int(conv_levels, 'conv_levels', minimum=0)
        if self.conv_levels > NUM_LEVELS:
            raise ValueError(f'conv_levels must be in 0..{NUM_LEVELS}, got {conv_levels}')
        self.arch = self._resolve_arch(arch)
        C, depths, heads = self.arch['embed_dims'], self.arch['depths'], self.arch['num_heads']
        if isinstance(window_size, (str, bytes)) or not isinstance(window_size, Sequence) or len(window_size) != 3:
            raise ValueError(f'window_size must be (frames, height, width), got {window_size!r}')
        self.window_size = tuple(check_int(w, 'window_size entry') for w in window_size)
        self.in_channels = check_int(in_channels, 'in_channels')
        self.skip_attention = check_bool(skip_attention, 'skip_attention')
        check_bool(qkv_bias, 'qkv_bias')
        check_bool(fused_attn, 'fused_attn')
        for name, rate in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                           ('drop_path_rate', drop_path_rate)):
            check_rate(rate, name)
        check_number(norm_eps, 'norm_eps')
        self.with_cp = bool(with_cp)
        self.embed_dims = C
        widths = [C * 2 ** i for i in range(NUM_LEVELS)]
        enc_depth = sum(depths[:NUM_LEVELS - 1])
        enc_dpr = [drop_path_rate * i / (enc_depth - 1) if enc_depth > 1 else 0. for i in range(enc_depth)]
        check_width(C, mlp_ratio if mlp_ratio is not None else self.arch.get('mlp_ratio', 4.),
                    'mlp_ratio' if mlp_ratio is not None else "arch['mlp_ratio']")
        self.mlp_ratio = float(mlp_ratio if mlp_ratio is not None else self.arch.get('mlp_ratio', 4.))
        common = dict(mlp_ratio=self.mlp_ratio, drop=drop_rate, drop_path_rate=0., norm_eps=norm_eps)

        def level(i: int, rates: Sequence[float], decoder: bool = False) -> Level:
            if i < self.conv_levels:
                return Level([LocalBlock(widths[i], **dict(common, drop_path_rate=r)) for r in rates])
            h = heads[i - self.conv_levels]
            return Level([WindowSABlock(widths[i], h, self.window_size, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                        reuse=decoder and self.skip_attention, src_heads=h, fused_attn=fused_attn,
                                        **dict(common, drop_path_rate=r)) for r in rates])

        self.input_proj = nn.Conv3d(self.in_channels, C, 3, 1, 1)  # + LeakyReLU
        self.pos_drop = nn.Dropout(drop_rate)
        self.encoder = nn.ModuleList()
        self.downsample = nn.ModuleList()
        start = 0
        for i in range(NUM_LEVELS - 1):
            self.encoder.append(level(i, enc_dpr[start:start + depths[i]]))
            self.downsample.append(FrameConv(widths[i], widths[i + 1]))
            start += depths[i]
        self.bottleneck = level(NUM_LEVELS - 1, [drop_path_rate] * depths[NUM_LEVELS - 1])
        # decoder[i] mirrors encoder[i] (its blocks' rates reversed: deepest first)
        self.upsample = nn.ModuleList([FrameConv(widths[i + 1], widths[i], up=True) for i in range(NUM_LEVELS - 1)])
        self.fuse = nn.ModuleList([nn.Linear(2 * widths[i], widths[i]) for i in range(NUM_LEVELS - 1)])
        starts = [sum(depths[:i]) for i in range(NUM_LEVELS - 1)]
        self.decoder = nn.ModuleList([level(i, enc_dpr[starts[i]:starts[i] + depths[i]][::-1], decoder=True)
                                      for i in range(NUM_LEVELS - 1)])
        self.output_proj = nn.Conv3d(C, self.in_channels, 3, 1, 1)
        # Every level's side must divide by its window (attention levels) after the downsamplings.
        sides = [self.window_size[1] * 2 ** i for i in range(self.conv_levels, NUM_LEVELS)]
        sides += [self.window_size[2] * 2 ** i for i in range(self.conv_levels, NUM_LEVELS)]
        self.size_divisor = math.lcm(2 ** (NUM_LEVELS - 1), *sides)
        self.reset_parameters()

    def _resolve_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            return self.lookup_arch(arch)
        arch = self.lookup_arch(arch)
        C = check_int(arch['embed_dims'], "arch['embed_dims']")
        for key in ('depths', 'num_heads'):
            if isinstance(arch[key], (str, bytes)) or not isinstance(arch[key], Sequence):
                raise TypeError(f'arch[{key!r}] must be a list of ints, got {arch[key]!r}')
        depths = list(arch['depths'])
        if len(depths) != NUM_LEVELS:
            raise ValueError(f"arch['depths'] must be {NUM_LEVELS} ints (encoder levels 0-2, bottleneck), "
                             f'got {arch["depths"]!r}')
        depths = [check_int(d, "arch['depths'] entry") for d in depths]
        heads = [check_int(h, "arch['num_heads'] entry") for h in arch['num_heads']]
        if len(heads) != NUM_LEVELS - self.conv_levels:
            raise ValueError(f"arch['num_heads'] needs one entry per attention level ({NUM_LEVELS - self.conv_levels}"
                             f' with conv_levels={self.conv_levels}), got {arch["num_heads"]!r}')
        for i, h in enumerate(heads):
            w = C * 2 ** (self.conv_levels + i)
            if w % h:
                raise ValueError(f'level {self.conv_levels + i}: width {w} is not divisible by num_heads {h}')
        return dict(arch, embed_dims=C, depths=depths, num_heads=heads)

    def reset_parameters(self) -> None:
        """Trunc-normal(0.02) linears with zero bias, unit LayerNorms; convs keep PyTorch's defaults."""
        for m in self.modules():
            init_linear_and_norm(m)

    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        """mmevit's own keys (identity); a baseline checkpoint into a SkipAt model gives each decoder
        attention block the values' rows of its ``qkv`` (queries and keys are dropped)."""
        state, dropped = dict(state_dict), []
        if self.skip_attention:
            for key in [k for k in state if k.startswith('decoder.') and '.attn.qkv.' in k]:
                qkv = state.pop(key)
                state[key.replace('.attn.qkv.', '.attn.v.')] = qkv[2 * qkv.shape[0] // 3:]
                dropped.append(key)
        return state, dropped

    # ------------------------------------------------------------------ forward
    def temporal_window(self, T: int) -> int:
        return min(T, self.window_size[0]) if self.conv_levels < NUM_LEVELS else T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` (B, T, C, H, W), any T >= 1, H and W; returns the same shape."""
        check_clip_batch(x, self.in_channels, self.input_proj.weight.dtype)
        B, T, C, H, W = x.shape
        pad_t = -T % self.temporal_window(T)
        pad_h, pad_w = -H % self.size_divisor, -W % self.size_divisor
        y = x
        if pad_h or pad_w:
            mode = 'reflect' if pad_h < H and pad_w < W else 'replicate'
            y = F.pad(y.flatten(0, 1), (0, pad_w, 0, pad_h), mode=mode).unflatten(0, (B, T))
        if pad_t:
            y = torch.cat([y, y[:, -1:].expand(-1, pad_t, -1, -1, -1)], 1)
        out = self.forward_aligned(y)
        return out[:, :T, :, :H, :W].contiguous() if pad_t or pad_h or pad_w else out

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a clip whose sides divide by ``size_divisor`` and whose length by the temporal
        window."""
        y = F.leaky_relu(conv3d(x.transpose(1, 2), self.input_proj), inplace=True)  # (B, C, T, H, W)
        y = self.pos_drop(y.permute(0, 2, 3, 4, 1))  # (B, T, H, W, C) from here on
        skips, attns = [], []
        cp = self.with_cp and self.training
        for i in range(NUM_LEVELS - 1):
            y, kept = self.encoder[i](y, keep=self.skip_attention, with_cp=cp)
            skips.append(y)
            attns.append(kept)
            y = self.downsample[i](y)
        y, _ = self.bottleneck(y, with_cp=cp)
        for i in reversed(range(NUM_LEVELS - 1)):
            y = self.fuse[i](torch.cat([self.upsample[i](y), skips[i]], -1))
            y, _ = self.decoder[i](y, attns[i] if self.skip_attention else None, with_cp=cp)
        out = conv3d(y.permute(0, 4, 1, 2, 3), self.output_proj).transpose(1, 2)
        return x + out

    # ------------------------------------------------------------------ analysis
    def flops(self, thw: Tuple[int, int, int] = (7, 128, 128)) -> float:
        """Multiply-accumulates of one clip of ``thw`` (padded as the forward pads it): convolutions, linears
        and the two attention matmuls, i.e. what ``torch.utils.flop_counter`` counts, halved."""
        if len(thw) != 3:
            raise TypeError(f'flops() takes a clip size (T, H, W), got {thw!r}')
        T, H, W = thw
        T += -T % self.temporal_window(T)
        H, W = H + -H % self.size_divisor, W + -W % self.size_divisor
        C = self.embed_dims
        f = T * H * W * 27 * C * self.in_channels * 2  # input and output projections
        for i in range(NUM_LEVELS - 1):
            res = (T, H // 2 ** i, W // 2 ** i)
            n = math.prod(res)
            f += self.encoder[i].flops(res) + self.decoder[i].flops(res)
            f += self.downsample[i].flops(res) + self.upsample[i].flops((T, res[1] // 2, res[2] // 2))
            f += n * self.fuse[i].in_features * self.fuse[i].out_features
        f += self.bottleneck.flops((T, H // 2 ** (NUM_LEVELS - 1), W // 2 ** (NUM_LEVELS - 1)))
        return float(f)


# ---------------------------------------------------------------------------------------------- inference
def temporal_windows(num_frames: int, window: int, stride: int) -> List[int]:
    """Start frames of the ``window``-frame windows covering ``num_frames`` frames: every ``stride`` frames,
    the last window flush with the end (one window when the sequence is not longer than ``window``)."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window, stride))
    return starts + [num_frames - window]


def temporal_sliding_restore(fn: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor, window: int = 7,
                             stride: int = 4) -> torch.Tensor:
    """Restore a (B, T, C, H, W) sequence with ``fn`` on ``window``-frame windows starting every ``stride``
    frames (``temporal_windows``); each output frame is the mean of the outputs of all the windows containing
    it. ``stride <= window`` guarantees every frame is covered."""
    if not (isinstance(window, int) and isinstance(stride, int) and 1 <= stride <= window):
        raise ValueError(f'need ints 1 <= stride <= window, got window={window!r}, stride={stride!r}')
    T = clip.shape[1]
    out, count = None, clip.new_zeros(T)
    for s in temporal_windows(T, window, stride):
        y = fn(clip[:, s:s + window])
        if out is None:
            out = y.new_zeros(y.shape[0], T, *y.shape[2:])
        out[:, s:s + window] += y
        count[s:s + window] += 1
    return out / count.view(1, T, 1, 1, 1)


@MODELS.register_module()
class VideoDenoiser(Denoiser):
    """``Denoiser`` for clips (B, T, C, H, W): trains on whole clips (MIMO); restores long sequences in
    temporal sliding windows (``temporal_sliding_restore``), each window in spatial tiles when
    ``test_cfg['tile']`` is set.

    ``test_cfg``: ``num_frames`` (window length, default 7, the training clip) and ``frame_stride`` (default 4:
    consecutive windows overlap by 3 frames), plus ``Denoiser``'s ``tile`` / ``tile_overlap``.
    Predictions hold (T, C, H, W) ``pred_img`` / ``input_img`` / ``gt_img`` in the 0-255 range: mmevit's
    PSNR/SSIM score them per sequence (the mean over frames) and average the sequences.
    """

    extra_test_cfg_keys = ('num_frames', 'frame_stride')

    def __init__(self, generator: dict, test_cfg: Optional[dict] = None, **kwargs) -> None:
        test_cfg = dict(test_cfg or {})
        self.num_frames = check_int(test_cfg.pop('num_frames', 7), "test_cfg['num_frames']")
        self.frame_stride = check_int(test_cfg.pop('frame_stride', 4), "test_cfg['frame_stride']")
        if self.frame_stride > self.num_frames:
            raise ValueError(f'test_cfg: frame_stride {self.frame_stride} > num_frames {self.num_frames} would '
                             'leave frames unrestored')
        super().__init__(generator, test_cfg=test_cfg, **kwargs)

    def restore(self, inputs: torch.Tensor) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f'VideoDenoiser restores torch.Tensor clips (B, T, C, H, W), got {type(inputs).__name__}')
        if inputs.dim() != 5:
            raise ValueError(f'VideoDenoiser restores clips (B, T, C, H, W), got {tuple(inputs.shape)}')
        return temporal_sliding_restore(super().restore, inputs, self.num_frames, self.frame_stride)


__all__ = ['UniFormerDenoiser', 'VideoDenoiser', 'temporal_sliding_restore', 'temporal_windows',
           'window_partition_3d', 'window_reverse_3d']
