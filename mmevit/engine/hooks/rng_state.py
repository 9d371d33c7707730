"""``RNGStateHook``: interrupted training resumes exactly.

mmengine restores the seed, optimizer, schedulers and message hub on ``--resume``, but no random number
generator state: the torch RNG is *reseeded*, so dropout/drop-path draw the masks of iteration 1 again (and
``RestorationDataPreprocessor``'s mixup its Beta weights and permutation, which also come from the torch CPU
generator) and a resumed run drifts from the uninterrupted one by as much as the whole update of the resumed
iterations (measured on the shipped segmentation and SIDD demo configs: losses differ from the first resumed
iteration on).

This hook saves the torch (CPU and CUDA), numpy and python RNG states in every checkpoint, and on resume
restores **only the torch states, at the first resumed training iteration**. Where matters: mmengine resumes
an iteration loop by replaying the data loader up to the resumed iteration, which already reproduces the data
pipeline's numpy/python streams (with ``num_workers=0``); restoring every state at load time would then
rewind those streams and diverge. With ``num_workers > 0`` the workers' streams come from the seed and the
epoch, as mmengine sets them, and are reproduced by the replay as well.

Every shipped training config enables it (``configs/_base_/rng_state.py``). A downstream config gets it with
``custom_hooks=[dict(type='RNGStateHook')]`` in any scope (mmevit, and mmseg/mmdet/mmpretrain, to whose hook
registries it is exported), or ``'mmevit.RNGStateHook'``; mmengine replaces lists when merging configs, so a
config that sets ``custom_hooks`` of its own must list it again.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from ...registry import HOOKS, TOOLBOXES, export_to

KEY = 'rng_state'


def _numpy_state() -> dict:
    """``np.random.get_state()`` as plain data and a tensor, so checkpoints load with ``weights_only``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos), has_gauss=int(has_gauss),
                cached_gaussian=float(cached))


@export_to(*TOOLBOXES, registry='HOOKS')
@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save RNG states in checkpoints; restore the torch states when training resumes."""

    priority = 'VERY_LOW'  # after the checkpoint is complete, before the first resumed iteration

    def __init__(self) -> None:
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = dict(
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            numpy=_numpy_state(),
            python=random.getstate(),  # tuples of ints: loadable with weights_only
        )

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues a random stream; ``load_from`` (fine-tuning) starts fresh.
        if runner._resume and KEY in checkpoint:
            self._pending = checkpoint[KEY]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state['torch'])
        if state.get('cuda') and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
