"""Layer-wise learning-rate decay for segmentors/detectors whose backbone has ``get_layer_depth``.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *whole* model for ``get_layer_depth``,
which mmseg's ``EncoderDecoder`` and mmdet's detectors do not have (mmseg's own constructors know only
ConvNeXt/BEiT/MAE). This subclass hands it ``model.backbone.get_layer_depth(name, 'backbone.')`` instead;
everything else (decay rule, weight-decay multipliers, custom keys) is mmpretrain's. Only defined when
mmpretrain is installed.
"""
from functools import partial
from typing import Callable, List, Optional

from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

try:
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
except ImportError:  # mmpretrain not installed: the option is simply absent
    LearningRateDecayOptimWrapperConstructor = None

if LearningRateDecayOptimWrapperConstructor is not None:

    @OPTIM_WRAPPER_CONSTRUCTORS.register_module()
    class BackboneLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
        """``lr = base_lr * layer_decay_rate ** (num_layers - 1 - layer_depth)``, depths from the backbone."""

        def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                       get_layer_depth: Optional[Callable] = None, **kwargs) -> None:
            if get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
                backbone = getattr(module, 'backbone', None)
                if hasattr(backbone, 'get_layer_depth'):
                    get_layer_depth = partial(backbone.get_layer_depth, prefix='backbone.')
            super().add_params(params, module, prefix, get_layer_depth=get_layer_depth, **kwargs)
