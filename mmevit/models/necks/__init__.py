"""Necks, one file each; every module of this package is imported (registering its classes)."""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')

from .simple_fpn import LayerNorm2d, SimpleFeaturePyramid  # noqa: E402

__all__ = ['LayerNorm2d', 'SimpleFeaturePyramid']
