# Exact resume (issue 12): every training config of mmevit inherits this file (first in its `_base_` list).
# RNGStateHook (mmevit/engine/hooks/rng_state.py) saves the torch/numpy/python RNG states in every checkpoint and
# restores the torch state at the first resumed iteration, so that `--resume` continues the dropout/drop-path/
# mixup random streams instead of restarting them. It is exported to mmseg/mmdet/mmpretrain's hook registries:
# the bare name works in every scope.
# mmengine replaces lists when configs are merged: a config that sets custom_hooks of its own writes
# `custom_hooks = [*_base_.custom_hooks, dict(type=...)]` to keep this hook.
custom_hooks = [dict(type='RNGStateHook')]
