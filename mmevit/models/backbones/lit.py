"""LIT: a pyramid vision transformer without attention in its early stages.

Paper: Pan et al., "Less is More: Pay Less Attention in Vision Transformers", AAAI 2022 (arXiv 2105.14217).
Official code: github.com/zhuang-group/LIT @ 742e961 (Apache-2.0): LIT-Ti in
``classification/code_for_lit_ti/lit.py`` (PVT/DeiT-style), LIT-S/M/B in
``classification/code_for_lit_s_m_b/models/lit.py`` (Swin-style); dense backbones in
``detection/mmdet/models/backbones/lit{,_ti}.py`` and ``segmentation/mmseg/models/backbones/lit{,_ti}.py``.

Four stages at strides 4/8/16/32. Stages 1-2 are MLP blocks (``x + MLP(LN(x))``, no attention); stages 3-4 are
pre-norm transformer blocks with *global* MSA. Between stages, Deformable Token Merging (DTM,
``layers/dtm.py``) halves the resolution. The two official designs are two ``arch`` settings of one class:
- ``position='absolute'`` (LIT-Ti): a learned position embedding added at the start of every stage (resized
  bilinearly to the actual grid, as the official dense backbone does), a cls token prepended at the last stage
  (classification), no relative bias; LayerNorm eps 1e-6 in blocks.
- ``position='relative'`` (LIT-S/M/B): no absolute position; the MSA adds a Swin-style relative position bias
  over the whole stage map (``layers/rel_pos.py``; table resized bicubically to the actual grid); the
  classifier average-pools the final-normed tokens.

Differs from the official code:
- One key layout for both designs (LIT-S/M/B's: ``patch_embed``, ``layers.<i>.blocks.<j>``,
  ``layers.<i>.downsample``, plus ``layers.<i>.pos_embed`` for LIT-Ti); ``convert_state_dict`` renames LIT-Ti's
  ``patch_embed<s>``/``pos_embed<s>``/``block<s>`` keys and drops the ``relative_position_index`` buffers
  (recomputed for the actual grid, as the official dense backbones do).
- Any input size: odd stage maps are zero-padded at the bottom/right before DTM (the official code needs
  even maps), images are corner-padded to a multiple of the patch size; output norms per stage are a choice
  (``out_norm_indices``) instead of two backbone copies (detection: stages 1-3, segmentation: 0-3).
- Attention via SDPA (the relative bias is its float mask); in CPU inference the MLP's GELU and the residual
  adds run fused into oneDNN GEMMs (``layers/fused_linear.py``); DTM through a gather formulation of the same
  DCNv1 op on CPU (``layers/dtm.py``). The dense LIT-Ti takes its config kwargs (the official ``LIT_Ti`` ignores
  them).
"""
import math
import numbers
import re
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from ...official import build_classifier, check_kwargs, norm_eps, register_official
from ...registry import register_backbone
from ..checkpoint import StateDict
from ..layers import (PatchEmbed, TransformerBlock, checkpoint_call, drop_path_rates, init_linear_and_norm,
                      resample_abs_pos_embed)
from ..layers.dtm import DTM_IMPLS, DeformableTokenMerging
from ..layers.rel_pos import GlobalSelfAttention, resize_rel_pos_table
from .base import (BaseBackbone, check_bool, check_frozen_stages, check_image_batch, check_img_size, check_indices,
                   check_int, check_rate, check_width, freeze, tokens_to_nchw)

POSITIONS = ('absolute', 'relative')


class LITPatchEmbed(PatchEmbed):
    """Stage-1 patch embedding: conv ``patch_size``/``patch_size`` + LayerNorm (keys ``proj``, ``norm``)."""

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int, norm_eps: float = 1e-5,
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, embed_dims, patch_size, device=device, dtype=dtype)
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        x, hw = super().forward(x)
        return self.norm(x), hw


class LITBlock(TransformerBlock):
    """LIT's pre-norm block: an MLP block (``attn=None``: ``x + MLP(LN(x))``) or global MSA + MLP.

    In CPU inference the MLP's GELU and both residual adds run fused into their GEMMs (``TransformerBlock``,
    ``layers/fused_linear.py``); ``fused_linear=False`` (or training, autograd, autocast) takes the plain path.
    """

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        return super().forward(x, hw_shape=hw_shape)


class LITStage(nn.Module):
    """One stage: (position embedding,) blocks, (DTM to the next stage).

    Args:
        dim: Token width. depth: Number of blocks. num_heads: MSA heads.
        mlp_hidden: MLP hidden width. msa: Blocks with global MSA (else MLP blocks).
        position: ``'absolute'`` (a ``pos_embed`` of ``num_prefix + H*W`` rows on ``grid``) or ``'relative'``.
        grid: The stage's token grid at the pre-training image size.
        num_prefix: Rows of ``pos_embed`` for prefix (cls) tokens.
        out_dim: Width after DTM, or None for the last stage.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_hidden: int, msa: bool, position: str,
                 grid: Tuple[int, int], num_prefix: int = 0, out_dim: Optional[int] = None,
                 drop_path: Sequence[float] = (), qkv_bias: bool = True, drop: float = 0., attn_drop: float = 0.,
                 norm_eps: float = 1e-6, bias_interpolate_mode: str = 'bicubic', dtm_impl: str = 'auto',
                 device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        relative = msa and position == 'relative'
        self.pos_embed = (nn.Parameter(torch.zeros(1, num_prefix + grid[0] * grid[1], dim, **dd))
                          if position == 'absolute' else None)

        def attention() -> Optional[nn.Module]:
            if not msa:
                return None
            return GlobalSelfAttention(dim, num_heads, grid if relative else None, qkv_bias, attn_drop, drop,
                                       interpolate_mode=bias_interpolate_mode, **dd)

        self.blocks = nn.ModuleList([LITBlock(dim, mlp_hidden, attention(), drop, drop_path[j], norm_eps, **dd)
                                     for j in range(depth)])
        self.downsample = DeformableTokenMerging(dim, out_dim, dtm_impl, **dd) if out_dim else None

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], with_cp: bool = False) -> torch.Tensor:
        """The blocks (position embedding and DTM are applied by the backbone); ``with_cp``: each block
        activation-checkpointed."""
        for blk in self.blocks:
            x = checkpoint_call(blk, x, hw, enabled=with_cp)
        return x


@register_backbone()
class LIT(BaseBackbone):
    """LIT backbone (LIT-Ti and LIT-S/M/B).

    Args:
        arch: A name from ``arch_zoo`` (``ti``, ``s``, ``m``, ``b``) or a dict with ``embed_dims``, ``depths``,
            ``num_heads``, ``mlp_ratios`` (one entry per stage) and ``position`` (``'absolute'`` or
            ``'relative'``); optional ``norm_eps`` (block LayerNorms, default 1e-5), ``patch_norm_eps``
            (default 1e-5) and ``has_msa`` (per stage, default: MSA from the third stage on).
        img_size: Pre-training image size: sets the position-embedding grids and relative-bias tables
            (both resized to the actual grids at run time).
        patch_size: Stage-1 patch size (stride of the first stage).
        in_channels: Input channels.
        out_indices: Stages whose outputs are returned (negative counts from the end).
        out_type: ``'featmap'`` (B, C, H, W), ``'raw'`` tokens, ``'avg_featmap'`` (B, C) mean over tokens
            (LIT-S/M/B classification) or ``'cls_token'`` (B, C) (LIT-Ti classification; last stage only).
        out_norm_indices: Stages whose *output* gets its own LayerNorm ``norm<i>`` (official dense backbones:
            LIT-S detection (1, 2, 3), segmentation (0, 1, 2, 3); LIT-Ti none). A subset of ``out_indices``.
        final_norm: LayerNorm ``norm`` on the last stage's tokens (classification).
        with_cls_token: Prepend a cls token at the last stage (``position='absolute'`` only).
        qkv_bias: Bias in the qkv projections.
        drop_rate / attn_drop_rate / drop_path_rate: Regularisation (drop path linear over all blocks).
        pos_interpolate_mode: How position embeddings are resized (official dense LIT-Ti: bilinear).
        bias_interpolate_mode: How relative-bias tables are resized (official: bicubic).
        dtm_impl: Deformable-conv implementation of DTM (``'auto'``, ``'gather'``, ``'torchvision'``).
        frozen_stages: Freeze the patch embedding and the first ``frozen_stages`` stages (with their DTM,
            output norms, and at the last stage the cls token and final norm). -1 freezes nothing.
        norm_eval: Keep the DTM BatchNorms in eval mode (running statistics) while training.
        with_cp: Gradient (activation) checkpointing in training: each block (MLP or MSA block) runs under
            ``torch.utils.checkpoint`` (``layers/grad_checkpoint.py``); position embeddings, DTM and output
            norms are not checkpointed. Same outputs and gradients, less memory.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads official LIT classification checkpoints
            (``lit_ti.pth``, ``lit_s.pth``...), official detection/segmentation checkpoints (``backbone.*``)
            or mmevit ones, resizing position embeddings and relative-bias tables.
    """

    arch_zoo = {
        **dict.fromkeys(['ti', 'tiny', 'lit-ti'],
                        dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), num_heads=(1, 2, 5, 8),
                             mlp_ratios=(8, 8, 4, 4), position='absolute', norm_eps=1e-6)),
        **dict.fromkeys(['s', 'small', 'lit-s'],
                        dict(embed_dims=(96, 192, 384, 768), depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                             mlp_ratios=(4, 4, 4, 4), position='relative', norm_eps=1e-5)),
        **dict.fromkeys(['m', 'medium', 'lit-m'],
                        dict(embed_dims=(96, 192, 384, 768), depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                             mlp_ratios=(4, 4, 4, 4), position='relative', norm_eps=1e-5)),
        **dict.fromkeys(['b', 'base', 'lit-b'],
                        dict(embed_dims=(128, 256, 512, 1024), depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
                             mlp_ratios=(4, 4, 4, 4), position='relative', norm_eps=1e-5)),
    }
    essential_keys = {'embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'position'}
    optional_keys = {'norm_eps', 'patch_norm_eps', 'has_msa'}
    OUT_TYPES = ('featmap', 'raw', 'avg_featmap', 'cls_token')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 4,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 out_norm_indices: Sequence[int] = (),
                 final_norm: bool = False,
                 with_cls_token: bool = False,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 pos_interpolate_mode: str = 'bilinear',
                 bias_interpolate_mode: str = 'bicubic',
                 dtm_impl: str = 'auto',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 device=None, dtype=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._resolve_arch(arch)
        dims, depths = self.arch['embed_dims'], self.arch['depths']
        self.embed_dims, self.depths = dims, depths
        self.num_stages = len(dims)
        self.position = self.arch['position']
        self.patch_size = check_int(patch_size, 'patch_size')
        self.in_channels = check_int(in_channels, 'in_channels')
        self.img_size = check_img_size(img_size, self.patch_size)
        grid = (-(-self.img_size[0] // patch_size), -(-self.img_size[1] // patch_size))
        self.grids = []
        for _ in range(self.num_stages):
            self.grids.append(grid)
            grid = (-(-grid[0] // 2), -(-grid[1] // 2))

        self.out_indices = check_indices(out_indices, self.num_stages)
        self.out_norm_indices = check_indices(out_norm_indices, self.num_stages, 'out_norm_indices',
                                              allow_empty=True)
        if not set(self.out_norm_indices) <= set(self.out_indices):
            raise ValueError(f'out_norm_indices {self.out_norm_indices} must be a subset of out_indices '
                             f'{self.out_indices} (a norm of a stage that is not output would be unused)')
        last = self.num_stages - 1
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        if with_cls_token and self.position != 'absolute':
            raise ValueError("with_cls_token=True needs arch position='absolute' (LIT-Ti): the relative bias "
                             'has no row for a cls token')
        if out_type == 'cls_token' and not (with_cls_token and self.out_indices == (last,)):
            raise ValueError(f"out_type='cls_token' needs with_cls_token=True and out_indices=({last},) "
                             '(the cls token exists at the last stage only)')
        if final_norm and last not in self.out_indices:
            raise ValueError(f'final_norm=True normalises the last stage: include {last} in out_indices')
        if final_norm and last in self.out_norm_indices:
            raise ValueError(f'final_norm=True and out_norm_indices containing {last} would normalise the last '
                             'stage twice: choose one')
        for name, mode in (('pos_interpolate_mode', pos_interpolate_mode),
                           ('bias_interpolate_mode', bias_interpolate_mode)):
            if mode not in ('nearest', 'bilinear', 'bicubic'):
                raise ValueError(f"{name} must be 'nearest', 'bilinear' or 'bicubic', got {mode!r}")
        if dtm_impl not in DTM_IMPLS:
            raise ValueError(f'dtm_impl must be one of {DTM_IMPLS}, got {dtm_impl!r}')
        self.frozen_stages = check_frozen_stages(frozen_stages, self.num_stages)
        for name, rate in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                           ('drop_path_rate', drop_path_rate)):
            check_rate(rate, name)
        for name, flag in (('final_norm', final_norm), ('with_cls_token', with_cls_token), ('qkv_bias', qkv_bias),
                           ('norm_eval', norm_eval)):
            check_bool(flag, name)
        self.out_type = out_type
        self.pos_interpolate_mode = pos_interpolate_mode
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)
        self.out_channels = tuple(dims[i] for i in self.out_indices)
        self.out_strides = tuple(self.patch_size * 2 ** i for i in self.out_indices)

        dd = dict(device=device, dtype=dtype)
        eps = self.arch['norm_eps']
        self.patch_embed = LITPatchEmbed(in_channels, dims[0], patch_size, self.arch['patch_norm_eps'], **dd)
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[-1], **dd)) if with_cls_token else None
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            first = sum(depths[:i])
            self.layers.append(LITStage(
                dims[i], depths[i], self.arch['num_heads'][i], int(dims[i] * self.arch['mlp_ratios'][i]),
                self.arch['has_msa'][i], self.position, self.grids[i],
                num_prefix=self.num_prefix_rows(i), out_dim=dims[i + 1] if i < last else None,
                drop_path=dpr[first:first + depths[i]], qkv_bias=qkv_bias, drop=drop_rate,
                attn_drop=attn_drop_rate, norm_eps=eps, bias_interpolate_mode=bias_interpolate_mode,
                dtm_impl=dtm_impl, **dd))
        for i in self.out_norm_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i], eps=eps, **dd))
        self.norm = nn.LayerNorm(dims[-1], eps=eps, **dd) if final_norm else None

        self._register_load_state_dict_pre_hook(self._resize_on_load)
        if self.patch_embed.proj.weight.device.type != 'meta':
            self.reset_parameters()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _resolve_arch(self, arch: Union[str, dict]) -> dict:
        arch = self.lookup_arch(arch)
        out = {}
        for key in ('embed_dims', 'depths', 'num_heads', 'mlp_ratios'):
            value = arch[key]
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
                raise TypeError(f'arch[{key!r}] must be a non-empty list (one entry per stage), got {value!r}')
            out[key] = tuple(value)
        n = len(out['embed_dims'])
        if any(len(out[k]) != n for k in out):
            raise ValueError(f'arch lists must have one entry per stage: got lengths '
                             f'{ {k: len(v) for k, v in out.items()} }')
        for key in ('embed_dims', 'depths', 'num_heads'):
            out[key] = tuple(check_int(v, f'arch[{key!r}] entry') for v in out[key])
        for dim, r in zip(out['embed_dims'], out['mlp_ratios']):
            check_width(dim, r, "arch['mlp_ratios'] entry")
        if not isinstance(arch['position'], str) or arch['position'] not in POSITIONS:
            raise ValueError(f"arch['position'] must be one of {POSITIONS}, got {arch['position']!r}")
        out['position'] = arch['position']
        has_msa = arch.get('has_msa', [i >= 2 for i in range(n)])
        if isinstance(has_msa, (str, bytes)) or not isinstance(has_msa, Sequence) or len(has_msa) != n:
            raise ValueError(f"arch['has_msa'] needs {n} entries (True/False or 1/0 per stage), got {has_msa!r}")
        out['has_msa'] = tuple(check_bool(m, "arch['has_msa'] entry") for m in has_msa)
        for key in ('norm_eps', 'patch_norm_eps'):
            value = arch.get(key, 1e-5)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
                raise ValueError(f'arch[{key!r}] must be a positive number, got {value!r}')
            out[key] = float(value)
        for i, (dim, heads, msa) in enumerate(zip(out['embed_dims'], out['num_heads'], out['has_msa'])):
            if msa and dim % heads:
                raise ValueError(f'stage {i}: embed_dims {dim} is not divisible by num_heads {heads}')
        return out

    def num_prefix_rows(self, stage: int) -> int:
        """Rows of a stage's ``pos_embed`` that belong to the cls token: 1 at the last stage of the absolute
        design (official and dense checkpoints keep it even without a cls token), else 0."""
        return int(self.position == 'absolute' and stage == self.num_stages - 1)

    def reset_parameters(self) -> None:
        """The official init: trunc-normal(0.02) linears with zero bias, LayerNorm 1/0, position embeddings,
        cls token and relative-bias tables trunc-normal(0.02); DTM as ``DeformConv2x2.reset_parameters``
        (offset conv zero); the patch-embedding conv keeps PyTorch's default."""
        for m in self.modules():
            if init_linear_and_norm(m):
                continue
            if isinstance(m, GlobalSelfAttention) and m.relative:
                nn.init.trunc_normal_(m.relative_position_bias_table, std=.02)
        for stage in self.layers:
            if stage.pos_embed is not None:
                nn.init.trunc_normal_(stage.pos_embed, std=.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=.02)

    # ------------------------------------------------------------------ weights
    def _resize_on_load(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Load hook: resize a checkpoint's position embeddings and relative-bias tables (square grids, as
        every official checkpoint has) to this model's pre-training grids."""
        logger = MMLogger.get_current_instance()
        for i, stage in enumerate(self.layers):
            name = f'{prefix}layers.{i}.pos_embed'
            if stage.pos_embed is not None and name in state_dict \
                    and state_dict[name].shape != stage.pos_embed.shape:
                ckpt = state_dict[name]
                p = self.num_prefix_rows(i)
                side = _square_side(ckpt.shape[1] - p, name)
                print_log(f'LIT: resize {name} {side}x{side} -> {self.grids[i]}', logger=logger)
                state_dict[name] = resample_abs_pos_embed(ckpt, (side, side), self.grids[i], p,
                                                          self.pos_interpolate_mode)
            for j, blk in enumerate(stage.blocks):
                attn = getattr(blk, 'attn', None)
                name = f'{prefix}layers.{i}.blocks.{j}.attn.relative_position_bias_table'
                if not (isinstance(attn, GlobalSelfAttention) and attn.relative) or name not in state_dict \
                        or state_dict[name].shape == attn.relative_position_bias_table.shape:
                    continue
                side = _square_side(state_dict[name].shape[0], name)  # (2S-1)^2 rows
                src = ((side + 1) // 2,) * 2
                print_log(f'LIT: resize {name} for a {src[0]}x{src[1]} grid -> {attn.grid}', logger=logger)
                state_dict[name] = resize_rel_pos_table(state_dict[name], src, attn.grid, attn.interpolate_mode)

    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        return convert_lit_state_dict(state_dict, self)

    def no_weight_decay(self) -> set:
        return {k for k, _ in self.named_parameters() if k.endswith(('pos_embed', 'cls_token', 'bias_table'))}

    # ------------------------------------------------------------------ training-time behaviour
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed]
        for i in range(self.frozen_stages):
            frozen += [self.layers[i], getattr(self, f'norm{i}', None)]
        if self.frozen_stages == self.num_stages:
            frozen += [self.cls_token, self.norm]
        freeze(frozen)

    def train(self, mode: bool = True) -> 'LIT':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _pos_embed(self, i: int, hw: Tuple[int, int]) -> torch.Tensor:
        p = self.num_prefix_rows(i)
        pos = resample_abs_pos_embed(self.layers[i].pos_embed, self.grids[i], hw, p, self.pos_interpolate_mode)
        return pos if self.cls_token is not None else pos[:, p:]

    def forward(self, x: torch.Tensor) -> Tuple:
        check_image_batch(x, self.in_channels, self.patch_embed.proj.weight.dtype)
        x, hw = self.patch_embed(x)
        if self.position == 'relative':
            x = self.drop_after_pos(x)
        last = self.num_stages - 1
        outs = []
        for i, stage in enumerate(self.layers):
            if stage.pos_embed is not None:
                if i == last and self.cls_token is not None:
                    x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
                x = self.drop_after_pos(x + self._pos_embed(i, hw))
            x = stage(x, hw, with_cp=self.with_cp and self.training)
            if i == last and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format_output(i, x, hw))
            if stage.downsample is not None:
                x, hw = stage.downsample(x, hw)
        return tuple(outs)

    def _format_output(self, i: int, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        if i in self.out_norm_indices:
            x = getattr(self, f'norm{i}')(x)
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, 1:] if (i == self.num_stages - 1 and self.cls_token is not None) else x
        if self.out_type == 'avg_featmap':
            return patches.mean(dim=1)
        return tokens_to_nchw(patches, hw)


def _square_side(n: int, name: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f'cannot resize checkpoint {name}: {n} rows are not a square grid')
    return side


# ---------------------------------------------------------------------- checkpoint conversion
_LIT_TI_KEY = re.compile(r'^(patch_embed|pos_embed|block)(\d+)(.*)$')


def detect_format(state_dict: StateDict) -> str:
    """``'lit_ti'`` (official LIT-Ti layout: ``patch_embed<s>``, ``pos_embed<s>``, ``block<s>``) or ``'lit'``
    (``layers.<i>``: official LIT-S/M/B, their detection/segmentation backbones, and mmevit)."""
    if any(_LIT_TI_KEY.match(k) for k in state_dict):
        return 'lit_ti'
    if any(k.startswith('layers.') for k in state_dict):
        return 'lit'
    raise KeyError(f'unrecognised LIT checkpoint: no layers.*, block<s>.* or patch_embed<s>.* keys (first keys: '
                   f'{list(state_dict)[:6]})')


def convert_official_lit_ti(state_dict: StateDict) -> StateDict:
    """Official LIT-Ti keys -> mmevit keys: ``patch_embed1`` -> ``patch_embed``, ``pos_embed<s>`` ->
    ``layers.<s-1>.pos_embed``, ``block<s>`` -> ``layers.<s-1>.blocks``, ``patch_embed<s>`` (DTM into stage s)
    -> ``layers.<s-2>.downsample``. Other keys (``cls_token``, ``norm``, ``head``) are unchanged."""
    out: StateDict = {}
    for k, v in state_dict.items():
        m = _LIT_TI_KEY.match(k)
        if m is None:
            out[k] = v
            continue
        kind, s, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == 'pos_embed':
            out[f'layers.{s - 1}.pos_embed{rest}'] = v
        elif kind == 'block':
            out[f'layers.{s - 1}.blocks{rest}'] = v
        elif s == 1:
            out[f'patch_embed{rest}'] = v
        else:
            out[f'layers.{s - 2}.downsample{rest}'] = v
    return out


def convert_lit_state_dict(source: StateDict, model: LIT) -> Tuple[StateDict, List[str]]:
    """Any supported LIT state dict (official LIT-Ti or LIT-S/M/B classification, official dense backbones,
    mmevit) -> ``model``'s keys.

    Drops what the model has no place for: ``relative_position_index`` buffers (recomputed per grid), the cls
    token of a model without one, ``norm`` of a model without final norm, and output norms ``norm<i>`` the
    model does not have. Resizes position embeddings and relative-bias tables to the model's grids.
    """
    fmt = detect_format(source)
    state = convert_official_lit_ti(source) if fmt == 'lit_ti' else dict(source)
    out_norms = {f'norm{i}.' for i in model.out_norm_indices}

    def keep(k: str) -> bool:
        if k.endswith('relative_position_index'):
            return False
        if k == 'cls_token':
            return model.cls_token is not None
        if k.startswith('norm.'):
            return model.norm is not None
        if re.match(r'^norm\d+\.', k):
            return k[:k.index('.') + 1] in out_norms
        return True

    state = {k: v for k, v in state.items() if keep(k)}
    kept = {id(v) for v in state.values()}
    dropped = [k for k, v in source.items() if id(v) not in kept]
    model._resize_on_load(state, '')
    return state, dropped


# ---------------------------------------------------------------------- official models
def _num_classes(arch: Mapping) -> int:
    num_classes = int(arch.get('num_classes', 1000))
    if num_classes < 1:
        raise ValueError('num_classes must be >= 1 (the official num_classes=0 returns features; use the LIT '
                         'backbone directly for that)')
    return num_classes


def _check_qk_scale(arch: Mapping) -> None:
    if arch.get('qk_scale') is not None:
        raise ValueError(f"qk_scale={arch['qk_scale']!r} is not supported: LIT uses head_dim ** -0.5")


@register_official('lit_ti')
def lit_ti_from_official(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Official LIT-Ti ``LIT(**arch)`` (code_for_lit_ti) -> ``ImageClassifier(LIT, LinearClsHead)``:
    ``head(norm(x)[:, 0])`` with the cls token prepended at the last stage."""
    check_kwargs(arch, _TI_KNOWN, 'LIT-Ti LIT')
    _check_qk_scale(arch)
    missing = {'embed_dims', 'num_heads', 'mlp_ratios', 'depths'} - set(arch)
    if missing:
        raise ValueError(f'LIT-Ti arch needs {sorted(missing)} (the registered lit_ti sets them)')
    dims = [int(d) for d in arch['embed_dims']]
    backbone = dict(
        type='LIT',
        arch=dict(embed_dims=dims, depths=list(arch['depths']), num_heads=list(arch['num_heads']),
                  mlp_ratios=list(arch['mlp_ratios']), position='absolute',
                  norm_eps=norm_eps(arch.get('norm_layer'), 1e-5), patch_norm_eps=1e-5),
        img_size=arch.get('img_size', 224), patch_size=int(arch.get('patch_size', 16)),
        in_channels=int(arch.get('in_chans', 3)), qkv_bias=bool(arch.get('qkv_bias', False)),
        out_indices=(len(dims) - 1,), out_type='cls_token', with_cls_token=True, final_norm=True)
    head = dict(type='LinearClsHead', num_classes=_num_classes(arch), in_channels=dims[-1])
    return build_classifier(backbone, head, state_dict)


@register_official('lit')
def lit_from_official(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Official LIT-S/M/B ``LIT(**arch)`` (code_for_lit_s_m_b) -> ``ImageClassifier(LIT, LinearClsHead)``:
    ``head(mean over tokens of norm(x))``."""
    check_kwargs(arch, _SMB_KNOWN, 'LIT-S/M/B LIT')
    _check_qk_scale(arch)
    if arch.get('ape', False):
        raise ValueError('ape=True (absolute position embedding in LIT-S/M/B) is not supported; every '
                         'released LIT-S/M/B model has ape=False')
    if not arch.get('patch_norm', True):
        raise ValueError('patch_norm=False is not supported; every released LIT-S/M/B model has patch_norm=True')
    depths = list(arch.get('depths', [2, 2, 6, 2]))
    embed_dim = int(arch.get('embed_dim', 96))
    dims = [embed_dim * 2 ** i for i in range(len(depths))]
    eps = norm_eps(arch.get('norm_layer'), 1e-5)
    backbone = dict(
        type='LIT',
        arch=dict(embed_dims=dims, depths=depths, num_heads=list(arch.get('num_heads', [3, 6, 12, 24])),
                  mlp_ratios=[float(arch.get('mlp_ratio', 4.))] * len(depths), position='relative',
                  norm_eps=eps, patch_norm_eps=eps, has_msa=list(arch.get('has_msa', [0, 0, 1, 1]))),
        img_size=arch.get('img_size', 224), patch_size=int(arch.get('patch_size', 4)),
        in_channels=int(arch.get('in_chans', 3)), qkv_bias=bool(arch.get('qkv_bias', True)),
        out_indices=(len(dims) - 1,), out_type='avg_featmap', final_norm=True,
        with_cp=bool(arch.get('use_checkpoint', False)))
    head = dict(type='LinearClsHead', num_classes=_num_classes(arch), in_channels=dims[-1])
    return build_classifier(backbone, head, state_dict)


# Official kwargs: dropout rates only matter for training and are accepted and ignored (LIT-S/M/B's
# ``use_checkpoint`` becomes ``with_cp``).
_TI_KNOWN = {'img_size', 'patch_size', 'in_chans', 'num_classes', 'embed_dims', 'num_heads', 'mlp_ratios',
             'qkv_bias', 'qk_scale', 'drop_rate', 'attn_drop_rate', 'drop_path_rate', 'norm_layer', 'depths'}
_SMB_KNOWN = {'img_size', 'patch_size', 'in_chans', 'num_classes', 'embed_dim', 'depths', 'num_heads',
              'mlp_ratio', 'qkv_bias', 'qk_scale', 'drop_rate', 'attn_drop_rate', 'drop_path_rate', 'norm_layer',
              'ape', 'patch_norm', 'use_checkpoint', 'has_msa'}
