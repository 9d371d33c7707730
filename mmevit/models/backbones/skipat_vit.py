"""SkipAt-ViT: a ViT whose middle blocks skip self-attention.

Paper: Venkataramanan et al., "Skip-Attention: Improving Vision Transformers by Paying Less Attention",
ICLR 2024 (arXiv 2301.02240). Official code: github.com/Qualcomm-AI-research/skip-attention
(``model/vit_skipat.py``, on timm 0.5.4 ``VisionTransformer``).

A skipped block does not run ``norm1``/attention: its attention branch is ``cat(cls_msa, Z_i)`` where
``Z_i = Phi_i(Z_{i-1})`` is a chain of parametric functions started from the patch rows of the MSA output of
the last block that did compute attention, and ``cls_msa`` is that block's CLS row, reused unchanged. The plain
ViT is the same class with ``skip_indices=()``, so baselines and SkipAt share every line but the skip.

Differs from the official code:
- Skipped blocks have no ``norm1``/``attn`` (the official model keeps them unused: they get no gradient and
  break DDP without ``find_unused_parameters``); the converter drops them from official checkpoints.
- One Phi per skipped block, stored in that block (``blocks.<i>.phi``); the official model always builds six
  (``param_1..6``) and fails beyond six skipped blocks. ``phi_chain='continue'`` (default) reproduces the
  official chaining for any ``skip_indices``; ``'restart'`` restarts the chain after every computed block.
- A classifier (``out_type='cls_token'``) computes only the CLS row of its last block in inference (that row's
  query against every token, reassociated so that no key or value is projected; the MLP on one row; a skipped
  last block runs no Phi): the same logits, about 1/12 fewer MACs. Training, ``with_cp`` and forward hooks on
  the last block see the whole block.
- Attention via SDPA; dense-prediction outputs (``out_indices``, NCHW maps), position embeddings resized to
  any input size (non-square too, sides not divisible by the patch size are corner-padded), Phi on
  non-square grids.
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
from ..layers import (MultiheadSelfAttention, PatchEmbed, SkipAtPhi, TransformerBlock, checkpoint_call,
                      drop_path_rates, init_linear_and_norm, resample_abs_pos_embed)
from ..layers.fused_linear import has_hooks
from .base import (BaseBackbone, check_image_batch, check_indices, check_img_size, check_int, check_vit_arch,
                   freeze)

# The paper's skipped blocks: 4-9 in 1-based counting.
DEFAULT_SKIP_INDICES = (3, 4, 5, 6, 7, 8)


class ViTBlock(TransformerBlock):
    """Pre-norm ViT block that also returns its MSA output (after ``proj``, before the residual)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool = True, drop: float = 0.,
                 attn_drop: float = 0., drop_path_rate: float = 0., norm_eps: float = 1e-6,
                 device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__(dim, mlp_hidden, MultiheadSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop, **dd),
                         drop, drop_path_rate, norm_eps, **dd)

    def forward(self, x: torch.Tensor, need_msa: bool = True,
                rows: Optional[int] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Returns the block output and its MSA output (None when not ``need_msa`` in fused inference, where
        the residual add runs inside the projection GEMM). ``rows``: only the first rows of both are computed
        (their queries attend to every token)."""
        res = x if rows is None else x[:, :rows]
        if need_msa or not self.fused_inference(x):
            msa = self.attn(self.norm1(x), num_queries=rows)
            return self.forward_mlp(res + self.drop_path1(msa)), msa
        return self.forward_mlp(self.attn(self.norm1(x), residual=res, num_queries=rows)), None


class SkipAtBlock(TransformerBlock):
    """A skipped block: the attention branch is ``cat(cls_msa, Phi(z))``; the MLP half is a ViT block's."""

    def __init__(self, dim: int, mlp_hidden: int, phi_hidden: int, phi_kernel: int = 5, drop: float = 0.,
                 drop_path_rate: float = 0., norm_eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__(dim, mlp_hidden, None, drop, drop_path_rate, norm_eps, device=device, dtype=dtype)
        self.phi = SkipAtPhi(dim, phi_hidden, phi_kernel, use_eca=True, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, z: torch.Tensor, cls_msa: torch.Tensor, hw_shape: Tuple[int, int],
                rows: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: Tokens (B, P + H*W, C), P = 0 or 1 prefix (cls) tokens.
            z: The previous Phi output, or the MSA patch rows the chain starts from (B, H*W, C).
            cls_msa: The reused CLS row of the last computed MSA output (B, P, C).
            rows: Compute only the first ``rows <= P`` output rows (then Phi is not run and ``z`` is returned
                as it came).
        Returns:
            The block output and this block's Phi output (the next link of the chain).
        """
        if rows is not None:
            if rows > cls_msa.shape[1]:
                raise ValueError(f'SkipAtBlock: rows ({rows}) beyond the {cls_msa.shape[1]} prefix row(s)')
            return self.forward_mlp(x[:, :rows] + self.drop_path1(cls_msa[:, :rows])), z
        z = self.phi(z, hw_shape)
        return self.forward_mlp(x + self.drop_path1(torch.cat([cls_msa, z], dim=1))), z


@register_backbone()
class SkipAtViT(BaseBackbone):
    """SkipAt Vision Transformer backbone (and the plain ViT with ``skip_indices=()``).

    Args:
        arch: A name from ``arch_zoo`` or a dict with ``embed_dims, num_layers, num_heads,
            feedforward_channels``.
        img_size: Pre-training image size; sets the position-embedding grid (resized at run time).
        patch_size: Patch size.
        in_channels: Input channels.
        skip_indices: 0-based indices of the blocks that skip attention. ``None`` means the paper's
            ``(3, ..., 8)``; ``()`` gives the plain ViT.
        phi_chain: ``'continue'`` (official): Phi_1's input is set at the first skipped block and the chain
            continues across blocks computed in between. ``'restart'``: a skipped block that follows a
            computed block starts a new chain from that block's MSA output.
        phi_ratio: Phi's hidden width over ``embed_dims`` (2 in SkipAt).
        phi_kernel: Phi's depth-wise kernel (5 in SkipAt).
        out_indices: Block indices whose outputs are returned (negative counts from the end).
        out_type: ``'featmap'`` (B, C, H, W), ``'raw'`` tokens, ``'cls_token'`` (B, C) or ``'avg_featmap'``.
        output_cls_token: mmseg's ViT option: each featmap output becomes ``[featmap, cls_token]``.
        with_cls_token: Prepend a cls token.
        final_norm: Apply a final LayerNorm to the last block's output.
        qkv_bias: Bias in the qkv projection.
        norm_eps: LayerNorm epsilon (1e-6 in SkipAt/timm ViT).
        drop_rate / attn_drop_rate / drop_path_rate: Regularisation.
        interpolate_mode: Position-embedding resampling mode.
        frozen_stages: Freeze the patch embedding, position embedding and the first ``frozen_stages`` blocks
            (all blocks and the final norm when equal to ``num_layers``). -1 freezes nothing.
        with_cp: Gradient (activation) checkpointing in training: each block's forward runs under
            ``torch.utils.checkpoint`` (``layers/grad_checkpoint.py``); the MSA output and Phi link a block hands
            on are outputs of that call, so the chain is unchanged. Same outputs and gradients, less memory.
        init_cfg: ``dict(type='Pretrained', checkpoint=<path or URL>)`` loads official SkipAt, timm/DeiT,
            mmpretrain/mmseg ViT or mmevit checkpoints, converting keys and resizing ``pos_embed``.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny', 'skipat-t', 'deit-t'],
                        dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768)),
        **dict.fromkeys(['s', 'small', 'skipat-s', 'deit-s'],
                        dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
        **dict.fromkeys(['b', 'base', 'skipat-b', 'deit-b'],
                        dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
    }
    essential_keys = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
    num_extra_tokens = 1  # pos_embed always keeps the cls row, as official and mmseg checkpoints do
    OUT_TYPES = ('featmap', 'raw', 'cls_token', 'avg_featmap')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 skip_indices: Optional[Sequence[int]] = None,
                 phi_chain: str = 'continue',
                 phi_ratio: float = 2.,
                 phi_kernel: int = 5,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 output_cls_token: bool = False,
                 with_cls_token: bool = True,
                 final_norm: bool = True,
                 qkv_bias: bool = True,
                 norm_eps: float = 1e-6,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 interpolate_mode: str = 'bicubic',
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 device=None, dtype=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._resolve_arch(arch)
        dims, depth = self.arch['embed_dims'], self.arch['num_layers']
        self.embed_dims, self.num_layers = dims, depth
        self.patch_size = check_int(patch_size, 'patch_size')
        self.img_size = check_img_size(img_size, self.patch_size)
        self.in_channels = check_int(in_channels, 'in_channels')
        if check_int(phi_kernel, 'phi_kernel') % 2 == 0:
            raise ValueError(f'phi_kernel must be odd (a "same" depth-wise conv), got {phi_kernel}')
        if not isinstance(phi_ratio, numbers.Real) or phi_ratio <= 0:
            raise ValueError(f'phi_ratio must be a positive number, got {phi_ratio!r}')
        self.pretrain_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)

        self.skip_indices = self._resolve_skip_indices(skip_indices, depth)
        if phi_chain not in ('continue', 'restart'):
            raise ValueError(f"phi_chain must be 'continue' or 'restart', got {phi_chain!r}")
        self.phi_chain = phi_chain
        self.out_indices = check_indices(out_indices, depth)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        if output_cls_token and not with_cls_token:
            raise ValueError('output_cls_token=True needs with_cls_token=True')
        self.out_type = out_type
        self.output_cls_token = output_cls_token
        self.with_cls_token = with_cls_token
        self.interpolate_mode = interpolate_mode
        self.frozen_stages = frozen_stages
        self.with_cp = bool(with_cp)

        dd = dict(device=device, dtype=dtype)
        self.patch_embed = PatchEmbed(in_channels, dims, patch_size, **dd)
        num_patches = self.pretrain_grid[0] * self.pretrain_grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims, **dd)) if with_cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_extra_tokens, dims, **dd))
        self.drop_after_pos = nn.Dropout(drop_rate)

        dpr = drop_path_rates(drop_path_rate, depth)
        hidden = self.arch['feedforward_channels']
        self.blocks = nn.ModuleList([
            SkipAtBlock(dims, hidden, int(dims * phi_ratio), phi_kernel, drop_rate, dpr[i], norm_eps, **dd)
            if i in self.skip_indices else
            ViTBlock(dims, self.arch['num_heads'], hidden, qkv_bias, drop_rate, attn_drop_rate, dpr[i],
                     norm_eps, **dd)
            for i in range(depth)])
        self.final_norm = final_norm
        self.norm = nn.LayerNorm(dims, eps=norm_eps, **dd) if final_norm else None

        self._register_load_state_dict_pre_hook(self._prepare_pos_embed)
        if not self.is_meta():
            self.reset_parameters()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _resolve_arch(self, arch: Union[str, dict]) -> dict:
        return check_vit_arch(self.lookup_arch(arch))

    @staticmethod
    def _resolve_skip_indices(skip_indices: Optional[Sequence[int]], depth: int) -> Tuple[int, ...]:
        if skip_indices is None:
            if depth <= DEFAULT_SKIP_INDICES[-1]:
                raise ValueError(f'the default skip_indices {DEFAULT_SKIP_INDICES} (the paper\'s, for 12 blocks) '
                                 f'do not fit {depth} blocks: pass skip_indices explicitly')
            skip_indices = DEFAULT_SKIP_INDICES
        if isinstance(skip_indices, (str, bytes)) or not isinstance(skip_indices, Sequence):
            raise TypeError(f'skip_indices must be a sequence of ints, got {skip_indices!r}')
        idx = tuple(check_int(i, 'skip_indices entry', minimum=-depth) for i in skip_indices)
        if len(set(idx)) != len(idx) or list(idx) != sorted(idx):
            raise ValueError(f'skip_indices must be increasing and unique, got {skip_indices}')
        if idx and (idx[0] < 1 or idx[-1] >= depth):
            raise ValueError(f'skip_indices must lie in [1, {depth - 1}] (block 0 has no earlier attention '
                             f'to reuse), got {skip_indices}')
        return idx

    def is_meta(self) -> bool:
        return self.pos_embed.device.type == 'meta'

    def reset_parameters(self) -> None:
        """timm ViT init: trunc-normal(0.02) linears with zero bias, pos_embed 0.02, cls_token 1e-6.

        Phi keeps PyTorch's default init, as in the official code (its modules were created after timm's
        init had run).
        """
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for name, m in self.named_modules():
            if '.phi' in name:
                continue
            init_linear_and_norm(m)

    # ------------------------------------------------------------------ weights
    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Load hook: resample a checkpoint's ``pos_embed`` grid to this model's pre-training grid."""
        name = prefix + 'pos_embed'
        if name not in state_dict or state_dict[name].shape == self.pos_embed.shape:
            return
        ckpt = state_dict[name]
        n = ckpt.shape[1] - self.num_extra_tokens
        side = int(math.isqrt(n))
        if side * side != n:
            raise ValueError(f'cannot resize checkpoint pos_embed {tuple(ckpt.shape)}: {n} grid rows are not '
                             'a square')
        print_log(f'SkipAtViT: resize pos_embed {side}x{side} -> {self.pretrain_grid}',
                  logger=MMLogger.get_current_instance())
        state_dict[name] = resample_abs_pos_embed(ckpt, (side, side), self.pretrain_grid,
                                                  self.num_extra_tokens, self.interpolate_mode)

    # ------------------------------------------------------------------ training-time behaviour
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        if self.frozen_stages > self.num_layers:
            raise ValueError(f'frozen_stages {self.frozen_stages} > num_layers {self.num_layers}')
        frozen = [self.patch_embed, self.drop_after_pos, self.pos_embed, self.cls_token,
                  *self.blocks[:self.frozen_stages]]
        if self.frozen_stages == self.num_layers:
            frozen.append(self.norm)
        freeze(frozen)

    def train(self, mode: bool = True) -> 'SkipAtViT':
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer id for layer-wise lr decay (mmpretrain's ``LearningRateDecayOptimWrapperConstructor``).

        Embeddings are layer 0, block i is layer i + 1, everything else (final norm, neck, head) is last.
        """
        num_layers = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed'):
            return 0, num_layers
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers

    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        return convert_skipat_state_dict(state_dict, self)

    def no_weight_decay(self) -> set:
        return {'pos_embed', 'cls_token'}

    # ------------------------------------------------------------------ forward
    def _pos_embed(self, hw_shape: Tuple[int, int]) -> torch.Tensor:
        pos = resample_abs_pos_embed(self.pos_embed, self.pretrain_grid, hw_shape, self.num_extra_tokens,
                                     self.interpolate_mode)
        return pos if self.with_cls_token else pos[:, self.num_extra_tokens:]

    def forward(self, x: torch.Tensor) -> Tuple:
        check_image_batch(x, self.in_channels, self.pos_embed.dtype)
        B = x.shape[0]
        x, hw = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = self.drop_after_pos(x + self._pos_embed(hw))
        p = 1 if self.with_cls_token else 0

        outs = []
        msa: Optional[torch.Tensor] = None  # MSA output of the last computed block
        z: Optional[torch.Tensor] = None    # current link of the Phi chain
        cp = self.with_cp and self.training
        last = self.num_layers - 1
        # In inference, when only CLS tokens are returned, the last block computes the CLS row alone.
        cls_rows = 1 if (self.out_type == 'cls_token' and not self.training
                         and not any(has_hooks(m) for m in self.blocks[last].modules())) else None
        for i, blk in enumerate(self.blocks):
            rows = cls_rows if i == last else None
            if isinstance(blk, SkipAtBlock):
                if z is None:
                    z = msa[:, p:]
                x, z = checkpoint_call(blk, x, z, msa[:, :p], hw, rows=rows, enabled=cp)
            else:
                # Only a block followed by a skipped one hands its MSA output on (to Phi and the CLS row).
                need = i < last and isinstance(self.blocks[i + 1], SkipAtBlock)
                x, msa = checkpoint_call(blk, x, need_msa=need, rows=rows, enabled=cp)
                if self.phi_chain == 'restart':
                    z = None
            if i == last and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw, p))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int], p: int):
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, p:]
        if self.out_type == 'avg_featmap':
            return patches.mean(dim=1)
        B, _, C = patches.shape
        fmap = patches.reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2).contiguous()
        return [fmap, x[:, 0]] if self.output_cls_token else fmap


# ---------------------------------------------------------------------- checkpoint conversion
_MMPRETRAIN_RENAMES = (
    ('patch_embed.projection.', 'patch_embed.proj.'),
    ('.ln1.', '.norm1.'), ('.ln2.', '.norm2.'),
    ('.ffn.layers.0.0.', '.mlp.fc1.'), ('.ffn.layers.1.', '.mlp.fc2.'),
)
_OFFICIAL_PHI_RENAMES = (('linear1.0.', 'fc1.'), ('dwconv.0.', 'dwconv.'), ('linear2.0.', 'fc2.'),
                         ('eca.conv.', 'eca.conv.'))


def detect_format(state_dict: StateDict) -> str:
    """``'official'`` SkipAt (``param_k.*``), ``'timm'`` ViT/DeiT (``blocks.<i>.norm1/attn/mlp``),
    ``'mmpretrain'`` (``layers.<i>.ln1/ffn``: mmpretrain and mmseg ViTs) or ``'mmevit'`` (``blocks.<i>.phi.*``).

    Keys of other families that merely share a prefix (LIT-S's ``layers.*``, Evo-ViT's ``stage_blocks``) are
    not taken for a ViT: they raise ``KeyError`` naming the first keys.
    """
    keys = list(state_dict)
    if any(re.match(r'param_\d+\.', k) for k in keys):
        return 'official'
    if any(re.match(r'blocks\.\d+\.phi\.', k) for k in keys):
        return 'mmevit'
    if any(re.match(r'layers\.\d+\.(ln1|ln2|ffn)\.', k) for k in keys):
        return 'mmpretrain'
    if any(re.match(r'blocks\.\d+\.(norm1|attn|mlp)\.', k) for k in keys):
        return 'timm'
    raise KeyError(f'unrecognised ViT checkpoint: no ViT blocks (blocks.<i>.attn/mlp, layers.<i>.ln1/ffn) or '
                   f'SkipAt param_<k> keys (first keys: {keys[:6]})')


def convert_official_skipat(state_dict: StateDict, skip_indices: Sequence[int]) -> StateDict:
    """Official SkipAt / timm 0.5.4 keys -> mmevit keys.

    ``param_k`` (the k-th skipped block's Phi, 1-based) becomes ``blocks.<skip_indices[k-1]>.phi``; the unused
    ``norm1``/``attn`` weights of skipped blocks and the Phis beyond ``len(skip_indices)`` (the official model
    always builds six) are dropped. Classifier keys (``head.*``, ``pre_logits.*``) pass through unchanged.
    """
    skipped = {int(i) for i in skip_indices}
    out: StateDict = {}
    for k, v in state_dict.items():
        if k.startswith('param_'):
            num, rest = k[len('param_'):].split('.', 1)
            n = int(num)
            if n > len(skip_indices):
                continue
            for old, new in _OFFICIAL_PHI_RENAMES:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            else:
                raise KeyError(f'unexpected official Phi key {k}')
            out[f'blocks.{skip_indices[n - 1]}.phi.{rest}'] = v
            continue
        if k.startswith('blocks.'):
            idx, rest = k[len('blocks.'):].split('.', 1)
            if int(idx) in skipped and rest.startswith(('norm1.', 'attn.')):
                continue
        out[k] = v
    return out


def convert_mmpretrain_vit(state_dict: StateDict) -> StateDict:
    """mmpretrain / mmseg ViT keys (``layers.i.ln1``, ``ffn.layers.0.0``, final ``ln1``) -> mmevit keys."""
    out: StateDict = {}
    for k, v in state_dict.items():
        if k.startswith('layers.'):
            k = 'blocks.' + k[len('layers.'):]
            for old, new in _MMPRETRAIN_RENAMES[1:]:
                k = k.replace(old, new)
        elif k.startswith('ln1.'):
            k = 'norm.' + k[len('ln1.'):]
        k = k.replace(*_MMPRETRAIN_RENAMES[0])
        out[k] = v
    return out


def convert_skipat_state_dict(source: StateDict, model: SkipAtViT) -> Tuple[StateDict, List[str]]:
    """Any supported ViT state dict (official SkipAt, timm/DeiT, mmpretrain/mmseg, mmevit) -> ``model``'s keys.

    Drops what the backbone has no place for (DeiT's ``dist_token``, the unused attention of skipped blocks,
    official Phis beyond ``len(skip_indices)``, ``norm.*`` without a final norm) and resizes ``pos_embed`` to
    the model's pre-training grid (so that shape checks before loading see the result).
    """
    fmt = detect_format(source)
    state = convert_mmpretrain_vit(source) if fmt == 'mmpretrain' else dict(source)
    if fmt != 'mmevit':
        # Official SkipAt, or a plain ViT initialising a SkipAt model: skipped blocks have no attention.
        state = convert_official_skipat(state, model.skip_indices)
    state = {k: v for k, v in state.items()
             if k.split('.')[0] != 'dist_token' and not (model.norm is None and k.startswith('norm.'))}
    # Renaming keeps tensor objects: a source tensor absent from the result was left out on purpose.
    kept = {id(v) for v in state.values()}
    dropped = [k for k, v in source.items() if id(v) not in kept]
    model._prepare_pos_embed(state, '')
    return state, dropped


@register_official('skipat_vit')
def skipat_vit_from_official(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """``VisionTransformerSkipAt(**arch)`` -> mmpretrain ``ImageClassifier(SkipAtViT, VisionTransformerClsHead)``."""
    check_kwargs(arch, _OFFICIAL_KNOWN, 'VisionTransformerSkipAt')
    if arch.get('distilled'):
        raise ValueError('distilled=True (DeiT distillation token) is not supported by SkipAtViT')
    if arch.get('act_layer') not in (None, 'GELU'):
        raise ValueError(f"unsupported act_layer {arch['act_layer']!r}: SkipAt uses GELU")
    num_classes = int(arch.get('num_classes', 1000))
    if num_classes < 1:
        raise ValueError('num_classes must be >= 1 (the official num_classes=0 returns features; use the '
                         'SkipAtViT backbone directly for that)')
    embed_dim, depth = int(arch.get('embed_dim', 768)), int(arch.get('depth', 12))
    backbone = dict(
        type='SkipAtViT',
        arch=dict(embed_dims=embed_dim, num_layers=depth, num_heads=int(arch.get('num_heads', 12)),
                  feedforward_channels=int(embed_dim * float(arch.get('mlp_ratio', 4.)))),
        img_size=arch.get('img_size', 224), patch_size=int(arch.get('patch_size', 16)),
        in_channels=int(arch.get('in_chans', 3)), skip_indices=tuple(arch.get('skip_indices', DEFAULT_SKIP_INDICES)),
        phi_chain='continue', qkv_bias=bool(arch.get('qkv_bias', True)),
        norm_eps=norm_eps(arch.get('norm_layer'), 1e-6), out_type='cls_token', final_norm=True)
    head = dict(type='VisionTransformerClsHead', num_classes=num_classes, in_channels=embed_dim,
                hidden_dim=arch.get('representation_size'))
    return build_classifier(backbone, head, state_dict)


# Official kwargs: those that only matter for training are accepted and ignored.
_OFFICIAL_KNOWN = {'img_size', 'patch_size', 'in_chans', 'num_classes', 'embed_dim', 'depth', 'num_heads',
                   'mlp_ratio', 'qkv_bias', 'representation_size', 'distilled', 'norm_layer', 'act_layer',
                   'skip_indices', 'drop_rate', 'attn_drop_rate', 'drop_path_rate', 'weight_init', 'embed_layer'}
