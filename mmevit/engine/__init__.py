"""Training/testing support shared by ``tools/``: the CPU mixed-precision optim wrapper, layer-wise lr
decay for backbones with ``get_layer_depth``, config edits for the tools' command-line options, and
conversion of official checkpoints for a config's model."""
from .convert import convert_checkpoint, convert_for_model, is_bare_vit
from .optim import LearningRateDecayOptimWrapperConstructor
from .optim_wrapper import CPUAmpOptimWrapper

__all__ = ['CPUAmpOptimWrapper', 'convert_checkpoint', 'convert_for_model', 'is_bare_vit']

if LearningRateDecayOptimWrapperConstructor is not None:
    from .optim import BackboneLayerDecayOptimWrapperConstructor  # noqa: F401
    __all__.append('BackboneLayerDecayOptimWrapperConstructor')
