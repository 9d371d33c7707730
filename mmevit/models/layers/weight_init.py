"""timm's ViT initialisation of one module, which every family here uses for its linears and LayerNorms."""
from torch import nn


def init_linear_and_norm(module: nn.Module) -> bool:
    """A ``Linear``: weight trunc-normal(std 0.02), bias zero; a ``LayerNorm``: weight 1, bias 0. Returns whether
    ``module`` was one of these (the caller initialises the rest)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        return True
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
        return True
    return False
