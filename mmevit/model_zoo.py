"""mmevit's model index in mmpretrain's ``ModelHub``: ``mmpretrain.get_model('skipat_t_3rdparty_in1k')`` and
``ImageClassificationInferencer('<name>')`` find our classifiers by name.

``register_model_index()`` (run at ``import mmevit``) registers the metafiles listed in ``model-index.yml`` whose
models are all image classifiers (``Task`` in the collection/model ``Metadata`` or in ``Results``); segmentation
and detection metafiles are left out, since mmpretrain could not build their models.

Converted third-party models (``Converted From`` without ``Weights``, e.g. the official SkipAt ``.t7`` files)
have no downloadable checkpoint that loads into the config's model. mmpretrain's ``get_model(name,
pretrained=True)`` would only warn and return an untrained model (and ``ImageClassificationInferencer(name)``
defaults to ``pretrained=True``), so for them ``pretrained=True`` raises ``WeightsNeedConversion`` with the
conversion command; ``pretrained=False`` or ``pretrained='<converted file>'`` work as usual.
"""
import functools
import importlib.util
import os.path as osp
import warnings
from typing import Dict, List, Optional, Set

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
CLASSIFICATION = 'Image Classification'


class WeightsNeedConversion(RuntimeError):
    """A model-zoo name was asked for weights that only exist as an unconverted third-party checkpoint."""


@functools.lru_cache(maxsize=None)
def _converted_model_info_class() -> type:
    from modelindex.models.Model import Model

    class ConvertedModelInfo(Model):
        """ModelHub entry of a converted third-party model: asking for its weights explains how to make them."""

        @property
        def weights(self):
            src = self.data['Converted From']
            command = src.get('Command', f'python tools/model_converters/convert.py {src.get("Weights", "SRC")} '
                                         f'{self.name}.pth --config {self.data.get("Config", "CONFIG")}')
            root = osp.dirname(find_model_index() or PACKAGE_DIR)
            raise WeightsNeedConversion(
                f'{self.name} has no downloadable converted checkpoint: the official weights ({src.get("Weights")}) '
                f'need conversion to the keys of its config. In {root} run\n    {command}\nthen pass '
                f'pretrained=\'{self.name}.pth\' (or pretrained=False for an untrained model).')

        @weights.setter
        def weights(self, value):
            self.data['Weights'] = value

    return ConvertedModelInfo


def find_model_index() -> Optional[str]:
    """``model-index.yml`` of the installed package (``mmevit/.mim``) or of a source checkout."""
    for root in (osp.join(PACKAGE_DIR, '.mim'), osp.dirname(PACKAGE_DIR)):
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return osp.join(root, 'model-index.yml')
    return None


def metafile_tasks(metafile: Dict) -> Set[str]:
    """The tasks a metafile's collections and models declare (``Metadata.Task`` or ``Results[].Task``)."""
    tasks = set()
    for item in (metafile.get('Collections') or []) + (metafile.get('Models') or []):
        tasks.add((item.get('Metadata') or {}).get('Task'))
        results = item.get('Results') or []
        for result in [results] if isinstance(results, dict) else results:
            tasks.add(result.get('Task'))
    return tasks - {None}


def register_model_index(model_index: Optional[str] = None) -> List[str]:
    """Register our image-classification models with mmpretrain's ``ModelHub``; return their names.

    Idempotent: metafiles already registered from the same file are skipped. A name that mmpretrain (or another
    plugin) registered from a different file raises ``ValueError`` naming both files.
    """
    if importlib.util.find_spec('mmpretrain') is None:
        return []
    from mmengine.fileio import load
    from mmpretrain.apis import ModelHub

    model_index = model_index or find_model_index()
    if model_index is None:
        warnings.warn(f'mmevit: no model-index.yml in {PACKAGE_DIR}/.mim or the source tree; model names are not '
                      'registered with mmpretrain (reinstall with `pip install -e .`)')
        return []
    root = osp.dirname(osp.abspath(model_index))
    info_class = _converted_model_info_class()
    names = []
    for rel in load(model_index).get('Import') or []:
        metafile = osp.join(root, rel)
        meta = load(metafile)
        if metafile_tasks(meta) != {CLASSIFICATION}:
            continue
        models = meta.get('Models') or []
        fresh = []
        for name in (m['Name'].lower() for m in models):
            if not ModelHub.has(name):
                fresh.append(name)
            elif not osp.samefile(ModelHub._models_dict[name].filepath, metafile):
                raise ValueError(f'model name {name!r} of {metafile} is already registered with mmpretrain from '
                                 f'{ModelHub._models_dict[name].filepath}')
        if fresh:
            if len(fresh) != len(models):
                raise ValueError(f'{metafile} is partly registered with mmpretrain already: {fresh} are not')
            ModelHub.register_model_index(metafile, config_prefix=root)
        for m in models:
            if 'Converted From' in m and not m.get('Weights'):
                # Same data, but get_model(pretrained=True) reading `.weights` now explains instead of warning.
                ModelHub._models_dict[m['Name'].lower()].__class__ = info_class
            names.append(m['Name'].lower())
    return names
