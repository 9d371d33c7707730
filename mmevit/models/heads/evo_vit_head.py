"""Evo-ViT's classification head for mmpretrain (moved beside the other toolbox heads: it subclasses
mmpretrain's ``ClsHead``, so it exists only where mmpretrain is installed)."""
from typing import Optional, Sequence, Set, Tuple, Union

import torch
from mmpretrain.models.heads import ClsHead
from torch import nn

from ...registry import MODELS, export_to
from ..backbones.base import check_int


@export_to('mmpretrain')
@MODELS.register_module()
class EvoViTClsHead(ClsHead):
    """Evo-ViT's two linear classifiers: ``fc`` on the pooled patch tokens (the inference output) and
    ``fc_cls`` on the CLS token (training only; the official loss is ``0.5 CE(fc) + 0.5 CE(fc_cls)``).

    Takes the backbone's last output: the pooled feature, or ``[pooled, cls]`` from an ``EvoViT`` with
    ``out_type='avg_featmap', train_cls_token=True`` in training mode.

    Args:
        num_classes: Number of classes.
        in_channels: Feature width.
        cls_loss_weight: Weight of the CLS head's loss (the pooled head gets ``1 - cls_loss_weight``).
    """

    def __init__(self, num_classes: int, in_channels: int, cls_loss_weight: float = 0.5,
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear', std=.02), **kwargs) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        self.num_classes = check_int(num_classes, 'num_classes')
        self.in_channels = check_int(in_channels, 'in_channels')
        if not 0 <= cls_loss_weight <= 1:
            raise ValueError(f'cls_loss_weight must lie in [0, 1], got {cls_loss_weight}')
        self.cls_loss_weight = cls_loss_weight
        self.fc = nn.Linear(in_channels, num_classes)
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Sequence) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        feat = feats[-1]
        if isinstance(feat, (list, tuple)):
            return feat[0], feat[1]
        return feat, None

    def forward(self, feats: Sequence) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Logits of the pooled head; in training with a CLS feature, ``(logits, cls_logits)``."""
        pooled, cls = self.pre_logits(feats)
        if self.training and cls is not None:
            return self.fc(pooled), self.fc_cls(cls)
        return self.fc(pooled)

    def unused_parameters(self, training: Optional[bool] = None) -> Set[str]:
        """``fc_cls`` outside training (it is fed the CLS feature only then)."""
        training = self.training if training is None else training
        return set() if training else {'fc_cls.weight', 'fc_cls.bias'}

    def loss(self, feats: Sequence, data_samples, **kwargs) -> dict:
        pooled, cls = self.pre_logits(feats)
        if cls is None:
            raise ValueError('EvoViTClsHead.loss needs the CLS feature: build the backbone with '
                             "out_type='avg_featmap', train_cls_token=True")
        w = self.cls_loss_weight
        losses = self._get_loss(self.fc(pooled), data_samples, **kwargs)
        losses['loss'] = losses['loss'] * (1 - w)
        losses['loss_cls'] = self._get_loss(self.fc_cls(cls), data_samples, **kwargs)['loss'] * w
        return losses
