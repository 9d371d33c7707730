"""Non-finite (NaN/Inf) training inputs are refused by the data preprocessor, once per batch.

Why here, and only in training: a NaN or Inf that reaches a training step does not fail, it *poisons*. The
BatchNorm layers fold the batch mean/variance into their running statistics (NaN from then on, for every later
image, also at inference), the loss is NaN, and the optimizer writes NaN into every weight it updates; the run
keeps going and the damage shows hours later as a NaN loss or a dead model, far from the file that caused it.
At inference nothing is accumulated: a non-finite image gives a non-finite output for that image only, so the
test/val path is left unchecked (and costs nothing).

Where: before any batch augmentation (mixup/CutMix would spread one bad image into another and hide which one
it was). ``RestorationDataPreprocessor`` checks its stacked, scaled batch (inputs and ground truths); the toolbox
preprocessors check the batch they are given, before their own ``forward`` (normalising, padding and stacking
with finite constants neither create nor remove a non-finite value, so the verdict is that of the normalised
batch, with the samples still in their order, and no device synchronisation is added). One reduction and one
host synchronisation per batch (``torch.isfinite(...).all()``); the per-sample breakdown is computed only when
that check fails.
The error (``NonFiniteInputError``, a ``ValueError``) names the offending samples by their file (``img_path``,
``gt_path``, ``frame_paths``) or other metainfo (``sequence``, ``block``, ``sample_idx``) and the count of
non-finite values in each.

Cheap: 8-bit (integer) images cannot hold NaN/Inf, and scaling or normalising them with finite constants
(checked once, at construction) cannot create one, so a batch whose tensors are all integer is not checked at
all (no pass over the data, no device synchronisation). What is checked are float inputs, e.g. images with
synthetic noise added in the pipeline, or data read from ``.npy``/``.mat``/HDR sources.

Classes:

- ``check_finite_batch`` (the one helper): used by ``RestorationDataPreprocessor`` (mmevit scope, inputs and
  ground truths) and by ``FiniteInputsMixin``.
- ``FiniteSegDataPreProcessor`` (mmseg), ``FiniteDetDataPreprocessor`` (mmdet), ``FiniteClsDataPreprocessor``
  (mmpretrain): the toolboxes' own preprocessors with the check, registered in mmevit's ``MODELS`` and exported
  to their toolbox only; each exists when its toolbox is installed. Our seg/det/cls configs name them
  (``data_preprocessor=dict(type='FiniteSegDataPreProcessor', ...)``, same arguments as mmseg's); a downstream
  config does the same.
"""
import importlib.util
from typing import Any, Optional, Sequence, Union

import torch

from ..registry import MODELS, export_to

# Metainfo keys that identify a sample, in order of preference.
SAMPLE_KEYS = ('img_path', 'gt_path', 'frame_paths', 'sequence', 'block', 'sample_idx')
MAX_LISTED = 8


class NonFiniteInputError(ValueError):
    """A training batch holds NaN or Inf values; the message names the samples."""


def _describe(sample: Any, index: int) -> str:
    meta = {}
    if sample is not None:
        meta = sample.metainfo if hasattr(sample, 'metainfo') else (sample if isinstance(sample, dict) else {})
    for key in SAMPLE_KEYS:
        value = meta.get(key)
        if value is None:
            continue
        if key == 'frame_paths' and isinstance(value, (list, tuple)) and value:
            value = f'{value[0]} ... ({len(value)} frames)'
        return f'sample {index} ({key}={value})'
    return f'sample {index}'


def _is_float(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex())


def check_finite_batch(tensors: Union[torch.Tensor, Sequence[torch.Tensor]], data_samples: Optional[Sequence] = None,
                       what: str = 'inputs', source: str = '') -> None:
    """Raise ``NonFiniteInputError`` if ``tensors`` (a batch (B, ...) or a list of B per-sample tensors) holds
    NaN/Inf, naming the samples (``data_samples[i]``'s file or metainfo) and their count of non-finite values.

    One host synchronisation per call (one reduction for a stacked batch, one per float tensor for a list);
    nothing at all for integer tensors.
    """
    items = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    if not any(_is_float(t) for t in items):
        return
    if isinstance(tensors, torch.Tensor):
        if bool(torch.isfinite(tensors).all()):
            return
        counts = (~torch.isfinite(tensors)).reshape(tensors.shape[0], -1).sum(1).tolist()
    else:  # per-sample tensors of different sizes: one flag each, one synchronisation for the batch
        floats = [t for t in items if _is_float(t)]
        if bool(torch.stack([torch.isfinite(t).all() for t in floats]).all()):
            return
        counts = [int((~torch.isfinite(t)).sum()) if _is_float(t) else 0 for t in items]
    bad = [(i, n) for i, n in enumerate(counts) if n]
    samples = list(data_samples) if data_samples is not None else []
    listed = '; '.join(f'{_describe(samples[i] if i < len(samples) else None, i)}: {n} non-finite value(s)'
                       for i, n in bad[:MAX_LISTED])
    more = f'; and {len(bad) - MAX_LISTED} more' if len(bad) > MAX_LISTED else ''
    where = f'{source}: ' if source else ''
    raise NonFiniteInputError(
        f'{where}NaN/Inf in the training {what} of {len(bad)} of {len(counts)} samples, refused before the step '
        f'(it would silently poison BatchNorm running statistics and the weights): {listed}{more}')


def check_finite_constants(owner: str, **constants: Optional[torch.Tensor]) -> None:
    """Normalisation constants must be finite, and a ``std`` non-zero, so that normalising finite pixels
    cannot create NaN/Inf (which makes checking integer inputs unnecessary)."""
    for name, value in constants.items():
        if value is None or value.is_meta:  # built on the meta device (no values): nothing to check
            continue
        if not bool(torch.isfinite(value).all()) or (name == 'std' and bool((value == 0).any())):
            raise ValueError(f'{owner}: {name} must be finite{" and non-zero" if name == "std" else ""}, got '
                             f'{value.flatten().tolist()}')


class FiniteInputsMixin:
    """Refuse training batches holding NaN/Inf (module docstring) in an OpenMMLab data preprocessor.

    Put it first in the bases: ``class X(FiniteInputsMixin, SegDataPreProcessor)``. The raw batch is checked
    before the toolbox's ``forward``: normalisation, padding and stacking with finite constants keep finite
    values finite and cannot make a non-finite one finite (padding adds finite values only), and the toolbox's
    batch augmentations (mixup, CutMix) come after, so this is the stacked, normalised batch's verdict with the
    samples still in their order. Integer images (the usual uint8) are not scanned.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self, '_enable_normalize', False):
            check_finite_constants(type(self).__name__, mean=getattr(self, 'mean', None),
                                   std=getattr(self, 'std', None))

    def forward(self, data: dict, training: bool = False) -> dict:
        if training:
            check_finite_batch(data['inputs'], data.get('data_samples'), 'inputs', type(self).__name__)
        return super().forward(data, training)


__all__ = ['NonFiniteInputError', 'check_finite_batch', 'check_finite_constants', 'FiniteInputsMixin']

# One subclass per toolbox, defined when that toolbox is installed (as mmevit.models.heads does for mmpretrain).
if importlib.util.find_spec('mmseg') is not None:
    from mmseg.models.data_preprocessor import SegDataPreProcessor

    @MODELS.register_module()
    @export_to('mmseg')
    class FiniteSegDataPreProcessor(FiniteInputsMixin, SegDataPreProcessor):
        """mmseg's ``SegDataPreProcessor`` (same arguments) that refuses training batches holding NaN/Inf."""

    __all__.append('FiniteSegDataPreProcessor')

if importlib.util.find_spec('mmdet') is not None:
    from mmdet.models.data_preprocessors import DetDataPreprocessor

    @MODELS.register_module()
    @export_to('mmdet')
    class FiniteDetDataPreprocessor(FiniteInputsMixin, DetDataPreprocessor):
        """mmdet's ``DetDataPreprocessor`` (same arguments) that refuses training batches holding NaN/Inf."""

    __all__.append('FiniteDetDataPreprocessor')

if importlib.util.find_spec('mmpretrain') is not None:
    from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor

    @MODELS.register_module()
    @export_to('mmpretrain')
    class FiniteClsDataPreprocessor(FiniteInputsMixin, ClsDataPreprocessor):
        """mmpretrain's ``ClsDataPreprocessor`` (same arguments) that refuses training batches holding NaN/Inf."""

    __all__.append('FiniteClsDataPreprocessor')
