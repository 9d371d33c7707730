"""``LoadSegAnnotations``: mmseg's ``LoadAnnotations`` that names the file it fails on and refuses label maps
that would train on wrong labels. Registered in mmevit's ``TRANSFORMS`` and exported to mmseg's (when mmseg is
installed), so an mmseg config replaces ``dict(type='LoadAnnotations')`` by
``dict(type='LoadSegAnnotations', num_classes=150)``; our segmentation configs do.

What mmseg 1.2.2's ``LoadAnnotations`` does with bad annotations, and what this class does instead:

- missing file: ``FileNotFoundError`` naming it (unchanged);
- undecodable (truncated, garbage): PIL's ``OSError: image file is truncated`` / ``UnidentifiedImageError:
  cannot identify image file <_io.BytesIO ...>``, with no file name -> ``UnreadableFileError`` naming the file;
- a colour-coded (RGB) map: loaded as (H, W, 3) with a warning and failing later, far away -> refused, named;
- 16-bit maps with values above 255: cast to uint8 *silently* (300 becomes 44) -> refused, named;
- label values outside the classes (with ``num_classes``): on the CPU an ``IndexError: Target 150 is out of
  bounds`` in the loss, on CUDA a device-side assert, without the file; and ``IoUMetric`` silently drops them
  from the scores -> ``ValueError`` naming the file, the offending values as stored and as mapped.

mmseg's label rules, which the check applies (it runs after them, on the labels the loss sees):

- ``reduce_zero_label=True`` (ADE20K; set on the *dataset*, ``ADE20KDataset`` defaults to it): stored value 0
  ("other") becomes 255 (ignored), every other stored value v becomes v - 1, and a stored 255 stays 255. The
  stored values of the C classes are therefore 1..C.
- ``reduce_zero_label=False``: stored values are the labels, 0..C-1.
- ``label_map`` (the dataset's, when ``metainfo`` selects a subset of the classes) is applied next.
- ``ignore_index`` (255 in mmseg's heads and metrics) is never a class: pixels with it do not count in the loss
  nor in ``IoUMetric``. Any other value >= ``num_classes`` is refused here.

Costs one ``max()`` over the label map when every value is in range (the usual case). A sample without
``seg_map_path`` passes unchanged: mmseg's inferencers remove only transforms named ``LoadAnnotations`` from a
config's test pipeline before running it on bare images.
"""
import importlib.util
from typing import Optional

import numpy as np
from mmengine import fileio

from ..registry import TRANSFORMS, export_to
from .file_io import decode_image


def _values(a: np.ndarray, limit: int = 10) -> str:
    vals = np.unique(a)
    shown = ', '.join(str(int(v)) for v in vals[:limit])
    return shown + (f', ... ({len(vals)} values)' if len(vals) > limit else '')


def check_seg_labels(gt: np.ndarray, num_classes: int, ignore_index: int, path: str, raw: np.ndarray,
                     reduce_zero_label: bool, who: str = 'LoadSegAnnotations') -> None:
    """Raise ``ValueError`` naming ``path`` if ``gt`` holds a value >= ``num_classes`` other than ``ignore_index``."""
    if gt.size == 0 or int(gt.max()) < num_classes:
        return
    bad = (gt >= num_classes) & (gt != ignore_index)
    if not bad.any():
        return
    rule = ('reduce_zero_label=True: stored 0 -> 255 (ignored), stored v -> v - 1, so the classes must be stored as '
            f'1..{num_classes}' if reduce_zero_label else
            f'reduce_zero_label=False: stored values are the labels, 0..{num_classes - 1}')
    hint = ''
    if not reduce_zero_label and int(raw[bad].max()) == num_classes and (raw == 0).any():
        hint = ' (0 and 1..num_classes stored, as in ADE20K: should the dataset set reduce_zero_label=True?)'
    raise ValueError(f'{who}: {path} holds label values {_values(gt[bad])} (stored as {_values(raw[bad])}) outside '
                     f'0..{num_classes - 1} and not ignore_index={ignore_index} ({int(bad.sum())} pixels); with '
                     f'{rule}{hint}')


if importlib.util.find_spec('mmseg') is not None:
    from mmseg.datasets.transforms import LoadAnnotations

    @export_to('mmseg', registry='TRANSFORMS')
    @TRANSFORMS.register_module()
    class LoadSegAnnotations(LoadAnnotations):
        """mmseg's ``LoadAnnotations`` (same arguments) with file-naming errors and label checks (module
        docstring).

        Args:
            num_classes: The model's number of classes: labels (after ``reduce_zero_label`` and ``label_map``)
                must be below it or equal ``ignore_index``. ``None``: no range check (decoding, shape and
                16-bit checks only).
            ignore_index: The label the loss and metric ignore (mmseg's 255).
            reduce_zero_label, backend_args, imdecode_backend: as mmseg's ``LoadAnnotations``
                (``reduce_zero_label`` is best left to the dataset).
        """

        def __init__(self, num_classes: Optional[int] = None, ignore_index: int = 255,
                     reduce_zero_label: Optional[bool] = None, backend_args: Optional[dict] = None,
                     imdecode_backend: str = 'pillow') -> None:
            if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
                raise ValueError(f'num_classes must be a positive int or None, got {num_classes!r}')
            super().__init__(reduce_zero_label=reduce_zero_label, backend_args=backend_args,
                             imdecode_backend=imdecode_backend)
            self.num_classes, self.ignore_index = num_classes, int(ignore_index)

        def _load_seg_map(self, results: dict) -> None:
            path = results.get('seg_map_path')
            if path is None:  # an image without annotation (inferencers drop only a transform named LoadAnnotations)
                return
            who = type(self).__name__
            data = fileio.get(path, backend_args=self.backend_args)  # FileNotFoundError names the file
            raw = decode_image(data, path, who, flag='unchanged', backend=self.imdecode_backend).squeeze()
            if raw.ndim != 2:
                raise ValueError(f'{who}: {path} is a {raw.shape} image, not a single-channel label map (a '
                                 'colour-coded annotation? store class indices, e.g. a palette or grey PNG)')
            if raw.dtype != np.uint8 and raw.size and (int(raw.max()) > 255 or int(raw.min()) < 0):
                raise ValueError(f'{who}: {path} holds label values up to {int(raw.max())} ({raw.dtype}); mmseg keeps '
                                 'labels as uint8 (0-255, 255 = ignored) and would wrap them silently')
            raw = raw.astype(np.uint8)
            # mmseg's own steps (mmseg/datasets/transforms/loading.py, LoadAnnotations._load_seg_map)
            if self.reduce_zero_label is None:
                self.reduce_zero_label = results['reduce_zero_label']
            if self.reduce_zero_label != results['reduce_zero_label']:
                raise ValueError(f'{who}: reduce_zero_label={self.reduce_zero_label} but the dataset has '
                                 f'{results["reduce_zero_label"]}; set it on the dataset only')
            gt = raw.copy()
            if self.reduce_zero_label:
                gt[gt == 0] = 255
                gt = gt - 1
                gt[gt == 254] = 255
            if results.get('label_map', None) is not None:
                mapped = gt.copy()
                for old_id, new_id in results['label_map'].items():
                    gt[mapped == old_id] = new_id
            if self.num_classes is not None:
                check_seg_labels(gt, self.num_classes, self.ignore_index, path, raw, bool(self.reduce_zero_label),
                                 who)
            results['gt_seg_map'] = gt
            results['seg_fields'].append('gt_seg_map')

        def __repr__(self) -> str:
            return (f'{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index}, '
                    f'reduce_zero_label={self.reduce_zero_label}, imdecode_backend={self.imdecode_backend!r}, '
                    f'backend_args={self.backend_args})')
