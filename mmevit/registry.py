"""mmevit's registry, and registration of our classes into every installed OpenMMLab toolbox.

``MODELS`` is a child of mmengine's root model registry (scope ``mmevit``). After ``import mmevit``, each
class registered here is also registered into the ``MODELS`` registry of mmseg, mmdet and mmpretrain when
(and only when) that toolbox is installed, so their configs can say ``type='SkipAtViT'`` with no prefix in
their own default scope. A toolbox that is missing is skipped silently; one that is installed but broken
raises, naming it.
"""
import importlib
import importlib.util
from typing import Dict, List

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmevit', locations=['mmevit.models'])

TOOLBOXES = ('mmseg', 'mmdet', 'mmpretrain')


def installed_toolboxes() -> List[str]:
    return [name for name in TOOLBOXES if importlib.util.find_spec(name) is not None]


def register_into_toolboxes() -> Dict[str, List[str]]:
    """Register every class of ``MODELS`` into each installed toolbox's ``MODELS``; returns what was done."""
    done: Dict[str, List[str]] = {}
    for name in installed_toolboxes():
        try:
            toolbox_models = importlib.import_module(f'{name}.registry').MODELS
        except Exception as e:  # installed but unusable: say which, do not hide it
            raise ImportError(f'mmevit: {name} is installed but {name}.registry failed to import: {e}') from e
        for cls_name, cls in MODELS.module_dict.items():
            existing = toolbox_models.module_dict.get(cls_name)
            if existing is not None and existing is not cls:
                raise KeyError(f'mmevit: {name} already registers a different {cls_name!r}')
            toolbox_models.register_module(name=cls_name, module=cls, force=True)
        done[name] = sorted(MODELS.module_dict)
    return done
