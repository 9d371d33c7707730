"""Two-layer token MLP (``fc1 -> act -> drop -> fc2 -> drop``), the ViT feed-forward network."""
from typing import Type

import torch
from torch import nn


class Mlp(nn.Module):
    """Args:
        in_features: Input (and output) width.
        hidden_features: Hidden width.
        act_layer: Activation class (exact GELU by default, as in ViT).
        drop: Dropout after the activation and after ``fc2``.
    """

    def __init__(self, in_features: int, hidden_features: int, act_layer: Type[nn.Module] = nn.GELU,
                 drop: float = 0., device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.fc1 = nn.Linear(in_features, hidden_features, **dd)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features, **dd)
        self.drop = nn.Dropout(drop)

    @property
    def fusable_act(self) -> bool:
        """The activation is exact GELU, which oneDNN can fuse into ``fc1`` (``fused_linear.py``)."""
        return type(self.act) is nn.GELU and self.act.approximate == 'none'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
