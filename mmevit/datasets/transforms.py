"""Restoration transforms (mmcv ``BaseTransform``s in mmevit's ``TRANSFORMS``): load a degraded/ground-truth
pair, crop both at the same place, apply the same one of the 8 dihedral transforms, pack for ``Denoiser``.

A pipeline works on ``results['img']`` (the degraded image) and ``results['gt']`` (the ground truth), both
uint8 (H, W, C) arrays in RGB order.
"""
from typing import Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from ..registry import TRANSFORMS
from .file_io import read_image

PAIR_KEYS = ('img', 'gt')


@TRANSFORMS.register_module()
class LoadImagePair(BaseTransform):
    """Read ``results['<key>_path']`` into ``results[<key>]`` for each key (uint8 (H, W, C), RGB), checking
    that the two images have the same size.

    Args:
        keys: The image keys (default the degraded image and its ground truth).
        channel_order: ``'rgb'`` (default) or ``'bgr'``.
        imdecode_backend: mmcv's decoding backend.
    """

    def __init__(self, keys: Sequence[str] = PAIR_KEYS, channel_order: str = 'rgb',
                 imdecode_backend: str = 'cv2') -> None:
        self.keys, self.channel_order, self.backend = tuple(keys), channel_order, imdecode_backend

    def transform(self, results: dict) -> dict:
        for key in self.keys:
            path = results.get(f'{key}_path')
            if path is None:
                raise KeyError(f'LoadImagePair: no {key}_path in the sample (keys: {sorted(results)})')
            # a missing file: FileNotFoundError; an undecodable one: UnreadableFileError; both name it
            results[key] = read_image(path, 'LoadImagePair', flag='color', channel_order=self.channel_order,
                                      backend=self.backend)
        _check_same_size(results, self.keys)
        results['ori_shape'] = results[self.keys[0]].shape[:2]
        return results


@TRANSFORMS.register_module()
class PairedRandomCrop(BaseTransform):
    """Crop the same random ``crop_size`` window from every key (the Uformer recipe's training crop).

    Images smaller than the crop raise an error naming their size.
    """

    def __init__(self, crop_size: int = 128, keys: Sequence[str] = PAIR_KEYS) -> None:
        if not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f'crop_size must be a positive int, got {crop_size!r}')
        self.crop_size, self.keys = crop_size, tuple(keys)

    def transform(self, results: dict) -> dict:
        H, W = _check_same_size(results, self.keys)
        p = self.crop_size
        if H < p or W < p:
            raise ValueError(f'PairedRandomCrop: image {H}x{W} is smaller than the crop {p}x{p}')
        top, left = np.random.randint(0, H - p + 1), np.random.randint(0, W - p + 1)
        for key in self.keys:
            results[key] = np.ascontiguousarray(results[key][top:top + p, left:left + p])
        results['crop_bbox'] = (top, left, p, p)
        return results


@TRANSFORMS.register_module()
class RandomDihedral(BaseTransform):
    """Apply one of the 8 symmetries of the square (identity, 3 rotations, their mirrored versions), the same
    to every key, chosen uniformly (the Uformer recipe's ``transforms_aug[random.getrandbits(3)]``)."""

    def __init__(self, keys: Sequence[str] = PAIR_KEYS) -> None:
        self.keys = tuple(keys)

    @staticmethod
    def apply(img: np.ndarray, index: int) -> np.ndarray:
        """Symmetry ``index`` (0-7): ``index >= 4`` mirrors (flips the rows), then rotates by
        ``(index % 4) x 90`` degrees counter-clockwise."""
        if index >= 4:
            img = img[::-1]
        return np.ascontiguousarray(np.rot90(img, index % 4))

    def transform(self, results: dict) -> dict:
        index = int(np.random.randint(8))
        for key in self.keys:
            results[key] = self.apply(results[key], index)
        results['dihedral'] = index
        return results


@TRANSFORMS.register_module()
class PackRestorationInputs(BaseTransform):
    """``inputs``: the degraded image as a uint8 (C, H, W) tensor; ``data_samples``: a ``BaseDataElement``
    with ``gt_img`` (uint8 (C, H, W), when present) and ``meta_keys`` as metainfo."""

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'gt_path', 'ori_shape', 'sample_idx', 'block')
                 ) -> None:
        self.meta_keys = tuple(meta_keys)

    @staticmethod
    def to_tensor(img: np.ndarray) -> torch.Tensor:
        if img.ndim == 2:
            img = img[..., None]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def transform(self, results: dict) -> dict:
        if 'img' not in results:
            raise KeyError(f'PackRestorationInputs: no img in the sample (keys: {sorted(results)})')
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt' in results:
            sample.gt_img = self.to_tensor(results['gt'])
        return dict(inputs=self.to_tensor(results['img']), data_samples=sample)


def _check_same_size(results: dict, keys: Tuple[str, ...]) -> Tuple[int, int]:
    shapes = {k: results[k].shape[:2] for k in keys if k in results}
    if not shapes:
        raise KeyError(f'none of {keys} in the sample (keys: {sorted(results)})')
    if len(set(shapes.values())) != 1:
        where = results.get('img_path') or results.get('block') or ''
        raise ValueError(f'paired images differ in size {shapes} {where}'.rstrip())
    return next(iter(shapes.values()))
