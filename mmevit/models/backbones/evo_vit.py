"""Evo-ViT on DeiT: slow-fast token evolution in a plain ViT.

Paper: Xu et al., "Evo-ViT: Slow-Fast Token Evolution for Dynamic Vision Transformer", AAAI 2022
(arXiv 2108.01390). Official code: github.com/YifanXu74/Evo-ViT (MIT), ``deit/evo_deit.py``
(``EvoVisionTransformer``), training in ``engine_deit.py`` / ``deit/losses_deit.py``.

A global class attention ``g`` (the CLS query's attention row over the patches, **summed over heads**) is set
by the first layer and blended ``g = (1 - t_l) g + t_l a_l`` by the following ones. At the first layer of
every stage (layers 4 and 8 of the official model) the patches are ranked by ``g`` and the top
``keep_ratio * N`` ("informative") tokens plus CLS go through the stage's layers (slow update, which also
updates their scores); the others ("placeholders") are not updated at all in the DeiT variant (no
representative token here, unlike Evo-LeViT) and are written back at the end of the stage. The selection at
the next stage ranks all N tokens again with the updated scores. Classification reads
``norm(mean of all N patch tokens)``; the CLS token feeds a second head during training only.

Differs from the official code:
- timm key layout (``blocks.<i>.norm1 / attn.qkv / attn.proj / norm2 / mlp``): plain DeiT checkpoints load
  as they are, official Evo-ViT checkpoints are converted (``qks.<i>.qk`` and ``vs.<i>.v`` concatenated into
  ``attn.qkv``, ``norms.<i>`` -> ``norm1``, ``projs.<i>`` -> ``attn.proj``).
- Tokens stay in spatial order: the kept tokens are gathered with ``topk`` (the same set and order as the
  official descending sort) and scattered back, so dense-prediction maps (``out_indices``, NCHW, any input
  size) come out in place, the placeholders with their last value.
- Attention via SDPA; the CLS row is computed alone, and only in the layers whose scores are read later
  (layers 3-7 at inference). Scores, blending and selection in float32 under autocast.
- Layer-wise pruning (the official first phase of training) and stage-wise pruning are a model setting
  (``set_evo_schedule``) switched by ``EvoViTScheduleHook``; evaluation always runs the stage-wise inference
  path. No module-level state: the model is re-entrant and thread-safe.
"""
import math
import numbers
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from ...official import build_classifier, check_kwargs, norm_eps, register_official
from ...registry import register_backbone
from ..checkpoint import StateDict
from ..layers import (EvoAttention, PatchEmbed, TransformerBlock, blend_scores, checkpoint_call, drop_path_rates,
                      gather_tokens, init_linear_and_norm, resample_abs_pos_embed, scatter_tokens, select_tokens)
from .base import (DEFAULT_HEAD_PREFIXES, BaseBackbone, check_bool, check_frozen_stages,
                   check_image_batch, check_img_size, check_indices, check_int, check_number, check_rate,
                   check_vit_arch, freeze,
                   map_head)

# The official DeiT schedule (12 layers): full tokens in layers 0-3, then stages [4-7] and [8-11] keeping half.
OFFICIAL_KEEP_RATIOS = (1., 1., 1., 1.) + (0.5,) * 8
OFFICIAL_TRADEOFFS = (1., 1., 1., 1.) + (0.5,) * 8
OFFICIAL_SELECTION_LAYERS = (4, 8)


class EvoViTBlock(TransformerBlock):
    """Pre-norm ViT block whose attention can also return the CLS row (B, heads, N) in float32."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool = True, drop: float = 0.,
                 attn_drop: float = 0., drop_path_rate: float = 0., norm_eps: float = 1e-6,
                 device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__(dim, mlp_hidden, EvoAttention(dim, num_heads, qkv_bias, attn_drop, drop, **dd),
                         drop, drop_path_rate, norm_eps, **dd)

    def forward(self, x: torch.Tensor, need_cls_attn: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        msa, row = self.attn(self.norm1(x), need_cls_attn)
        return self.forward_mlp(x + self.drop_path1(msa)), row


@register_backbone()
class EvoViT(BaseBackbone):
    """Evo-ViT backbone on DeiT (classification and dense prediction).

    Args:
        arch: ``'t'``/``'s'``/``'b'`` (aliases ``evo-vit-*``, ``deit-*``) or a dict with ``embed_dims,
            num_layers, num_heads, feedforward_channels``.
        img_size: Pre-training image size (position-embedding grid; resampled for other sizes).
        patch_size: Patch size.
        in_channels: Input channels.
        keep_ratios: Per layer, the fraction of patch tokens the layer updates; 1 = all tokens (no pruning).
            ``None``: the official ``[1] * 4 + [0.5] * 8`` (12 layers only).
        tradeoffs: Per layer, the blend factor ``t`` of the global class attention. ``None``: official
            ``[1] * 4 + [0.5] * 8``.
        selection_layers: Layers where the stage-wise path (inference, and training after the switch) ranks
            the tokens and starts a stage; the kept ratio of a stage is its first layer's. ``None``:
            official ``(4, 8)``. Layer-wise training selects at every pruned layer.
        stage_wise: Training path: ``True`` stage-wise, ``False`` layer-wise (the official first phase).
            Usually set by ``EvoViTScheduleHook``; evaluation is always stage-wise.
        out_indices: Layers whose outputs are returned.
        out_type: ``'featmap'`` (B, C, H, W) in spatial order, ``'avg_featmap'`` (B, C): the official
            classification feature ``norm(mean of all patch tokens)``, or ``'raw'`` (B, 1 + N, C) tokens,
            CLS first, patches in spatial order.
        train_cls_token: With ``'avg_featmap'``: in training mode the last output becomes
            ``[pooled, norm_cls(cls_token)]`` for the official second (CLS) head (``EvoViTClsHead``).
        final_norm: Apply ``norm`` to the last layer's output (to the pooled vector for ``'avg_featmap'``,
            to every token otherwise).
        qkv_bias: Bias in the qkv projection.
        norm_eps: LayerNorm epsilon (1e-6 in DeiT).
        drop_rate / attn_drop_rate / drop_path_rate: Regularisation (linear drop-path schedule).
        interpolate_mode: Position-embedding resampling mode.
        frozen_stages: Freeze the embeddings and the first ``frozen_stages`` layers (-1: none).
        with_cp: Gradient (activation) checkpointing in training: each layer's block runs under
            ``torch.utils.checkpoint`` (``layers/grad_checkpoint.py``) on the tokens it updates; the token
            selection, write-back and the global class attention stay outside (the CLS row is an output of the
            checkpointed call). Same outputs and gradients, less memory.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads official Evo-ViT, timm/DeiT,
            mmpretrain or mmevit checkpoints.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny', 'evo-vit-t', 'deit-t'],
                        dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768)),
        **dict.fromkeys(['s', 'small', 'evo-vit-s', 'deit-s'],
                        dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
        **dict.fromkeys(['b', 'base', 'evo-vit-b', 'deit-b'],
                        dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
    }
    essential_keys = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
    num_extra_tokens = 1
    OUT_TYPES = ('featmap', 'avg_featmap', 'raw')
    head_prefixes = DEFAULT_HEAD_PREFIXES + ('head_cls.',)

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 keep_ratios: Optional[Sequence[float]] = None,
                 tradeoffs: Optional[Sequence[float]] = None,
                 selection_layers: Optional[Sequence[int]] = None,
                 stage_wise: bool = True,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 train_cls_token: bool = False,
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
        self.pretrain_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)

        self.keep_ratios = _per_layer(keep_ratios, OFFICIAL_KEEP_RATIOS, depth, 'keep_ratios', (0., 1.))
        self.tradeoffs = _per_layer(tradeoffs, OFFICIAL_TRADEOFFS, depth, 'tradeoffs', (0., 1.), low_open=False)
        self.selection_layers = self._resolve_selection_layers(selection_layers)
        self.stage_wise = check_bool(stage_wise, 'stage_wise')

        self.out_indices = check_indices(out_indices, depth)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        if train_cls_token and out_type != 'avg_featmap':
            raise ValueError("train_cls_token=True needs out_type='avg_featmap' (the classification feature)")
        self.out_type = out_type
        self.train_cls_token = check_bool(train_cls_token, 'train_cls_token')
        if interpolate_mode not in ('nearest', 'bilinear', 'bicubic'):
            raise ValueError(f"interpolate_mode must be 'nearest', 'bilinear' or 'bicubic', got {interpolate_mode!r}")
        self.interpolate_mode = interpolate_mode
        self.frozen_stages = check_frozen_stages(frozen_stages, depth, 'layers')
        for name, rate in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                           ('drop_path_rate', drop_path_rate)):
            check_rate(rate, name)
        check_number(norm_eps, 'norm_eps')
        check_bool(final_norm, 'final_norm')
        check_bool(qkv_bias, 'qkv_bias')
        self.with_cp = bool(with_cp)

        dd = dict(device=device, dtype=dtype)
        self.patch_embed = PatchEmbed(in_channels, dims, patch_size, **dd)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims, **dd))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid[0] * self.pretrain_grid[1] + 1, dims, **dd))
        self.drop_after_pos = nn.Dropout(drop_rate)
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            EvoViTBlock(dims, self.arch['num_heads'], self.arch['feedforward_channels'], qkv_bias, drop_rate,
                        attn_drop_rate, dpr[i], norm_eps, **dd) for i in range(depth)])
        self.final_norm = final_norm
        self.norm = nn.LayerNorm(dims, eps=norm_eps, **dd) if final_norm else None
        self.norm_cls = nn.LayerNorm(dims, eps=norm_eps, **dd) if train_cls_token else None

        self._register_load_state_dict_pre_hook(self._prepare_pos_embed)
        if self.pos_embed.device.type != 'meta':
            self.reset_parameters()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _resolve_arch(self, arch: Union[str, dict]) -> dict:
        return check_vit_arch(self.lookup_arch(arch))

    def _resolve_selection_layers(self, layers: Optional[Sequence[int]]) -> Tuple[int, ...]:
        depth = self.num_layers
        pruned = [i for i, r in enumerate(self.keep_ratios) if r < 1]
        if layers is None:
            layers = OFFICIAL_SELECTION_LAYERS if pruned else ()
            if pruned and depth != 12:
                raise ValueError(f'the default selection_layers {OFFICIAL_SELECTION_LAYERS} are the official '
                                 f'12-layer schedule: pass selection_layers for {depth} layers')
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f'selection_layers must be a sequence of ints, got {layers!r}')
        layers = tuple(check_int(i, 'selection_layers entry', minimum=0) for i in layers)
        if list(layers) != sorted(set(layers)):
            raise ValueError(f'selection_layers must be increasing and unique, got {layers}')
        if not pruned:
            if layers:
                raise ValueError('selection_layers given but every keep_ratio is 1 (nothing is pruned)')
            return ()
        if not layers or layers[0] != pruned[0]:
            raise ValueError(f'the first selection layer must be the first pruned layer ({pruned[0]}), got '
                             f'{layers}')
        if layers[0] < 1:
            raise ValueError('layer 0 cannot be pruned: the scores come from the attention of earlier layers')
        if pruned != list(range(pruned[0], depth)):
            raise ValueError(f'keep_ratios: once pruning starts every later layer must be pruned (< 1), got '
                             f'{list(self.keep_ratios)}')
        if layers[-1] >= depth:
            raise ValueError(f'selection_layers {layers} out of range for {depth} layers')
        bounds = list(layers) + [depth]
        for start, end in zip(bounds[:-1], bounds[1:]):
            if len(set(self.keep_ratios[start:end])) != 1:
                raise ValueError(f'keep_ratios must be equal within a stage (layers {start}-{end - 1}), got '
                                 f'{list(self.keep_ratios[start:end])}')
        return layers

    def reset_parameters(self) -> None:
        """timm/DeiT init: trunc-normal(0.02) linears, pos_embed and cls_token; LayerNorm ones/zeros."""
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.trunc_normal_(self.cls_token, std=.02)
        for m in self.modules():
            init_linear_and_norm(m)

    # ------------------------------------------------------------------ training schedule
    def set_evo_schedule(self, stage_wise: Optional[bool] = None, learn_tradeoff: Optional[bool] = None) -> None:
        """Switch the training path: layer-wise (``stage_wise=False``, the official first phase) or
        stage-wise pruning. ``learn_tradeoff`` does not apply to the DeiT variant (fixed trade-offs)."""
        if stage_wise is not None:
            self.stage_wise = bool(stage_wise)

    def selections(self, training: Optional[bool] = None) -> Dict[int, float]:
        """Layer -> keep ratio of the token selections made before that layer, for the current mode."""
        training = self.training if training is None else training
        if training and not self.stage_wise:
            return {i: r for i, r in enumerate(self.keep_ratios) if r < 1}
        return {i: self.keep_ratios[i] for i in self.selection_layers}

    def score_layers(self, selections: Mapping[int, float], last: Optional[int] = None) -> Set[int]:
        """Layers whose CLS attention row is read later (by a selection), walking back from ``last``: a
        layer with ``t = 1`` over all tokens overwrites the scores, so the layers before it are not needed."""
        last = self.num_layers - 1 if last is None else last
        first_pruned = min(selections) if selections else self.num_layers
        need, live = set(), False
        for i in range(last, -1, -1):
            if live:
                need.add(i)
                if self.tradeoffs[i] == 1 and i < first_pruned:
                    live = False
            if i in selections:
                live = True
        return need

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
        print_log(f'EvoViT: resize pos_embed {side}x{side} -> {self.pretrain_grid}',
                  logger=MMLogger.get_current_instance())
        state_dict[name] = resample_abs_pos_embed(ckpt, (side, side), self.pretrain_grid,
                                                  self.num_extra_tokens, self.interpolate_mode)

    def convert_state_dict(self, state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        return convert_evo_vit_state_dict(state_dict, self)

    def convert_head(self, head_state: StateDict, target_shapes: Dict[str, torch.Size]) -> StateDict:
        """Official ``head``/``head_cls`` -> ``EvoViTClsHead`` (``head.fc``/``head.fc_cls``), or a timm/DeiT
        ``head`` -> mmpretrain's ``LinearClsHead``/``VisionTransformerClsHead``."""
        return map_head(head_state, target_shapes, (('head.', ('head.fc.', 'head.layers.head.')),
                                                    ('head_cls.', ('head.fc_cls.',))))

    def no_weight_decay(self) -> set:
        return {'pos_embed', 'cls_token'}

    # ------------------------------------------------------------------ training-time behaviour
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        if self.frozen_stages > self.num_layers:
            raise ValueError(f'frozen_stages {self.frozen_stages} > num_layers {self.num_layers}')
        frozen = [self.patch_embed, self.drop_after_pos, self.pos_embed, self.cls_token,
                  *self.blocks[:self.frozen_stages]]
        if self.frozen_stages == self.num_layers:
            frozen += [self.norm, self.norm_cls]
        freeze(frozen)

    def train(self, mode: bool = True) -> 'EvoViT':
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer id for layer-wise lr decay: embeddings 0, block i -> i + 1, the rest last."""
        num_layers = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed'):
            return 0, num_layers
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers

    def unused_parameters(self, training: Optional[bool] = None) -> Set[str]:
        """Names of the parameters that by design get no gradient in this mode: layers after the last
        ``out_indices`` entry (not run), ``norm`` when the last layer is not an output, ``norm_cls`` outside
        training (the CLS head is training-only)."""
        training = self.training if training is None else training
        last = self.out_indices[-1]
        unused = [f'blocks.{i}.' for i in range(last + 1, self.num_layers)]
        if last != self.num_layers - 1:
            unused.append('norm.')
        if not training or last != self.num_layers - 1:
            unused.append('norm_cls.')
        return {n for n, _ in self.named_parameters() if n.startswith(tuple(unused))}

    # ------------------------------------------------------------------ forward
    def _pos_embed(self, hw_shape: Tuple[int, int]) -> torch.Tensor:
        return resample_abs_pos_embed(self.pos_embed, self.pretrain_grid, hw_shape, self.num_extra_tokens,
                                      self.interpolate_mode)

    def forward(self, x: torch.Tensor) -> Tuple:
        check_image_batch(x, self.in_channels, self.pos_embed.dtype)
        B = x.shape[0]
        x, hw = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = self.drop_after_pos(x + self._pos_embed(hw))
        num_patches = hw[0] * hw[1]

        last = self.out_indices[-1]
        selections = self.selections()
        need_scores = self.score_layers(selections, last)
        tokens = x                            # all tokens, spatial order; placeholders hold their last value
        cur = x                               # the tokens the layers update: all, or CLS + kept
        keep: Optional[torch.Tensor] = None   # (B, K) spatial indices of the kept patches
        scores: Optional[torch.Tensor] = None  # (B, N) global class attention, float32, spatial order
        outs = []
        for i in range(last + 1):
            if i in selections:
                tokens = cur if keep is None else _write_back(tokens, cur, keep)
                keep = select_tokens(scores, int(num_patches * selections[i]))
                cur = torch.cat([tokens[:, :1], gather_tokens(tokens[:, 1:], keep)], dim=1)
            cur, row = checkpoint_call(self.blocks[i], cur, need_cls_attn=i in need_scores,
                                       enabled=self.with_cp and self.training)
            if row is not None:  # DeiT: the CLS row summed over heads; it only ranks tokens (no gradient)
                scores = blend_scores(scores, row[:, :, 1:].sum(dim=1).detach(), self.tradeoffs[i], keep)
            if i in self.out_indices:
                full = cur if keep is None else _write_back(tokens, cur, keep)
                outs.append(self._format_output(full, hw, i == self.num_layers - 1))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int], is_last: bool):
        norm = self.norm if is_last else None
        if self.out_type == 'avg_featmap':
            pooled = x[:, 1:].mean(dim=1)
            pooled = norm(pooled) if norm is not None else pooled
            if self.training and self.norm_cls is not None and is_last:
                return [pooled, self.norm_cls(x[:, 0])]
            return pooled
        x = norm(x) if norm is not None else x
        if self.out_type == 'raw':
            return x
        B, _, C = x.shape
        return x[:, 1:].reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2).contiguous()


def _write_back(tokens: torch.Tensor, cur: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """[updated CLS, all patches with the kept ones replaced by their updated values] in spatial order."""
    return torch.cat([cur[:, :1], scatter_tokens(tokens[:, 1:], keep, cur[:, 1:])], dim=1)


def _per_layer(values: Optional[Sequence[float]], official: Sequence[float], depth: int, name: str,
               bounds: Tuple[float, float], low_open: bool = True) -> Tuple[float, ...]:
    if values is None:
        if depth != len(official):
            raise ValueError(f'the default {name} are the official {len(official)}-layer schedule: pass {name} '
                             f'for {depth} layers')
        return tuple(float(v) for v in official)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != depth:
        raise ValueError(f'{name} must be a sequence of {depth} numbers (one per layer), got {values!r}')
    lo, hi = bounds
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (lo < v <= hi if low_open else
                                                                           lo <= v <= hi):
            raise ValueError(f'{name} entries must lie in {"(" if low_open else "["}{lo}, {hi}], got {v!r}')
    return tuple(float(v) for v in values)


# ---------------------------------------------------------------------- checkpoint conversion
def detect_format(state_dict: StateDict) -> str:
    """``'official'`` Evo-ViT (``qks.*``/``vs.*``), ``'mmpretrain'`` ViT/DeiT (``layers.*``), or ``'timm'``
    (``blocks.<i>.attn.qkv``: timm/DeiT and mmevit's own keys)."""
    keys = list(state_dict)
    if any(k.startswith(('qks.', 'vs.', 'norms.', 'projs.')) for k in keys):
        return 'official'
    if any(k.startswith('layers.') for k in keys):
        return 'mmpretrain'
    if any(k.startswith('blocks.') for k in keys):
        return 'timm'
    raise KeyError(f'unrecognised Evo-ViT/ViT checkpoint: no qks.*, blocks.* or layers.* keys (first keys: '
                   f'{keys[:6]})')


def convert_official_evo_vit(state_dict: StateDict) -> StateDict:
    """Official ``EvoVisionTransformer`` keys -> timm/mmevit keys: ``norms.i`` -> ``blocks.i.norm1``,
    ``cat(qks.i.qk, vs.i.v)`` -> ``blocks.i.attn.qkv``, ``projs.i`` -> ``blocks.i.attn.proj``."""
    out: StateDict = {}
    for k, v in state_dict.items():
        head, _, rest = k.partition('.')
        if head == 'norms':
            i, param = rest.split('.', 1)
            out[f'blocks.{i}.norm1.{param}'] = v
        elif head == 'projs':
            i, param = rest.split('.', 1)
            out[f'blocks.{i}.attn.proj.{param}'] = v
        elif head == 'qks':
            i, param = rest.split('.', 1)
            if not param.startswith('qk.'):
                raise KeyError(f'unexpected official key {k}')
            v_key = f'vs.{i}.v.{param[3:]}'
            if v_key not in state_dict:
                raise KeyError(f'official checkpoint has {k} but no {v_key}')
            out[f'blocks.{i}.attn.qkv.{param[3:]}'] = torch.cat([v, state_dict[v_key]], dim=0)
        elif head == 'vs':
            continue  # merged into qkv above
        else:
            out[k] = v
    return out


def convert_evo_vit_state_dict(source: StateDict, model: EvoViT) -> Tuple[StateDict, List[str]]:
    """Any supported checkpoint (official Evo-ViT, timm/DeiT incl. distilled, mmpretrain/mmseg ViT, mmevit)
    -> ``model``'s keys. A checkpoint without ``norm_cls`` (a plain DeiT) gives ``norm_cls`` its ``norm``
    (DeiT's final norm was applied to the CLS token). ``pos_embed`` is resized to the model's grid."""
    from .skipat_vit import convert_mmpretrain_vit  # the mmpretrain/mmseg ViT key renames, shared
    fmt = detect_format(source)
    if fmt == 'official':
        state = convert_official_evo_vit(source)
    elif fmt == 'mmpretrain':
        state = convert_mmpretrain_vit(source)
    else:
        state = dict(source)
    if 'dist_token' in state:  # distilled DeiT: drop the distillation token and its position row
        pos = state.get('pos_embed')
        if pos is not None and math.isqrt(pos.shape[1] - 2) ** 2 == pos.shape[1] - 2:
            state['pos_embed'] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
        del state['dist_token']
    if model.norm_cls is None:
        state = {k: v for k, v in state.items() if not k.startswith('norm_cls.')}
    elif not any(k.startswith('norm_cls.') for k in state) and 'norm.weight' in state:
        state.update({'norm_cls.' + k[len('norm.'):]: v.clone() for k, v in state.items() if k.startswith('norm.')})
    if model.norm is None:
        state = {k: v for k, v in state.items() if not k.startswith('norm.')}
    state = {k: v for k, v in state.items() if not k.startswith('head_cls.')}
    # Renaming keeps tensor objects: a source tensor absent from the result was left out on purpose
    # (the official qk/v halves are not: they were concatenated into qkv).
    kept = {id(v) for v in state.values()}
    dropped = [k for k, v in source.items() if id(v) not in kept and not k.startswith(('qks.', 'vs.'))]
    model._prepare_pos_embed(state, '')
    return state, dropped


# ---------------------------------------------------------------------- official model
_OFFICIAL_KNOWN = {'img_size', 'patch_size', 'in_chans', 'num_classes', 'embed_dim', 'depth', 'num_heads',
                   'mlp_ratio', 'qkv_bias', 'qk_scale', 'representation_size', 'drop_rate', 'attn_drop_rate',
                   'drop_path_rate', 'hybrid_backbone', 'norm_layer', 'momentum', 'tradeoff', 'prune_ratio',
                   'prunecls'}


@register_official('evo_deit')
def evo_deit_from_official(arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """``EvoVisionTransformer(**arch)`` in eval mode (stage-wise pruning) -> mmpretrain
    ``ImageClassifier(EvoViT(out_type='avg_featmap'), EvoViTClsHead)``."""
    check_kwargs(arch, _OFFICIAL_KNOWN, 'EvoVisionTransformer')
    for key in ('qk_scale', 'representation_size', 'hybrid_backbone'):
        if arch.get(key) is not None:
            raise ValueError(f'{key}={arch[key]!r} is not supported by EvoViT')
    if arch.get('prunecls'):
        raise ValueError('prunecls=True is not supported by EvoViT')
    depth = int(arch.get('depth', 12))
    if depth != 12:
        raise ValueError(f'depth={depth}: the official EvoVisionTransformer always builds 12 layers')
    num_classes = int(arch.get('num_classes', 1000))
    if num_classes < 1:
        raise ValueError('num_classes must be >= 1 (use the EvoViT backbone directly for features)')
    prune = arch.get('prune_ratio')
    tradeoff = arch.get('tradeoff')
    if prune is None or tradeoff is None:
        raise ValueError('the official model needs explicit prune_ratio and tradeoff lists (the registered '
                         'variants pass [1]*4 + [0.5]*8)')
    embed_dim = int(arch.get('embed_dim', 768))
    backbone = dict(
        type='EvoViT',
        arch=dict(embed_dims=embed_dim, num_layers=12, num_heads=int(arch.get('num_heads', 12)),
                  feedforward_channels=int(embed_dim * float(arch.get('mlp_ratio', 4.)))),
        img_size=arch.get('img_size', 224), patch_size=int(arch.get('patch_size', 16)),
        in_channels=int(arch.get('in_chans', 3)), keep_ratios=list(prune), tradeoffs=list(tradeoff),
        selection_layers=OFFICIAL_SELECTION_LAYERS, qkv_bias=bool(arch.get('qkv_bias', True)),
        norm_eps=norm_eps(arch.get('norm_layer'), 1e-6), out_type='avg_featmap', train_cls_token=True)
    head = dict(type='EvoViTClsHead', num_classes=num_classes, in_channels=embed_dim)
    return build_classifier(backbone, head, state_dict)
