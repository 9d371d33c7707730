"""Activation (gradient) checkpointing of one block call: the ``with_cp`` option of every mmevit network.

(Not to be confused with ``mmevit/models/checkpoint.py``, which reads and converts checkpoint *files*.)

``checkpoint_call(blk, *args, enabled=self.with_cp and self.training)`` runs ``blk(*args)`` under
``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` when enabled and autograd is recording: the
block's inner activations are freed after the forward and recomputed during the backward, trading one extra
block forward for the memory (mmpretrain/mmseg's ``with_cp``). The recomputation is the same computation:

- the CPU and CUDA RNG states are restored for it (``preserve_rng_state``, the default), so dropout and drop
  path draw the same masks;
- BatchNorm layers inside the block (Evo-LeViT's) do not update their running statistics a second time: during
  the recomputation their momentum is 0 (an exact no-op update) and ``num_batches_tracked`` is restored, so a
  training step leaves the same buffers with and without checkpointing.

What a block returns besides its output (an MSA output or attention matrix reused by a later block, a CLS
attention row) is an ordinary output of the checkpointed call, so state carried between blocks stays outside
the checkpointed region and gradients flow through it as without checkpointing.
"""
import contextlib
from typing import Callable, Iterator, List

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ['checkpoint_call']


def _batch_norms(fn: Callable) -> List[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorms (training mode, tracking running statistics) inside ``fn`` (a module or a bound method)."""
    module = fn if isinstance(fn, nn.Module) else getattr(fn, '__self__', None)
    if not isinstance(module, nn.Module):
        return []
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]


@contextlib.contextmanager
def _frozen_running_stats(norms: List[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    """Within: BatchNorm running-statistic updates are exact no-ops (``running * (1 - 0) + 0 * batch``)."""
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def checkpoint_call(fn: Callable, *args, enabled: bool, **kwargs):
    """``fn(*args, **kwargs)``, activation-checkpointed (non-reentrant) when ``enabled`` and grad mode is on.

    Args:
        fn: The block (an ``nn.Module`` or a bound method of one: its BatchNorms are found through it).
        enabled: Usually ``self.with_cp and self.training``.
    """
    if not (enabled and torch.is_grad_enabled()):
        return fn(*args, **kwargs)
    norms = _batch_norms(fn)
    if not norms:
        return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _frozen_running_stats(norms)), **kwargs)
