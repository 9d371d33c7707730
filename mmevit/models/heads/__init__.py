"""Toolbox heads (mmpretrain ``ClsHead`` subclasses). Every module is imported when mmpretrain is installed;
without it, ``import mmevit`` still works and these heads are simply absent."""
import importlib
import importlib.util
import pkgutil

if importlib.util.find_spec('mmpretrain') is not None:
    for _info in pkgutil.iter_modules(__path__):
        importlib.import_module(f'{__name__}.{_info.name}')
