"""Backbone families, one file each. Every module of this package is imported here, so a new family
registers itself (``@register_backbone()``, ``@register_official(...)``) by adding its file alone."""
import importlib
import pkgutil

from .base import BaseBackbone, check_indices, freeze, tokens_to_nchw

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')

from .skipat_vit import SkipAtViT  # noqa: E402

__all__ = ['BaseBackbone', 'SkipAtViT', 'check_indices', 'freeze', 'tokens_to_nchw']
