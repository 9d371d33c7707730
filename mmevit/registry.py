"""mmevit's registries, and the export of our backbones into every installed OpenMMLab toolbox.

mmevit has its own child registries (scope ``mmevit``), the way mmpretrain/mmseg have theirs: ``MODELS`` for
backbones, denoisers and their parts, and ``DATASETS``, ``TRANSFORMS``, ``METRICS``, ``HOOKS``,
``DATA_SAMPLERS`` and ``VISUALIZERS`` for the restoration stack. Configs that build from them set
``default_scope='mmevit'``.

What a toolbox config may name without a prefix is an explicit choice per class, made where the class is
defined: ``@register_backbone()`` registers into ``MODELS`` *and* exports the class to mmseg, mmdet and
mmpretrain (when installed) so that their configs can say ``type='SkipAtViT'``; ``@MODELS.register_module()``
alone keeps a class in mmevit's scope (denoisers, losses: a restoration ``L1Loss`` must not collide with
mmdet's); ``@export_to(*toolboxes, registry='HOOKS')`` (or ``'TRANSFORMS'``, ``'DATASETS'``) exports a hook,
transform or dataset the same way (``RNGStateHook`` to all three, ``LoadSegAnnotations`` to mmseg,
``CheckedCocoDataset`` to mmdet). ``register_into_toolboxes()`` (run at ``import mmevit``, after every
sub-package is imported) performs the exports; a toolbox that is missing is skipped, one that is installed but
broken raises, naming it.
"""
import importlib
import importlib.util
from typing import Callable, Dict, List, Sequence, Type

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmevit', locations=['mmevit.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmevit', locations=['mmevit.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmevit', locations=['mmevit.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='mmevit',
                         locations=['mmevit.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmevit', locations=['mmevit.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmevit', locations=['mmevit.engine'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope='mmevit',
                       locations=['mmevit.visualization'])

TOOLBOXES = ('mmseg', 'mmdet', 'mmpretrain')
# Backbones go into all three toolboxes' model registries.
BACKBONE_TOOLBOXES = TOOLBOXES

# toolbox -> names of the classes of ``MODELS`` it receives; filled by ``export_to``.
EXPORTS: Dict[str, List[str]] = {name: [] for name in TOOLBOXES}
# The same for the other registries a class may be exported from (same attribute name in mmevit and in each
# toolbox's ``<toolbox>.registry``): registry name -> toolbox -> class names. ``EXPORTS`` is the ``MODELS`` entry.
EXPORTABLE = {'MODELS': MODELS, 'HOOKS': HOOKS, 'TRANSFORMS': TRANSFORMS, 'DATASETS': DATASETS}
EXPORTS_BY_REGISTRY: Dict[str, Dict[str, List[str]]] = {
    registry: (EXPORTS if registry == 'MODELS' else {name: [] for name in TOOLBOXES}) for registry in EXPORTABLE}


def export_to(*toolboxes: str, registry: str = 'MODELS') -> Callable[[Type], Type]:
    """Class decorator: export a class registered in mmevit's ``registry`` (``'MODELS'``, ``'HOOKS'``,
    ``'TRANSFORMS'`` or ``'DATASETS'``) to the same registry of the given toolboxes, so that their configs name
    it without the ``mmevit.`` prefix."""
    unknown = set(toolboxes) - set(TOOLBOXES)
    if unknown:
        raise ValueError(f'export_to: unknown toolboxes {sorted(unknown)}; known: {TOOLBOXES}')
    if registry not in EXPORTABLE:
        raise ValueError(f'export_to: unknown registry {registry!r}; known: {sorted(EXPORTABLE)}')
    table = EXPORTS_BY_REGISTRY[registry]

    def decorate(cls: Type) -> Type:
        for name in toolboxes:
            if cls.__name__ not in table[name]:
                table[name].append(cls.__name__)
        return cls

    return decorate


def register_backbone(toolboxes: Sequence[str] = BACKBONE_TOOLBOXES) -> Callable[[Type], Type]:
    """``@register_backbone()``: register into mmevit's ``MODELS`` and export to mmseg/mmdet/mmpretrain."""

    def decorate(cls: Type) -> Type:
        MODELS.register_module(module=cls)
        return export_to(*toolboxes)(cls)

    return decorate


def installed_toolboxes() -> List[str]:
    return [name for name in TOOLBOXES if importlib.util.find_spec(name) is not None]


def register_into_toolboxes() -> Dict[str, List[str]]:
    """Register each exported class into its installed toolboxes' registries; returns, per toolbox, the names
    exported to its ``MODELS`` (the other registries' exports are in ``EXPORTS_BY_REGISTRY``)."""
    done: Dict[str, List[str]] = {}
    for name in installed_toolboxes():
        try:
            toolbox_registry = importlib.import_module(f'{name}.registry')
        except Exception as e:  # installed but unusable: say which, do not hide it
            raise ImportError(f'mmevit: {name} is installed but {name}.registry failed to import: {e}') from e
        for registry, own in EXPORTABLE.items():
            target = getattr(toolbox_registry, registry)
            for cls_name in EXPORTS_BY_REGISTRY[registry][name]:
                cls = own.get(cls_name)
                existing = target.module_dict.get(cls_name)
                if existing is not None and existing is not cls:
                    raise KeyError(f'mmevit: {name} already registers a different {cls_name!r} in {registry}')
                target.register_module(name=cls_name, module=cls, force=True)
        done[name] = sorted(EXPORTS[name])
    return done
