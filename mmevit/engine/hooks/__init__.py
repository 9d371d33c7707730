"""mmengine hooks of mmevit (registered in ``mmevit.registry.HOOKS``, so mmevit-scope configs name them
bare and other toolboxes' configs as ``mmevit.<Name>``). Every module of this package is imported."""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')
