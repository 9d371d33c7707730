"""Datasets, transforms and the demo-data makers (``demo_data``: one maker per task, e.g. ``demo_ade`` for
'ade20k'). Every module of this package is imported here, which registers its classes and makers: a new
dataset or demo task adds a file and edits no list."""
import importlib
import pkgutil

from .demo_data import DEMO_DATA, demo_tasks, make_demo_data, register_demo_data

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')

__all__ = ['DEMO_DATA', 'demo_tasks', 'make_demo_data', 'register_demo_data']
