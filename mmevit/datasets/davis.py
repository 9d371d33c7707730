"""Video denoising data in the DAVIS-2017 layout (also Set8 and any folder of frame folders), with synthetic
additive white Gaussian noise, as the SkipAt paper's video-denoising setup (FastDVDnet/TempFormer protocol).

Layout: ``<data_root>/JPEGImages/480p/<sequence>/<frame>.jpg`` (frames sorted by file name); the sequences are
those listed one per line in ``ann_file`` (DAVIS: ``ImageSets/2017/train.txt`` / ``val.txt``), or every
sub-folder when ``ann_file`` is empty (Set8: ``data_prefix=dict(img='')`` or the folder holding the sequences).

Pipelines work on ``results['gt']`` (uint8 (T, H, W, C) RGB clip) and ``results['img']`` (the noisy clip,
float32 (T, H, W, C) in 0-255, neither clipped nor rounded, as the noise is added to the network input):

- training: ``LoadVideoFrames(clip_len=7)`` (a random 7-frame clip), ``VideoRandomCrop(128)``,
  ``VideoRandomFlip`` (horizontal, vertical, and time reversal), ``AddGaussianNoise(sigma=30)`` (fresh noise
  every time), ``PackVideoInputs``;
- testing: ``LoadVideoFrames(max_frames=...)`` (the whole sequence), ``AddGaussianNoise(sigma=30, seed=0)``
  (noise drawn from a generator seeded by the seed and the sequence name: the same noisy sequence in every run
  and whatever the order), ``PackVideoInputs``. The model restores it in 7-frame sliding windows
  (``VideoDenoiser``); mmevit's PSNR/SSIM score each sequence (mean over its frames) and average the sequences.
"""
import os
import os.path as osp
import zlib
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset
from mmengine.structures import BaseDataElement

from ..registry import DATASETS, TRANSFORMS
from .file_io import read_image
from .sidd import IMG_EXTENSIONS, build_pipeline


@DATASETS.register_module()
class VideoFramesDataset(BaseDataset):
    """Sequences of frames, one sub-folder per sequence (DAVIS-2017 / Set8 layout, module docstring).

    Each sample is a sequence: ``sequence`` (name), ``frame_paths`` (sorted), ``num_frames``.

    Args:
        data_root: Dataset folder.
        ann_file: Text file (relative to ``data_root``) listing the sequences, one per line; ``''``: every
            sub-folder of the frames folder.
        data_prefix: ``dict(img=<frames folder>)`` relative to ``data_root`` (default DAVIS' ``JPEGImages/480p``).
        min_frames: Sequences with fewer frames raise an error (e.g. the training clip length).
        pipeline: Transforms.
        **kwargs: ``mmengine.dataset.BaseDataset`` options.
    """

    METAINFO = dict(task='video denoising')

    def __init__(self, data_root: str, ann_file: str = '', data_prefix: Optional[dict] = None,
                 min_frames: int = 1, pipeline: Sequence = (), extensions: Sequence[str] = IMG_EXTENSIONS,
                 **kwargs) -> None:
        self.min_frames, self.extensions = int(min_frames), tuple(extensions)
        super().__init__(data_root=data_root, ann_file=ann_file,
                         data_prefix=data_prefix if data_prefix is not None else dict(img='JPEGImages/480p'),
                         pipeline=build_pipeline(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        root = self.data_prefix.get('img') or self.data_root
        if not osp.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: frames folder {root!r} not found '
                                    f'(data_root={self.data_root!r}, data_prefix={self.data_prefix!r})')
        if self.ann_file:
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'{type(self).__name__}: sequence list {self.ann_file!r} not found')
            try:
                with open(self.ann_file, encoding='utf-8') as f:
                    names = [line.strip() for line in f if line.strip()]
            except UnicodeDecodeError as e:
                raise ValueError(f'{type(self).__name__}: sequence list {self.ann_file!r} is not a text file of '
                                 f'sequence names ({e})') from e
        else:
            names = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
        if not names:
            raise FileNotFoundError(f'{type(self).__name__}: no sequences in {root}')
        data = []
        for name in names:
            folder = osp.join(root, name)
            if not osp.isdir(folder):
                raise FileNotFoundError(f'{type(self).__name__}: sequence folder {folder} not found')
            frames = sorted(f for f in os.listdir(folder) if f.endswith(self.extensions))
            if len(frames) < self.min_frames:
                raise ValueError(f'{type(self).__name__}: {folder} has {len(frames)} frames, fewer than '
                                 f'min_frames={self.min_frames}')
            data.append(dict(sequence=name, frame_paths=[osp.join(folder, f) for f in frames],
                             num_frames=len(frames)))
        return data


@TRANSFORMS.register_module()
class LoadVideoFrames(BaseTransform):
    """Read frames into ``results['gt']`` (uint8 (T, H, W, 3), RGB).

    Args:
        clip_len: Read a clip of this many consecutive frames starting at a random frame (training); ``None``:
            the whole sequence.
        max_frames: With ``clip_len=None``: only the first ``max_frames`` frames (``None``: all).
    """

    def __init__(self, clip_len: Optional[int] = None, max_frames: Optional[int] = None) -> None:
        for name, v in (('clip_len', clip_len), ('max_frames', max_frames)):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f'{name} must be a positive int or None, got {v!r}')
        self.clip_len, self.max_frames = clip_len, max_frames

    def transform(self, results: dict) -> dict:
        paths = results['frame_paths']
        if self.clip_len is not None:
            if len(paths) < self.clip_len:
                raise ValueError(f'LoadVideoFrames: sequence {results.get("sequence")} has {len(paths)} frames, '
                                 f'fewer than clip_len={self.clip_len}')
            start = int(np.random.randint(0, len(paths) - self.clip_len + 1))
            paths = paths[start:start + self.clip_len]
            results['frame_start'] = start
        elif self.max_frames is not None:
            paths = paths[:self.max_frames]
        frames = []
        for p in paths:
            img = read_image(p, 'LoadVideoFrames', flag='color', channel_order='rgb')  # errors name the file
            if frames and img.shape != frames[0].shape:
                raise ValueError(f'LoadVideoFrames: {p} is {img.shape[:2]}, other frames {frames[0].shape[:2]}')
            frames.append(img)
        results['gt'] = np.stack(frames)
        results['ori_shape'] = frames[0].shape[:2]
        results['frame_paths'] = list(paths)
        return results


@TRANSFORMS.register_module()
class VideoRandomCrop(BaseTransform):
    """The same random ``crop_size`` x ``crop_size`` window from every frame of ``gt`` (and ``img``)."""

    def __init__(self, crop_size: int = 128) -> None:
        if not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f'crop_size must be a positive int, got {crop_size!r}')
        self.crop_size = crop_size

    def transform(self, results: dict) -> dict:
        H, W = results['gt'].shape[1:3]
        p = self.crop_size
        if H < p or W < p:
            raise ValueError(f'VideoRandomCrop: frames {H}x{W} are smaller than the crop {p}x{p}')
        top, left = np.random.randint(0, H - p + 1), np.random.randint(0, W - p + 1)
        for key in ('gt', 'img'):
            if key in results:
                results[key] = np.ascontiguousarray(results[key][:, top:top + p, left:left + p])
        results['crop_bbox'] = (int(top), int(left), p, p)
        return results


@TRANSFORMS.register_module()
class VideoRandomFlip(BaseTransform):
    """Flip the clip left-right, up-down and/or reverse it in time, each with probability ``prob``."""

    def __init__(self, prob: float = 0.5, directions: Sequence[str] = ('horizontal', 'vertical', 'temporal')) -> None:
        axes = dict(temporal=0, vertical=1, horizontal=2)
        unknown = set(directions) - set(axes)
        if unknown or not 0 <= prob <= 1:
            raise ValueError(f'directions must be among {sorted(axes)} and 0 <= prob <= 1, got {directions!r}, '
                             f'{prob!r}')
        self.prob, self.axes = float(prob), [(d, axes[d]) for d in directions]

    def transform(self, results: dict) -> dict:
        flips = [d for d, _ in self.axes if np.random.rand() < self.prob]
        for key in ('gt', 'img'):
            if key in results:
                for d, axis in self.axes:
                    if d in flips:
                        results[key] = np.flip(results[key], axis)
                results[key] = np.ascontiguousarray(results[key])
        results['flip'] = flips
        return results


@TRANSFORMS.register_module()
class AddGaussianNoise(BaseTransform):
    """``results['img'] = gt + N(0, sigma²)`` (0-255 scale, float32, not clipped).

    Args:
        sigma: Noise standard deviation on the 0-255 scale (30 in the SkipAt/TempFormer DAVIS setup).
        seed: ``None``: fresh noise from numpy's global generator (training; mmengine seeds it per worker).
            An int: deterministic noise from ``np.random.default_rng([seed, crc32(sequence name)])``, the same
            for a sequence in every run (testing).
    """

    def __init__(self, sigma: float = 30., seed: Optional[int] = None) -> None:
        if not sigma >= 0:
            raise ValueError(f'sigma must be >= 0, got {sigma!r}')
        self.sigma, self.seed = float(sigma), seed

    def transform(self, results: dict) -> dict:
        gt = results['gt']
        if self.seed is None:
            noise = np.random.standard_normal(gt.shape)
        else:
            key = zlib.crc32(str(results.get('sequence', results.get('sample_idx', ''))).encode())
            noise = np.random.default_rng([int(self.seed), key]).standard_normal(gt.shape)
        results['img'] = (gt.astype(np.float32) + (noise * self.sigma).astype(np.float32))
        results['noise_sigma'] = self.sigma
        return results


@TRANSFORMS.register_module()
class PackVideoInputs(BaseTransform):
    """``inputs``: the noisy clip as a float32 (T, C, H, W) tensor (0-255); ``data_samples``: a
    ``BaseDataElement`` with ``gt_img`` (uint8 (T, C, H, W)) and ``meta_keys`` as metainfo."""

    def __init__(self, meta_keys: Sequence[str] = ('sequence', 'frame_paths', 'ori_shape', 'sample_idx',
                                                   'noise_sigma')) -> None:
        self.meta_keys = tuple(meta_keys)

    @staticmethod
    def to_tensor(clip: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2)))

    def transform(self, results: dict) -> dict:
        if 'img' not in results:
            raise KeyError(f'PackVideoInputs: no noisy clip (img) in the sample (keys: {sorted(results)}); '
                           'add AddGaussianNoise')
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt' in results:
            sample.gt_img = self.to_tensor(results['gt'])
        return dict(inputs=self.to_tensor(results['img']), data_samples=sample)
