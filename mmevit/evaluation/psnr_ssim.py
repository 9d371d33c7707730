"""PSNR and SSIM, with the definitions the restoration literature reports (and mmagic's metric options).

Both images are first brought to the stored 8-bit values: clipped to [0, 255] and rounded to integers (round
half to even), exactly what saving the prediction as an 8-bit image does. Then, in float64:

- ``PSNR = 10 log10(255² / MSE)`` with the MSE over all pixels and channels (infinite for identical images).
- ``SSIM``: Wang et al. (IEEE TIP 2004) and their reference ``ssim_index.m``: 11x11 Gaussian window of
  sigma 1.5 (normalised), local means/variances/covariance with that window over the *valid* region only (no
  padding), population (not sample) covariance, ``C1 = (0.01·255)²``, ``C2 = (0.03·255)²``; the mean SSIM
  map of each channel, averaged over the channels. This equals scikit-image's ``structural_similarity(
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``.

Options as in mmagic: ``crop_border`` (pixels removed from every side before measuring), ``input_order``
(``'CHW'`` or ``'HWC'``) and ``convert_to`` (``None``: RGB, ``'Y'``: the BT.601 luma of RGB inputs,
``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, as MATLAB's ``rgb2ycbcr``). The dataset value is the mean of
the per-image values; a prediction that is a clip (T, C, H, W) counts as one sequence, scored by the mean over
its frames (the video-denoising convention: per-sequence values, averaged over the sequences).
"""
from typing import Any, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS

INPUT_ORDERS = ('CHW', 'HWC')
CONVERSIONS = (None, 'Y')


def to_uint8_values(img: Any, input_order: str = 'HWC', convert_to: Optional[str] = None) -> np.ndarray:
    """An image (tensor or array, 0-255 range) as float64 (H, W, C) holding its clipped, rounded 8-bit values
    (luma when ``convert_to='Y'``)."""
    if input_order not in INPUT_ORDERS:
        raise ValueError(f'input_order must be one of {INPUT_ORDERS}, got {input_order!r}')
    if convert_to not in CONVERSIONS and convert_to != 'y':
        raise ValueError(f"convert_to must be None or 'Y', got {convert_to!r}")
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().double().numpy()
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None] if input_order == 'HWC' else img[None]
    if img.ndim != 3:
        raise ValueError(f'expected a single image ({input_order} or 2-d), got shape {img.shape}')
    if input_order == 'CHW':
        img = img.transpose(1, 2, 0)
    img = np.round(np.clip(img, 0, 255))
    if convert_to in ('Y', 'y'):
        if img.shape[2] != 3:
            raise ValueError(f"convert_to='Y' needs RGB images, got {img.shape[2]} channels")
        img = (img @ np.array([65.481, 128.553, 24.966]) / 255. + 16.)[..., None]
    return img


def _prepare(img1, img2, crop_border: int, input_order: str, convert_to: Optional[str]):
    a, b = (to_uint8_values(im, input_order, convert_to) for im in (img1, img2))
    if a.shape != b.shape:
        raise ValueError(f'image shapes differ: {a.shape} vs {b.shape} (as H, W, C)')
    if crop_border < 0:
        raise ValueError(f'crop_border must be >= 0, got {crop_border}')
    if crop_border:
        if 2 * crop_border >= min(a.shape[:2]):
            raise ValueError(f'crop_border {crop_border} leaves nothing of a {a.shape[0]}x{a.shape[1]} image')
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(img1, img2, crop_border: int = 0, input_order: str = 'HWC', convert_to: Optional[str] = None) -> float:
    """PSNR in dB of two images in the 0-255 range (module docstring)."""
    a, b = _prepare(img1, img2, crop_border, input_order, convert_to)
    mse = np.mean((a - b) ** 2)
    return float('inf') if mse == 0 else float(10. * np.log10(255. ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_channel(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    r = window.shape[0] // 2

    def filt(x: np.ndarray) -> np.ndarray:  # correlation, valid region only
        return cv2.filter2D(x, cv2.CV_64F, window, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    mu1, mu2 = filt(a), filt(b)
    var1 = filt(a * a) - mu1 * mu1
    var2 = filt(b * b) - mu2 * mu2
    cov = filt(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + C1) * (2 * cov + C2)) / ((mu1 * mu1 + mu2 * mu2 + C1) * (var1 + var2 + C2))
    return float(ssim_map.mean())


def ssim(img1, img2, crop_border: int = 0, input_order: str = 'HWC', convert_to: Optional[str] = None) -> float:
    """SSIM of two images in the 0-255 range (module docstring); both sides must be >= 11 after cropping."""
    a, b = _prepare(img1, img2, crop_border, input_order, convert_to)
    if min(a.shape[:2]) < 11:
        raise ValueError(f'SSIM needs images of at least 11x11 (the Gaussian window), got {a.shape[:2]}')
    window = _gaussian_window()
    return float(np.mean([_ssim_channel(a[..., c], b[..., c], window) for c in range(a.shape[2])]))


class _ImageQualityMetric(BaseMetric):
    """Per-image metric averaged over the dataset; reads ``pred_key`` and ``gt_key`` of each prediction."""

    metric_fn = None
    name = ''
    default_prefix = ''  # metric names as they are ('PSNR'), unless a prefix is given

    def __init__(self, gt_key: str = 'gt_img', pred_key: str = 'pred_img', collect_device: str = 'cpu',
                 prefix: Optional[str] = None, crop_border: int = 0, input_order: str = 'CHW',
                 convert_to: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if input_order not in INPUT_ORDERS:
            raise ValueError(f'input_order must be one of {INPUT_ORDERS}, got {input_order!r}')
        if convert_to not in CONVERSIONS and convert_to != 'y':
            raise ValueError(f"convert_to must be None or 'Y', got {convert_to!r}")
        self.gt_key, self.pred_key = gt_key, pred_key
        self.crop_border, self.input_order, self.convert_to = int(crop_border), input_order, convert_to

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            missing = [k for k in (self.pred_key, self.gt_key) if k not in sample]
            if missing:
                raise KeyError(f'{type(self).__name__}: prediction has no {missing} (keys: {sorted(sample)})')
            pred, gt = sample[self.pred_key], sample[self.gt_key]
            if getattr(pred, 'ndim', 0) == 4:  # a clip (T, C, H, W) / (T, H, W, C): the mean over its frames
                value = float(np.mean([type(self).metric_fn(p, g, self.crop_border, self.input_order,
                                                            self.convert_to) for p, g in zip(pred, gt)]))
                self.results.append((str(sample.get('sequence', sample.get('sample_idx', len(self.results)))),
                                     value))
                continue
            value = type(self).metric_fn(pred, gt, self.crop_border, self.input_order, self.convert_to)
            self.results.append(value)

    def compute_metrics(self, results: List[Any]) -> dict:
        """The mean over images, or over sequences for clips (whose per-sequence values are logged)."""
        sequences = [r for r in results if isinstance(r, tuple)]
        if sequences:
            from mmengine.logging import print_log
            prefix = f'{self.prefix}/' if self.prefix else ''
            print_log(f'{prefix}{self.name} per sequence: ' + ', '.join(f'{n} {v:.4f}' for n, v in sequences),
                      logger='current')
        return {self.name: float(np.mean([r[1] if isinstance(r, tuple) else r for r in results]))}


@METRICS.register_module()
class PSNR(_ImageQualityMetric):
    """Mean PSNR (dB) over the images; definition in the module docstring.

    Args:
        gt_key / pred_key: Keys of the ground truth and the prediction in each output sample.
        collect_device / prefix: As mmengine's ``BaseMetric``.
        crop_border: Pixels cropped from every side before measuring.
        input_order: ``'CHW'`` (tensors from the model) or ``'HWC'``.
        convert_to: ``None`` (RGB) or ``'Y'`` (luma).
    """
    metric_fn = staticmethod(psnr)
    name = 'PSNR'


@METRICS.register_module()
class SSIM(_ImageQualityMetric):
    """Mean SSIM over the images; definition in the module docstring. Arguments as ``PSNR``."""
    metric_fn = staticmethod(ssim)
    name = 'SSIM'
