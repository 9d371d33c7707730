"""Evo-LeViT: slow-fast token evolution in the LeViT pyramid.

Paper: Xu et al., "Evo-ViT: Slow-Fast Token Evolution for Dynamic Vision Transformer", AAAI 2022
(arXiv 2108.01390). Official code: github.com/YifanXu74/Evo-ViT (MIT), ``levit/evo_levit.py`` (and
``evo_levit_384.py``: only the default input size differs), training in ``engine_levit.py`` /
``levit/losses_levit.py``; on LeViT (Graham et al., ICCV 2021, github.com/facebookresearch/LeViT).

Evo-LeViT is LeViT with a CLS token, absolute position embeddings (at the stem and in every subsampling
attention) instead of attention biases, and Evo-ViT's token evolution:
- the global class attention ``g`` (CLS row **averaged over heads**) is blended by every attention with a
  learned trade-off ``t = sigmoid(learn_tradeoff)`` (a fixed 0.5 before the official switch);
- the pruned layers of a stage (all but the first two layers of the network) run together: the patches are
  ranked by ``g``, the top ``keep_ratio * N`` are kept, the others (placeholders) are summarised in a
  representative token (score-weighted mean, appended last); after the stage every placeholder receives the
  sum of the representative token's residual increments (fast update);
- the subsampling attention restores the spatial order, subsamples ``g`` with the queries' stride-2 grid,
  blends in its own CLS row and rescales ``g`` to the total it had before subsampling;
- classification reads the mean of all patch tokens through ``(head + head_dist) / 2``; the CLS token feeds
  the training-only ``head_cls``/``head_cls_dist``.

Differs from the official code:
- One copy of every module (the official state dict lists each twice, under ``blocks.*`` for the layer-wise
  path and ``stage_blocks.*`` for the stage-wise one); either copy converts.
- Tokens stay in spatial order (kept tokens gathered and scattered back), so stage outputs are NCHW maps at
  strides 16/32/64 for any input size; the representative token weights placeholders through a mask.
- The representative token's increment is read as ``r_out - r_in`` (the official sums the residual branches;
  the same value up to rounding).
- Attention via SDPA with the CLS row computed alone, only where a later selection reads the scores; scores
  and selection in float32 under autocast. No module-level state (the official keeps ``g`` and the index
  map in globals): re-entrant and thread-safe.
- Layer-wise/stage-wise pruning and the fixed/learned trade-off are model settings (``set_evo_schedule``)
  switched by ``EvoViTScheduleHook``; evaluation always uses the inference setting (stage-wise, learned).
- ``switch_to_deploy()`` folds every BatchNorm into its Linear/Conv (LeViT's ``fuse``).
"""
import math
import numbers
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from ...official import build_classifier, check_kwargs, register_official
from ...registry import register_backbone
from ..checkpoint import StateDict
from ..layers import (ConvBN, LinearBN, attention_with_cls_row, blend_scores, checkpoint_call, drop_path,
                      fuse_bn_modules, gather_tokens, representative_token, resample_abs_pos_embed,
                      scatter_tokens, select_tokens, subsample_grid)
from .base import (BaseBackbone, check_bool, check_frozen_stages, check_image_batch, check_img_size, check_indices,
                   check_int, check_rate, check_width, freeze, map_head)

NUM_UNPRUNED = 2  # the official models never prune the first two layers
OFFICIAL_STAGE_KEEP_RATIOS = (0.5, 0.5, 0.5)


def _grid_after_stride2(hw: Tuple[int, int]) -> Tuple[int, int]:
    return (hw[0] + 1) // 2, (hw[1] + 1) // 2


class LeViTAttention(nn.Module):
    """LeViT attention without attention biases: ``qkv`` LinearBN with per-head channels
    ``[q (key_dim), k (key_dim), v (attn_ratio * key_dim)]``, softmax(q k^T / sqrt(key_dim)) v, then Hardswish
    and the ``proj`` LinearBN. ``learn_tradeoff`` is Evo-ViT's score blend factor (through a sigmoid)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, fused_attn: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_heads, self.key_dim, self.val_dim = num_heads, key_dim, int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.fused_attn = fused_attn
        self.qkv = LinearBN(dim, num_heads * (2 * key_dim + self.val_dim), **dd)
        self.act = nn.Hardswish()
        self.proj = LinearBN(num_heads * self.val_dim, dim, bn_weight_init=0., **dd)
        self.learn_tradeoff = nn.Parameter(torch.zeros(1, **dd))

    def forward(self, x: torch.Tensor, need_cls_attn: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, self.num_heads, 2 * self.key_dim + self.val_dim).split(
            [self.key_dim, self.key_dim, self.val_dim], dim=3)
        out, row = attention_with_cls_row(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.scale,
                                          need_cls_attn, self.fused_attn)
        return self.proj(self.act(out.transpose(1, 2).reshape(B, N, self.num_heads * self.val_dim))), row


class LeViTSubsampleAttention(nn.Module):
    """LeViT's shrinking attention: keys/values from all tokens, queries from CLS + the stride-2 grid, no
    residual. Evo-LeViT adds ``pos_embed`` (its own absolute position embedding) to the input first."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 grid: Tuple[int, int], fused_attn: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_heads, self.key_dim, self.val_dim = num_heads, key_dim, int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.fused_attn = fused_attn
        self.grid = grid  # pre-training grid of the input (sets pos_embed's shape)
        self.kv = LinearBN(in_dim, num_heads * (key_dim + self.val_dim), **dd)
        self.q = LinearBN(in_dim, num_heads * key_dim, **dd)
        self.act = nn.Hardswish()
        self.proj = LinearBN(num_heads * self.val_dim, out_dim, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + 1, in_dim, **dd))
        self.learn_tradeoff = nn.Parameter(torch.zeros(1, **dd))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], need_cls_attn: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B, N, _ = x.shape
        x = x + resample_abs_pos_embed(self.pos_embed, self.grid, hw, 1)
        k, v = self.kv(x).view(B, N, self.num_heads, self.key_dim + self.val_dim).split(
            [self.key_dim, self.val_dim], dim=3)
        q = self.q(torch.cat([x[:, :1], subsample_grid(x[:, 1:], hw)], dim=1))
        nq = q.shape[1]
        q = q.view(B, nq, self.num_heads, self.key_dim)
        out, row = attention_with_cls_row(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.scale,
                                          need_cls_attn, self.fused_attn)
        return self.proj(self.act(out.transpose(1, 2).reshape(B, nq, self.num_heads * self.val_dim))), row


class LeViTMlp(nn.Module):
    """LinearBN -> Hardswish -> LinearBN (second BatchNorm initialised to 0, as LeViT)."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None) -> None:
        super().__init__()
        self.fc1 = LinearBN(dim, hidden, device=device, dtype=dtype)
        self.act = nn.Hardswish()
        self.fc2 = LinearBN(hidden, dim, bn_weight_init=0., device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EvoLeViTBlock(nn.Module):
    """``x + drop_path(attn(x))``, then ``x + drop_path(mlp(x))`` (LeViT has no pre-norm: BNs are inside)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, mlp_ratio: float,
                 drop_path_rate: float = 0., device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.attn = LeViTAttention(dim, key_dim, num_heads, attn_ratio, **dd)
        self.mlp = LeViTMlp(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor, need_cls_attn: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        msa, row = self.attn(x, need_cls_attn)
        x = x + self.drop_path(msa)
        return x + self.drop_path(self.mlp(x)), row


class EvoLeViTDownsample(nn.Module):
    """The subsampling attention (no residual) followed by a residual MLP, between two stages."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, attn_ratio: float, mlp_ratio: float,
                 grid: Tuple[int, int], drop_path_rate: float = 0., device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.attn = LeViTSubsampleAttention(in_dim, out_dim, key_dim, in_dim // key_dim, attn_ratio, grid, **dd)
        self.mlp = LeViTMlp(out_dim, int(out_dim * mlp_ratio), **dd)
        self.drop_path = drop_path(drop_path_rate)


class EvoLeViTStage(nn.Module):
    def __init__(self, downsample: Optional[EvoLeViTDownsample], blocks: Sequence[EvoLeViTBlock]) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)


@register_backbone()
class EvoLeViT(BaseBackbone):
    """Evo-LeViT backbone: a three-stage pyramid (strides 16, 32, 64) with slow-fast token evolution.

    Args:
        arch: ``'128s'``, ``'128'``, ``'192'``, ``'256'``, ``'384'`` (aliases ``evo-levit-*``) or a dict with
            ``embed_dims`` (3 widths), ``key_dim``, ``num_heads`` (3), ``depths`` (3); ``drop_path_rate`` may
            be given too.
        img_size: Pre-training image size (sets the position-embedding grids; resampled for other sizes).
        in_channels: Input channels.
        keep_ratios: Per layer (``sum(depths)`` entries), the fraction of patch tokens the layer updates in
            layer-wise pruning; 1 = unpruned (must be a prefix of its stage). ``None``: official
            ``[1, 1, 0.5, ...]``.
        stage_keep_ratios: Per stage, the kept fraction of the stage-wise path (inference). ``None``: 0.5.
        attn_ratio / mlp_ratio: Value width and MLP width over the key width / embedding (LeViT: 2, 2).
        down_attn_ratio / down_mlp_ratio: The same for the subsampling attention and its MLP (4, 2).
        drop_path_rate: Stochastic depth of every residual (LeViT uses one rate; ``None``: the arch's).
        stage_wise / learn_tradeoff: Training path: stage-wise pruning and the learned trade-off (``True``,
            the inference setting) or layer-wise pruning and a fixed trade-off of 0.5 (the official first
            phase). Usually set by ``EvoViTScheduleHook``; evaluation always uses the inference setting.
        out_indices: Stages whose outputs are returned (0, 1, 2 at strides 16, 32, 64).
        out_type: ``'featmap'`` (B, C, H, W) or ``'avg_featmap'`` (mean of all patch tokens, the
            classification feature).
        train_cls_token: With ``'avg_featmap'``: in training mode the last output becomes ``[pooled, cls]``
            for the training-only CLS heads (``EvoLeViTClsHead``).
        frozen_stages: Freeze the stem, embeddings and the first ``frozen_stages`` stages (-1: none).
        with_cp: Gradient (activation) checkpointing in training: every block, and the subsampling attention
            and its MLP, run under ``torch.utils.checkpoint`` (``layers/grad_checkpoint.py``); selection, the
            representative token and the score blending stay outside (the CLS rows are outputs of the
            checkpointed calls), and the recomputation does not update the BatchNorm statistics a second time.
            Same outputs, gradients and buffers, less memory.
        deploy: Build with BatchNorms folded (the layout ``switch_to_deploy`` produces).
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads official Evo-LeViT or mmevit checkpoints.
    """

    arch_zoo = {
        **dict.fromkeys(['128s', 'evo-levit-128s'], dict(embed_dims=[128, 256, 384], key_dim=16,
                                                         num_heads=[4, 6, 8], depths=[2, 3, 4])),
        **dict.fromkeys(['128', 'evo-levit-128'], dict(embed_dims=[128, 256, 384], key_dim=16,
                                                       num_heads=[4, 8, 12], depths=[4, 4, 4])),
        **dict.fromkeys(['192', 'evo-levit-192'], dict(embed_dims=[192, 288, 384], key_dim=32,
                                                       num_heads=[3, 5, 6], depths=[4, 4, 4])),
        **dict.fromkeys(['256', 'evo-levit-256'], dict(embed_dims=[256, 384, 512], key_dim=32,
                                                       num_heads=[4, 6, 8], depths=[4, 4, 4])),
        **dict.fromkeys(['384', 'evo-levit-384'], dict(embed_dims=[384, 512, 768], key_dim=32,
                                                       num_heads=[6, 9, 12], depths=[4, 4, 4], drop_path_rate=0.1)),
    }
    essential_keys = {'embed_dims', 'key_dim', 'num_heads', 'depths'}
    optional_keys = {'drop_path_rate'}
    OUT_TYPES = ('featmap', 'avg_featmap')
    head_prefixes = ('head.', 'head_dist.', 'head_cls.', 'head_cls_dist.')

    def __init__(self,
                 arch: Union[str, dict] = '256',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 keep_ratios: Optional[Sequence[float]] = None,
                 stage_keep_ratios: Optional[Sequence[float]] = None,
                 attn_ratio: float = 2.,
                 mlp_ratio: float = 2.,
                 down_attn_ratio: float = 4.,
                 down_mlp_ratio: float = 2.,
                 drop_path_rate: Optional[float] = None,
                 stage_wise: bool = True,
                 learn_tradeoff: bool = True,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2),
                 out_type: str = 'featmap',
                 train_cls_token: bool = False,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 device=None, dtype=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._resolve_arch(arch)
        dims, key_dim, heads, depths = (self.arch[k] for k in ('embed_dims', 'key_dim', 'num_heads', 'depths'))
        self.embed_dims, self.depths, self.num_stages = tuple(dims), tuple(depths), len(depths)
        self.img_size = check_img_size(img_size)
        self.in_channels = check_int(in_channels, 'in_channels')
        # Every derived width must be >= 1: value widths (ratio x key_dim) and MLP widths (ratio x embedding).
        check_width(key_dim, attn_ratio, 'attn_ratio')
        check_width(key_dim, down_attn_ratio, 'down_attn_ratio')
        check_width(min(dims), mlp_ratio, 'mlp_ratio')
        check_width(min(dims[1:]) if len(dims) > 1 else 1, down_mlp_ratio, 'down_mlp_ratio')
        dpr = check_rate(self.arch.get('drop_path_rate', 0.) if drop_path_rate is None else drop_path_rate,
                         'drop_path_rate')

        total = sum(depths)
        if keep_ratios is None:
            keep_ratios = [1.] * NUM_UNPRUNED + [0.5] * (total - NUM_UNPRUNED)
        self.keep_ratios = _ratios(keep_ratios, total, 'keep_ratios')
        self.stage_keep_ratios = _ratios(OFFICIAL_STAGE_KEEP_RATIOS if stage_keep_ratios is None
                                         else stage_keep_ratios, self.num_stages, 'stage_keep_ratios')
        self.num_unpruned = self._count_unpruned()
        if any(r == 1 for r, n, d in zip(self.stage_keep_ratios, self.num_unpruned, depths) if n < d):
            raise ValueError(f'stage_keep_ratios must be < 1 for stages with pruned layers, got '
                             f'{self.stage_keep_ratios}')
        self.stage_wise = check_bool(stage_wise, 'stage_wise')
        self.learn_tradeoff = check_bool(learn_tradeoff, 'learn_tradeoff')

        self.out_indices = check_indices(out_indices, self.num_stages)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        if train_cls_token and out_type != 'avg_featmap':
            raise ValueError("train_cls_token=True needs out_type='avg_featmap' (the classification feature)")
        self.out_type, self.train_cls_token = out_type, check_bool(train_cls_token, 'train_cls_token')
        self.frozen_stages = check_frozen_stages(frozen_stages, self.num_stages)
        check_bool(deploy, 'deploy')
        self.with_cp = bool(with_cp)
        self.deploy = False

        dd = dict(device=device, dtype=dtype)
        c0 = dims[0]
        self.patch_embed = nn.Sequential(
            ConvBN(in_channels, c0 // 8, **dd), nn.Hardswish(), ConvBN(c0 // 8, c0 // 4, **dd), nn.Hardswish(),
            ConvBN(c0 // 4, c0 // 2, **dd), nn.Hardswish(), ConvBN(c0 // 2, c0, **dd))
        grid = self.img_size
        for _ in range(4):
            grid = _grid_after_stride2(grid)
        self.pretrain_grids = [grid]
        for _ in range(1, self.num_stages):
            self.pretrain_grids.append(_grid_after_stride2(self.pretrain_grids[-1]))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c0, **dd))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + 1, c0, **dd))
        stages = []
        for s in range(self.num_stages):
            down = None
            if s > 0:
                down = EvoLeViTDownsample(dims[s - 1], dims[s], key_dim, down_attn_ratio, down_mlp_ratio,
                                          self.pretrain_grids[s - 1], dpr, **dd)
            blocks = [EvoLeViTBlock(dims[s], key_dim, heads[s], attn_ratio, mlp_ratio, dpr, **dd)
                      for _ in range(depths[s])]
            stages.append(EvoLeViTStage(down, blocks))
        self.stages = nn.ModuleList(stages)

        self._register_load_state_dict_pre_hook(self._prepare_pos_embed)
        if self.pos_embed.device.type != 'meta':
            self.reset_parameters()
        if deploy:
            self.switch_to_deploy()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _resolve_arch(self, arch: Union[str, int, dict]) -> dict:
        if isinstance(arch, int) and not isinstance(arch, bool):  # arch=256 (e.g. from a command-line spec)
            arch = str(arch)
        if isinstance(arch, str):
            return self.lookup_arch(arch)
        arch = self.lookup_arch(arch)
        check_int(arch['key_dim'], "arch['key_dim']")
        for key in ('embed_dims', 'num_heads', 'depths'):
            v = arch[key]
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not v:
                raise ValueError(f'arch[{key!r}] must be a non-empty list of ints, got {v!r}')
            for x in v:
                check_int(x, f'arch[{key!r}] entry')
        n = len(arch['depths'])
        if len(arch['embed_dims']) != n or len(arch['num_heads']) != n:
            raise ValueError(f"arch embed_dims, num_heads and depths must have one entry per stage, got "
                             f"{arch['embed_dims']}, {arch['num_heads']}, {arch['depths']}")
        for d in arch['embed_dims']:
            if d % arch['key_dim'] or d % 8:
                raise ValueError(f"embed_dims {d} must be divisible by key_dim {arch['key_dim']} (the heads of "
                                 'the subsampling attention) and by 8 (the stem)')
        return dict(arch, embed_dims=list(arch['embed_dims']), num_heads=list(arch['num_heads']),
                    depths=list(arch['depths']))

    def _count_unpruned(self) -> Tuple[int, ...]:
        counts, start = [], 0
        for s, d in enumerate(self.depths):
            ratios = self.keep_ratios[start:start + d]
            n = 0
            while n < d and ratios[n] == 1:
                n += 1
            if any(r == 1 for r in ratios[n:]):
                raise ValueError(f'keep_ratios: the unpruned layers (ratio 1) of stage {s} must come first, got '
                                 f'{list(ratios)}')
            counts.append(n)
            start += d
        if counts[0] == 0:
            raise ValueError('keep_ratios: the first layer cannot be pruned (the scores come from attention)')
        return tuple(counts)

    def reset_parameters(self) -> None:
        """cls_token and position embeddings trunc-normal(0.02); Linear/Conv PyTorch defaults; BatchNorm
        weights 1, except the last BN of every residual branch (0, as LeViT)."""
        nn.init.trunc_normal_(self.cls_token, std=.02)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        for m in self.modules():
            if isinstance(m, LinearBN):
                m.reset_parameters()
            elif isinstance(m, LeViTSubsampleAttention):
                nn.init.trunc_normal_(m.pos_embed, std=.02)
                nn.init.zeros_(m.learn_tradeoff)
            elif isinstance(m, LeViTAttention):
                nn.init.zeros_(m.learn_tradeoff)

    # ------------------------------------------------------------------ training schedule
    def set_evo_schedule(self, stage_wise: Optional[bool] = None, learn_tradeoff: Optional[bool] = None) -> None:
        """Switch the training path: layer-wise or stage-wise pruning, fixed (0.5) or learned trade-off."""
        if stage_wise is not None:
            self.stage_wise = bool(stage_wise)
        if learn_tradeoff is not None:
            self.learn_tradeoff = bool(learn_tradeoff)

    def _modes(self, training: Optional[bool]) -> Tuple[bool, bool]:
        training = self.training if training is None else training
        return (self.stage_wise, self.learn_tradeoff) if training else (True, True)

    def plan(self, training: Optional[bool] = None) -> List[Tuple]:
        """The forward program for the current mode: ``('down', s)``, ``('layer', s, j)`` (all tokens) and
        ``('group', s, (j, ...), keep_ratio)`` (pruned layers run on the kept tokens + representative)."""
        stage_wise, _ = self._modes(training)
        steps, start = [], 0
        for s, d in enumerate(self.depths):
            if s > 0:
                steps.append(('down', s))
            n = self.num_unpruned[s]
            steps += [('layer', s, j) for j in range(n)]
            if n < d:
                if stage_wise:
                    steps.append(('group', s, tuple(range(n, d)), self.stage_keep_ratios[s]))
                else:
                    steps += [('group', s, (j,), self.keep_ratios[start + j]) for j in range(n, d)]
            start += d
        return steps

    @staticmethod
    def score_steps(plan: Sequence[Tuple]) -> Set[int]:
        """Indices of the steps whose CLS rows are read later: every step before the last selection (the
        learned trade-off is never exactly 1, so no update overwrites the scores)."""
        groups = [i for i, step in enumerate(plan) if step[0] == 'group']
        return set(range(groups[-1])) if groups else set()

    # ------------------------------------------------------------------ weights
    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Load hook: resample checkpoint position embeddings to this model's pre-training grids."""
        names = [('pos_embed', self.pretrain_grids[0])] + [
            (f'stages.{s}.downsample.attn.pos_embed', self.pretrain_grids[s - 1]) for s in range(1, self.num_stages)]
        for name, grid in names:
            key = prefix + name
            if key not in state_dict:
                continue
            ckpt = state_dict[key]
            n = ckpt.shape[1] - 1
            if n == grid[0] * grid[1]:
                continue
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f'cannot resize checkpoint {name} {tuple(ckpt.shape)}: {n} grid rows are not a '
                                 'square')
            print_log(f'EvoLeViT: resize {name} {side}x{side} -> {grid}', logger=MMLogger.get_current_instance())
            state_dict[key] = resample_abs_pos_embed(ckpt, (side, side), grid, 1)

    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        return convert_evo_levit_state_dict(state_dict, self)

    def convert_head(self, head_state: StateDict, target_shapes: Dict[str, torch.Size]) -> StateDict:
        """Official ``head``/``head_dist``/``head_cls``/``head_cls_dist`` (BN + Linear) -> ``EvoLeViTClsHead``."""
        return map_head(head_state, target_shapes, [(f'{n}.', (f'head.{n}.',)) for n in
                                                    ('head', 'head_dist', 'head_cls', 'head_cls_dist')])

    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm into the preceding Linear/Conv (eval statistics); irreversible."""
        if self.deploy:
            return
        fuse_bn_modules(self)
        self.deploy = True

    def no_weight_decay(self) -> set:
        return {'pos_embed', 'cls_token'} | {n for n, _ in self.named_parameters() if n.endswith('.pos_embed')}

    # ------------------------------------------------------------------ training-time behaviour
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        if self.frozen_stages > self.num_stages:
            raise ValueError(f'frozen_stages {self.frozen_stages} > number of stages {self.num_stages}')
        freeze([self.patch_embed, self.cls_token, self.pos_embed, *self.stages[:self.frozen_stages]])

    def train(self, mode: bool = True) -> 'EvoLeViT':
        super().train(mode)
        self._freeze_stages()
        return self

    def unused_parameters(self, training: Optional[bool] = None) -> Set[str]:
        """Parameters that by design get no gradient in this mode: stages after the last output (not run);
        ``learn_tradeoff`` of the first attention (it sets the scores, ``g = a``), of the attentions whose
        scores are read by no later selection (the last pruned stage), and of all attentions while the
        trade-off is fixed. Exact for stage-wise pruning; layer-wise pruning may leave further trade-offs
        without gradient when a layer keeps the same tokens as the next."""
        _, learned = self._modes(training)
        last = self.out_indices[-1]
        unused = {n for n, _ in self.named_parameters()
                  if n.startswith(tuple(f'stages.{s}.' for s in range(last + 1, self.num_stages)))}
        plan = [step for step in self.plan(training) if step[1] <= last]
        need = self.score_steps(plan)
        for i, step in enumerate(plan):
            layers = [f'stages.{step[1]}.downsample.attn'] if step[0] == 'down' else [
                f'stages.{step[1]}.blocks.{j}.attn' for j in (step[2] if step[0] == 'group' else (step[2],))]
            first = i == 0
            if not learned or first or i not in need:
                unused.update(f'{name}.learn_tradeoff' for name in layers)
        return unused

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple:
        check_image_batch(x, self.in_channels, self.cls_token.dtype)
        x = self.patch_embed(x)
        B, _, H, W = x.shape
        hw = (H, W)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + resample_abs_pos_embed(self.pos_embed, self.pretrain_grids[0], hw, 1)

        _, learned = self._modes(None)
        last = self.out_indices[-1]
        plan = [step for step in self.plan() if step[1] <= last]
        need = self.score_steps(plan)
        scores: Optional[torch.Tensor] = None  # (B, N) global class attention, float32, spatial order
        outs = []
        for i, step in enumerate(plan):
            kind, s = step[0], step[1]
            stage = self.stages[s]
            if kind == 'down':
                x, hw, scores = self._downsample(stage.downsample, x, hw, scores, i in need, learned)
            elif kind == 'layer':
                attn = stage.blocks[step[2]]
                x, row = checkpoint_call(attn, x, need_cls_attn=i in need, enabled=self.with_cp and self.training)
                if row is not None:
                    scores = blend_scores(scores, row[:, :, 1:].mean(dim=1), _alpha(attn.attn, learned))
            else:
                x, scores = self._evolve(stage, step[2], step[3], x, hw, scores, i in need, learned)
            stage_end = i + 1 == len(plan) or plan[i + 1][1] != s
            if stage_end and s in self.out_indices:
                outs.append(self._format_output(x, hw, s == last))
        return tuple(outs)

    def _downsample(self, down: EvoLeViTDownsample, x: torch.Tensor, hw: Tuple[int, int],
                    scores: Optional[torch.Tensor], need: bool, learned: bool):
        cp = self.with_cp and self.training
        out, row = checkpoint_call(down.attn, x, hw, need_cls_attn=need, enabled=cp)
        if row is not None:
            # Subsample the scores with the queries' grid, blend in this attention's CLS row (over all keys,
            # subsampled alike), and keep the total the scores had before subsampling.
            alpha = _alpha(down.attn, learned)
            new = blend_scores(subsample_grid(scores, hw), subsample_grid(row[:, :, 1:].mean(dim=1), hw), alpha)
            scores = new * (scores.sum(dim=1, keepdim=True) / new.sum(dim=1, keepdim=True))
        else:
            scores = None
        out = out + down.drop_path(checkpoint_call(down.mlp, out, enabled=cp))
        return out, _grid_after_stride2(hw), scores

    def _evolve(self, stage: EvoLeViTStage, layers: Sequence[int], keep_ratio: float, x: torch.Tensor,
                hw: Tuple[int, int], scores: torch.Tensor, need: bool, learned: bool):
        """Slow-fast update of ``layers``: the kept tokens and the representative token go through them,
        then every placeholder gets the representative token's total increment."""
        cls, patches = x[:, :1], x[:, 1:]
        keep = select_tokens(scores, int(hw[0] * hw[1] * keep_ratio))
        rep = representative_token(patches, scores, keep)
        cur = torch.cat([cls, gather_tokens(patches, keep), rep], dim=1)
        for j in layers:
            blk = stage.blocks[j]
            cur, row = checkpoint_call(blk, cur, need_cls_attn=need, enabled=self.with_cp and self.training)
            if row is not None:  # kept entries only (the representative token is last)
                scores = blend_scores(scores, row[:, :, 1:-1].mean(dim=1), _alpha(blk.attn, learned), keep)
        patches = scatter_tokens(patches + (cur[:, -1:] - rep), keep, cur[:, 1:-1])
        return torch.cat([cur[:, :1], patches], dim=1), scores

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int], is_last: bool):
        if self.out_type == 'avg_featmap':
            pooled = x[:, 1:].mean(dim=1)
            if self.training and self.train_cls_token and is_last:
                return [pooled, x[:, 0]]
            return pooled
        B, _, C = x.shape
        return x[:, 1:].reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2).contiguous()


def _alpha(attn: nn.Module, learned: bool):
    """The score blend factor of an attention: ``sigmoid(learn_tradeoff)`` (float32) or the fixed 0.5."""
    return torch.sigmoid(attn.learn_tradeoff.float()) if learned else 0.5


def _ratios(values: Sequence[float], n: int, name: str) -> Tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
        raise ValueError(f'{name} must be a sequence of {n} numbers, got {values!r}')
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1:
            raise ValueError(f'{name} entries must lie in (0, 1], got {v!r}')
    return tuple(float(v) for v in values)


# ---------------------------------------------------------------------- checkpoint conversion
def official_block_names(depths: Sequence[int]) -> List[str]:
    """Our module for each official ``blocks.<k>``: per stage, the subsampling attention and its MLP (from
    stage 1), then the stage's layers."""
    names = []
    for s, d in enumerate(depths):
        if s > 0:
            names += [f'stages.{s}.downsample.attn', f'stages.{s}.downsample.mlp']
        names += [f'stages.{s}.blocks.{j}' for j in range(d)]
    return names


def official_stage_aliases(depths: Sequence[int], num_unpruned: Sequence[int]) -> Dict[str, str]:
    """The official ``stage_blocks.*`` -> ``blocks.*`` module aliases (the same module objects): each unpruned
    layer's attention and MLP residuals one by one, a stage's pruned layers as one ``StageModule`` (``.m.<i>``
    over their attention/MLP residuals), the subsampling attention and its MLP one by one."""
    aliases, t, k = {}, 0, 0
    for s, d in enumerate(depths):
        if s > 0:
            aliases[f'stage_blocks.{t}'] = f'blocks.{k}'
            aliases[f'stage_blocks.{t + 1}'] = f'blocks.{k + 1}'
            t, k = t + 2, k + 2
        n = num_unpruned[s]
        for j in range(n):
            aliases[f'stage_blocks.{t}'] = f'blocks.{k + j}.m1'
            aliases[f'stage_blocks.{t + 1}'] = f'blocks.{k + j}.m2'
            t += 2
        if n < d:
            for i, j in enumerate(range(n, d)):
                aliases[f'stage_blocks.{t}.m.{2 * i}'] = f'blocks.{k + j}.m1'
                aliases[f'stage_blocks.{t}.m.{2 * i + 1}'] = f'blocks.{k + j}.m2'
            t += 1
        k += d
    return aliases


def detect_format(state_dict: StateDict) -> str:
    """``'official'`` Evo-LeViT (``blocks.*`` and/or ``stage_blocks.*``, ``poss``) or ``'mmevit'``
    (``stages.*``, unfused or deploy)."""
    keys = list(state_dict)
    if any(k.startswith('stages.') for k in keys):
        return 'mmevit'
    if any(k.startswith(('blocks.', 'stage_blocks.', 'poss')) for k in keys):
        return 'official'
    raise KeyError(f'unrecognised Evo-LeViT checkpoint: no blocks.*, stage_blocks.* or stages.* keys (first '
                   f'keys: {keys[:6]})')


def convert_official_evo_levit(state_dict: StateDict, depths: Sequence[int],
                               num_unpruned: Sequence[int]) -> Tuple[StateDict, List[str]]:
    """Official Evo-LeViT keys -> mmevit keys. Reads the ``blocks.*`` copy; a checkpoint holding only the
    ``stage_blocks.*`` copy is read through the alias map. Returns the state and the dropped alias keys."""
    aliases = official_stage_aliases(depths, num_unpruned)
    has_blocks = any(k.startswith('blocks.') for k in state_dict)
    src: StateDict = {}
    dropped = []
    for k, v in state_dict.items():
        if k.startswith('stage_blocks.'):
            if has_blocks:
                dropped.append(k)
                continue
            for alias in sorted(aliases, key=len, reverse=True):
                if k.startswith(alias + '.'):
                    k = aliases[alias] + k[len(alias):]
                    break
            else:
                raise KeyError(f'official key {k} matches no stage_blocks module of depths {list(depths)}')
        src[k] = v
    names = official_block_names(depths)
    out: StateDict = {}
    for k, v in src.items():
        if k == 'poss':
            out['pos_embed'] = v
            continue
        if k.startswith('patch_embed.'):
            out[k.replace('.c.', '.conv.')] = v
            continue
        if not k.startswith('blocks.'):
            out[k] = v
            continue
        idx, rest = k[len('blocks.'):].split('.', 1)
        if int(idx) >= len(names):
            raise KeyError(f'official key {k}: depths {list(depths)} have only {len(names)} blocks')
        name = names[int(idx)]
        if name.endswith('.downsample.attn'):
            rest = rest.replace('q.1.', 'q.', 1).replace('proj.1.', 'proj.', 1)
            rest = 'pos_embed' if rest == 'poss' else rest
        elif name.endswith('.downsample.mlp'):
            rest = rest.replace('m.0.', 'fc1.', 1).replace('m.2.', 'fc2.', 1)
        else:
            for old, new in (('m1.m.proj.1.', 'attn.proj.'), ('m1.m.', 'attn.'), ('m2.m.0.', 'mlp.fc1.'),
                             ('m2.m.2.', 'mlp.fc2.')):
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            else:
                raise KeyError(f'unexpected official key {k}')
        out[f'{name}.{rest.replace(".c.", ".linear.")}'] = v
    return out, dropped


def convert_evo_levit_state_dict(source: StateDict, model: EvoLeViT) -> Tuple[StateDict, List[str]]:
    """Official Evo-LeViT or mmevit state dict -> ``model``'s keys (position embeddings resized)."""
    if detect_format(source) == 'official':
        state, dropped = convert_official_evo_levit(source, model.depths, model.num_unpruned)
    else:
        state, dropped = dict(source), []
    model._prepare_pos_embed(state, '')
    return state, dropped


# ---------------------------------------------------------------------- official model
_OFFICIAL_KNOWN = {'C', 'D', 'X', 'N', 'drop_path', 'weights', 'num_classes', 'distillation', 'pretrained',
                   'fuse', 'prune_ratio', 'img_size'}


def _split_spec(value, name: str) -> List[int]:
    if isinstance(value, str):
        return [int(x) for x in value.split('_')]
    if isinstance(value, Sequence):
        return [int(x) for x in value]
    raise ValueError(f'official {name} must be a "a_b_c" string, got {value!r}')


@register_official('evo_levit')
def evo_levit_from_official(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """``model_factory(**arch)`` (``levit/evo_levit.py``) in eval mode (stage-wise pruning, learned
    trade-off) -> mmpretrain ``ImageClassifier(EvoLeViT(out_type='avg_featmap'), EvoLeViTClsHead)``."""
    check_kwargs(arch, _OFFICIAL_KNOWN, 'Evo-LeViT model_factory')
    if arch.get('pretrained') or arch.get('weights'):
        raise ValueError('pretrained/weights: pass the checkpoint as state_dict instead')
    num_classes = int(arch.get('num_classes', 1000))
    if num_classes < 1:
        raise ValueError('num_classes must be >= 1 (use the EvoLeViT backbone directly for features)')
    dims, heads, depths = (_split_spec(arch[k], k) for k in ('C', 'N', 'X'))
    prune = arch.get('prune_ratio')
    if prune is None or len(prune) != 2:
        raise ValueError('prune_ratio must be [per-layer ratios, per-stage ratios], as the official factory takes')
    backbone = dict(
        type='EvoLeViT', arch=dict(embed_dims=dims, key_dim=int(arch['D']), num_heads=heads, depths=depths),
        img_size=arch.get('img_size', 224), keep_ratios=list(prune[0]), stage_keep_ratios=list(prune[1]),
        drop_path_rate=float(arch.get('drop_path', 0.)), out_indices=(len(depths) - 1,), out_type='avg_featmap',
        train_cls_token=True)
    head = dict(type='EvoLeViTClsHead', num_classes=num_classes, in_channels=dims[-1],
                distillation=bool(arch.get('distillation', True)))
    model = build_classifier(backbone, head, state_dict)
    if arch.get('fuse'):
        model.backbone.switch_to_deploy()
        model.head.switch_to_deploy()
    return model
