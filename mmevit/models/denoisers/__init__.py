"""Restoration networks and models, one file per family (``uformer.py``), the ``Denoiser`` model that trains
and tests them on mmengine (``denoiser.py``) and its losses (``losses.py``). Every module of this package is
imported here, so a new denoiser registers itself (``@MODELS.register_module()``, ``@register_official``) by
adding its file alone. None of them is exported to mmseg/mmdet/mmpretrain: configs using them set
``default_scope='mmevit'``."""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')
