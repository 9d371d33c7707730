"""mmevit: efficient vision transformers for OpenMMLab 2.x dense prediction.

``import mmevit`` applies the torch 2.14 / numpy 2 compatibility shims (``mmevit.compat``), registers our
models into mmevit's registries and exports the backbones into each installed toolbox (mmseg, mmdet,
mmpretrain), and exposes ``from_official`` for parity with the official implementations. The families that
exist are those in ``mmevit.models.backbones`` (and ``mmevit.models.denoisers``), listed by
``sorted(mmevit.official.OFFICIAL_BUILDERS)``.
"""
from . import compat
from .version import __version__

compat.apply()

from . import engine, models  # noqa: E402,F401  (registers the classes)
from . import datasets, evaluation  # noqa: E402,F401  (datasets/transforms, PSNR/SSIM metrics)
from .official import from_official  # noqa: E402
from .registry import MODELS, register_into_toolboxes  # noqa: E402

REGISTERED_INTO = register_into_toolboxes()
from .model_zoo import register_model_index  # noqa: E402

MODEL_ZOO = register_model_index()  # our classifiers' names in mmpretrain's ModelHub (get_model, inferencers)


def _enable_config_scope() -> None:
    """Let configs inherit ``mmevit::<folder>/<file>.py`` (mmengine resolves only packages it lists)."""
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault('mmevit', 'mmevit')


_enable_config_scope()

__all__ = ['__version__', 'from_official', 'MODELS', 'REGISTERED_INTO']
