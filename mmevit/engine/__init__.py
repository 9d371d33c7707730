"""Training/testing support shared by ``tools/``: the family-agnostic checkpoint path (``convert``), the
CPU mixed-precision optim wrapper, layer-wise lr decay for backbones with ``get_layer_depth``, and config
edits for the tools' command-line options (``runner_setup``)."""
from . import hooks  # noqa: F401  (registers RNGStateHook and the other hooks)
from .convert import CheckpointMismatchError, check_state_dict, convert_for_model
from .optim import LearningRateDecayOptimWrapperConstructor
from .optim_wrapper import CPUAmpOptimWrapper

__all__ = ['CPUAmpOptimWrapper', 'CheckpointMismatchError', 'check_state_dict', 'convert_for_model']

if LearningRateDecayOptimWrapperConstructor is not None:
    from .optim import BackboneLayerDecayOptimWrapperConstructor  # noqa: F401
    __all__.append('BackboneLayerDecayOptimWrapperConstructor')
