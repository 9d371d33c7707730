"""ViTDet's simple feature pyramid: a detector's multi-scale maps from a plain ViT's single stride-16 map.

Paper: Li, Mao, Girshick, He, "Exploring Plain Vision Transformer Backbones for Object Detection", ECCV 2022
(arXiv 2203.16527), Sec. 3 and Fig. 2c: no FPN top-down path and no hierarchical backbone; the last block's
map is upsampled by stride-2 deconvolutions (x4: deconv, LayerNorm, GELU, deconv; x2: one deconv), kept
(x1) or max-pooled (x0.5), and each scale gets a 1x1 then a 3x3 convolution, both followed by a channel
LayerNorm. A further level for the RPN is the last one subsampled by 2 (detectron2's ``LastLevelMaxPool``,
the same as mmdet ``FPN``'s ``add_extra_convs=False``).

Why a neck of our own: mmdet's pip package ships no ViTDet neck (``SimpleFPN`` lives in mmdet's source-only
``projects/ViTDet``, which we neither vendor nor want to collide with: this class is registered as
``SimpleFeaturePyramid``), and mmseg's ``Feature2Pyramid`` + mmdet ``FPN`` is a different model (BatchNorm in
the deconvolution path, four backbone maps in, an FPN top-down path after it) that only works in an mmdet
config through the ``mmseg.`` scope prefix. The convolutions are mmcv ``ConvModule``s; ``LN2d`` (LayerNorm
over channels, ViTDet's "LN") is provided here because mmcv's norm registry has no channel LayerNorm.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from ...registry import MODELS, export_to


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (detectron2's ``LayerNorm`` for convolutional features).

    A subclass of ``nn.LayerNorm`` so that optimizer constructors treat it as a norm (``norm_decay_mult``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


# Norm types resolved here before mmcv's registry (which has no channel LayerNorm).
_LOCAL_NORMS = {'LN2d': LayerNorm2d}


def _norm_cfg(cfg: Optional[dict]) -> Optional[dict]:
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'norm_cfg must be None or a dict with a "type", got {cfg!r}')
    return dict(cfg, type=_LOCAL_NORMS.get(cfg['type'], cfg['type']))


@export_to('mmdet')
@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Multi-scale maps from one backbone map (ViTDet).

    Args:
        in_channels: Channels of the backbone map (``embed_dims`` of the ViT).
        out_channels: Channels of every output (256 for mmdet's Mask R-CNN heads).
        scale_factors: Resize factor of each pyramid level relative to the input map, decreasing powers of
            two: ``(4, 2, 1, 0.5)`` turns a stride-16 map into strides 4, 8, 16, 32. An upsampling by
            ``2**k`` is ``k`` stride-2 deconvolutions (LayerNorm + GELU between them) that halve the channels
            each time; a downsampling by ``2**k`` is a ``2**k`` max pooling (which floors map sides that are
            not multiples of ``2**k``: mmdet pads images to multiples of 32, so a stride-16 map has even sides).
        num_outs: Number of outputs; each beyond ``len(scale_factors)`` is the previous one subsampled by 2
            (max pooling with kernel 1), e.g. 5 gives strides 4..64 for mmdet's RPN.
        in_index: Which map of the backbone's output tuple to use (the last by default).
        norm_cfg: Norm after each 1x1/3x3 convolution and between deconvolutions; ``LN2d`` (default,
            ViTDet's) or any mmcv norm (``BN``, ``SyncBN``, ``GN``...); None for none.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5,
                 in_index: int = -1,
                 norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels), ('out_channels', out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TypeError(f'{name} must be a positive int, got {value!r}')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self.log2_scales = tuple(self._log2(s) for s in self.scale_factors)
        if not self.scale_factors or list(self.log2_scales) != sorted(set(self.log2_scales), reverse=True):
            raise ValueError(f'scale_factors must be non-empty and strictly decreasing, got {scale_factors}')
        if not isinstance(num_outs, int) or num_outs < len(self.scale_factors):
            raise ValueError(f'num_outs ({num_outs!r}) must be an int >= len(scale_factors) '
                             f'({len(self.scale_factors)})')
        self.num_outs = num_outs
        self.in_index = in_index
        norm = _norm_cfg(norm_cfg)

        self.resamplers = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for k in self.log2_scales:
            layers, dim = [], in_channels
            for step in range(k):  # k stride-2 deconvolutions
                if dim % 2:
                    raise ValueError(f'scale factor {2 ** k:g} halves the channels {k} times: '
                                     f'in_channels={in_channels} is not divisible by {2 ** k}')
                if step > 0:
                    layers += [self._norm(norm, dim), nn.GELU()]
                layers.append(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
                dim //= 2
            if k < 0:
                layers.append(nn.MaxPool2d(kernel_size=2 ** -k, stride=2 ** -k))
            self.resamplers.append(nn.Sequential(*layers))
            self.lateral_convs.append(ConvModule(dim, out_channels, 1, norm_cfg=norm, act_cfg=None))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm,
                                             act_cfg=None))

    @staticmethod
    def _log2(scale: float) -> int:
        k = round(math.log2(scale)) if scale > 0 else None
        if k is None or 2.0 ** k != scale:
            raise ValueError(f'scale factors must be powers of two (4, 2, 1, 0.5, ...), got {scale}')
        return k

    @staticmethod
    def _norm(norm: Optional[dict], channels: int) -> nn.Module:
        if norm is None:
            return nn.Identity()
        return build_norm_layer(norm, channels)[1]

    def out_strides(self, in_stride: int = 16) -> Tuple[int, ...]:
        """Strides of the outputs for an input map of stride ``in_stride`` (16 for a ViT with 16 px patches)."""
        strides = [in_stride / s for s in self.scale_factors]
        strides += [strides[-1] * 2 ** (i + 1) for i in range(self.num_outs - len(strides))]
        return tuple(int(s) if float(s).is_integer() else s for s in strides)

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if isinstance(inputs, torch.Tensor) or not isinstance(inputs, Sequence) or not inputs:
            raise TypeError('SimpleFeaturePyramid expects the backbone\'s tuple of maps, got '
                            f'{type(inputs).__name__}')
        x = inputs[self.in_index]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'SimpleFeaturePyramid expects an (N, {self.in_channels}, H, W) map at index '
                             f'{self.in_index}, got shape {tuple(x.shape)}')
        outs = [fpn(lateral(resample(x)))
                for resample, lateral, fpn in zip(self.resamplers, self.lateral_convs, self.fpn_convs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
