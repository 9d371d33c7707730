"""Pixel losses for restoration (registered in mmevit's ``MODELS`` only, so they do not collide with the
toolboxes' losses of the same name)."""
import torch
from torch import nn

from ...registry import MODELS

REDUCTIONS = ('mean', 'sum', 'none')


@MODELS.register_module()
class CharbonnierLoss(nn.Module):
    """Charbonnier loss ``sqrt((pred - target)² + eps²)``, a smooth L1 (Charbonnier et al., ICIP 1994).

    Args:
        loss_weight: Multiplier of the loss.
        eps: The Uformer recipe's epsilon, 1e-3 (``CharbonnierLoss(eps=1e-3)`` in its ``losses.py``, inherited
            from MPRNet), *squared* inside the root. (mmagic's ``CharbonnierLoss`` adds its ``eps`` unsquared,
            default 1e-12; ``eps=1e-3`` here equals mmagic's ``eps=1e-6``.)
        reduction: ``'mean'`` (the recipe), ``'sum'`` or ``'none'``.
    """

    def __init__(self, loss_weight: float = 1., eps: float = 1e-3, reduction: str = 'mean') -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
        if not eps > 0:
            raise ValueError(f'eps must be > 0 (it keeps the gradient finite at zero error), got {eps!r}')
        self.loss_weight, self.eps, self.reduction = float(loss_weight), float(eps), reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f'CharbonnierLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ')
        diff = pred - target
        loss = torch.sqrt(diff * diff + self.eps * self.eps)
        if self.reduction == 'mean':
            loss = loss.mean()
        elif self.reduction == 'sum':
            loss = loss.sum()
        return self.loss_weight * loss
