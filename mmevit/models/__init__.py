"""Models: ``layers`` (framework-free blocks), ``backbones``, and further packages such as ``denoisers``
(one file per family). Every sub-package is imported, and each imports all of its modules, which registers
their classes and official builders: a new family adds files and edits no list."""
import importlib
import pkgutil

from .backbones import *  # noqa: F401,F403

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')
