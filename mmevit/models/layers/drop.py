"""Stochastic depth: torchvision's per-sample implementation and the linear drop-path schedule."""
from typing import List

from torch import nn
from torchvision.ops import StochasticDepth


def drop_path(rate: float) -> nn.Module:
    """Per-sample residual-branch dropout, or Identity when ``rate`` is 0."""
    return StochasticDepth(rate, mode='row') if rate > 0 else nn.Identity()


def drop_path_rates(rate: float, depth: int) -> List[float]:
    """The usual linear schedule ``linspace(0, rate, depth)``."""
    return [rate * i / (depth - 1) if depth > 1 else 0. for i in range(depth)]
