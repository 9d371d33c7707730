"""Evo-LeViT's classification heads for mmpretrain (they subclass mmpretrain's ``ClsHead``, so they exist only
where mmpretrain is installed)."""
from typing import Optional, Sequence, Set, Tuple

import torch
from mmpretrain.models.heads import ClsHead

from ...registry import MODELS, export_to
from ..backbones.base import check_int
from ..layers import BNLinear, fuse_bn_modules


@export_to('mmpretrain')
@MODELS.register_module()
class EvoLeViTClsHead(ClsHead):
    """Evo-LeViT's classifiers, each BatchNorm1d + Linear (LeViT's ``BN_Linear``): ``head`` and
    ``head_dist`` on the pooled patch tokens (inference: their mean, or ``head`` alone without
    distillation), ``head_cls`` and ``head_cls_dist`` on the CLS token (training only).

    Training loss (``[pooled, cls]`` from an ``EvoLeViT`` with ``train_cls_token=True``): the official
    ``0.5 * base + 0.5 * distillation`` with ``base = (CE(head) + CE(head_cls)) / 2`` and the distillation
    heads fitted to the labels (teacher-free: the official hard distillation from a RegNetY-160 teacher
    needs the teacher's predictions, which mmpretrain's classifier does not provide).

    Args:
        num_classes: Number of classes.
        in_channels: Feature width.
        distillation: Build ``head_dist``/``head_cls_dist`` (the official models do).
    """

    HEADS = ('head', 'head_dist', 'head_cls', 'head_cls_dist')

    def __init__(self, num_classes: int, in_channels: int, distillation: bool = True,
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear', std=.02), **kwargs) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        self.num_classes = check_int(num_classes, 'num_classes')
        self.in_channels = check_int(in_channels, 'in_channels')
        self.distillation = distillation
        for name in self.HEADS if distillation else ('head', 'head_cls'):
            self.add_module(name, BNLinear(in_channels, num_classes))

    def pre_logits(self, feats: Sequence) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        feat = feats[-1]
        if isinstance(feat, (list, tuple)):
            return feat[0], feat[1]
        return feat, None

    def forward(self, feats: Sequence):
        """Inference logits; in training with a CLS feature, the logits of every head (``HEADS`` order)."""
        pooled, cls = self.pre_logits(feats)
        if self.training and cls is not None:
            scores = (self.head(pooled), self.head_cls(cls))
            if self.distillation:
                scores = (scores[0], self.head_dist(pooled), scores[1], self.head_cls_dist(cls))
            return scores
        if self.distillation:
            return (self.head(pooled) + self.head_dist(pooled)) / 2
        return self.head(pooled)

    def unused_parameters(self, training: Optional[bool] = None) -> Set[str]:
        """The CLS heads outside training (they are fed the CLS feature only then)."""
        training = self.training if training is None else training
        return set() if training else {n for n, _ in self.named_parameters() if n.startswith('head_cls')}

    def loss(self, feats: Sequence, data_samples, **kwargs) -> dict:
        pooled, cls = self.pre_logits(feats)
        if cls is None:
            raise ValueError('EvoLeViTClsHead.loss needs the CLS feature: build the backbone with '
                             "out_type='avg_featmap', train_cls_token=True")
        losses = self._get_loss(self.head(pooled), data_samples, **kwargs)
        base = (losses['loss'] + self._get_loss(self.head_cls(cls), data_samples, **kwargs)['loss']) / 2
        if not self.distillation:
            losses['loss'] = base
            return losses
        dist = (self._get_loss(self.head_dist(pooled), data_samples, **kwargs)['loss']
                + self._get_loss(self.head_cls_dist(cls), data_samples, **kwargs)['loss']) / 2
        losses['loss'] = 0.5 * base
        losses['loss_dist'] = 0.5 * dist
        return losses

    def switch_to_deploy(self) -> None:
        fuse_bn_modules(self)
