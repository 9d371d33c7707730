"""Demo data in the SIDD layouts (``mmevit.datasets.sidd``), made from real photographs with realistic noise.

Clean images are photographs shipped with scikit-image (``skimage.data``), downscaled 2x (area averaging, which
also removes most of their own noise and JPEG artefacts). Noise is added as a camera adds it, in linear
intensity: sRGB values are linearised, each pixel gets Poisson shot noise (``photons = x / a``) plus Gaussian
read noise (sigma ``b``), with ``a`` and ``b`` drawn per image (the heteroscedastic Poisson-Gaussian model of
Foi et al., 2008, as used to synthesise sRGB noise in CBDNet/CycleISP), then the result is clipped, gamma-
encoded back to sRGB and quantised to 8 bits. Dark regions thus get relatively stronger noise, as in SIDD.

Layout (``out_dir``):
    train/input/<i>.png, train/groundtruth/<i>.png      ``num_train`` 96x96 patch pairs (training photos)
    val/ValidationNoisyBlocksSrgb.mat, val/ValidationGtBlocksSrgb.mat
                                                        ``num_val`` 64x64 blocks from *other* photos, stored as
                                                        uint8 (num_val, 1, 64, 64, 3) as the SIDD files
    val/input/<i>.png, val/groundtruth/<i>.png          the same blocks as a folder pair
"""
import os
import os.path as osp

import cv2
import numpy as np

from .demo_data import register_demo_data

TRAIN_PHOTOS = ('astronaut', 'rocket', 'immunohistochemistry', 'hubble_deep_field', 'retina')
VAL_PHOTOS = ('chelsea', 'coffee')
PATCH, BLOCK = 96, 64
SHOT = (0.004, 0.02)   # range of a: variance a * x of the shot noise on linear intensity x in [0, 1]
READ = (0.005, 0.02)   # range of b: standard deviation of the read noise


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def add_camera_noise(clean: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """uint8 sRGB -> uint8 sRGB with Poisson-Gaussian noise of parameters ``shot`` (a) and ``read`` (b)
    added in linear intensity."""
    lin = srgb_to_linear(clean.astype(np.float64) / 255.)
    noisy = rng.poisson(lin / shot) * shot + rng.normal(0., read, lin.shape)
    return np.round(linear_to_srgb(np.clip(noisy, 0., 1.)) * 255.).astype(np.uint8)


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photograph, RGB uint8, downscaled 2x."""
    from skimage import data
    img = getattr(data, name)()[..., :3]
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _crops(rng: np.random.Generator, photos, count: int, size: int):
    """``count`` (photo index, top, left) crops, round-robin over the photos."""
    for i in range(count):
        k = i % len(photos)
        H, W = photos[k].shape[:2]
        yield k, int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))


def _write_pair(root: str, name: str, noisy: np.ndarray, clean: np.ndarray) -> None:
    for sub, img in (('input', noisy), ('groundtruth', clean)):
        cv2.imwrite(osp.join(root, sub, name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


@register_demo_data('sidd')
def make_demo_sidd(out_dir: str, num_train: int = 240, num_val: int = 24, seed: int = 0) -> dict:
    """Write the demo SIDD data into the empty folder ``out_dir`` (module docstring); returns its metadata,
    including the mean PSNR of the noisy validation blocks."""
    from scipy.io import savemat

    from ..evaluation import psnr
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        for sub in ('input', 'groundtruth'):
            os.makedirs(osp.join(out_dir, split, sub))

    def noisy_photos(names):
        clean = [load_photo(n) for n in names]
        params = [(float(rng.uniform(*SHOT)), float(rng.uniform(*READ))) for _ in names]
        return clean, [add_camera_noise(c, rng, *p) for c, p in zip(clean, params)], params

    clean, noisy, train_params = noisy_photos(TRAIN_PHOTOS)
    for i, (k, top, left) in enumerate(_crops(rng, clean, num_train, PATCH)):
        box = (slice(top, top + PATCH), slice(left, left + PATCH))
        _write_pair(osp.join(out_dir, 'train'), f'{i:05d}.png', noisy[k][box], clean[k][box])

    clean, noisy, val_params = noisy_photos(VAL_PHOTOS)
    blocks = np.zeros((2, num_val, 1, BLOCK, BLOCK, 3), np.uint8)  # noisy, clean
    for i, (k, top, left) in enumerate(_crops(rng, clean, num_val, BLOCK)):
        box = (slice(top, top + BLOCK), slice(left, left + BLOCK))
        blocks[0, i, 0], blocks[1, i, 0] = noisy[k][box], clean[k][box]
        _write_pair(osp.join(out_dir, 'val'), f'{i:05d}.png', blocks[0, i, 0], blocks[1, i, 0])
    savemat(osp.join(out_dir, 'val', 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': blocks[0]})
    savemat(osp.join(out_dir, 'val', 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': blocks[1]})
    noisy_psnr = float(np.mean([psnr(n[0], c[0]) for n, c in zip(blocks[0], blocks[1])]))
    return dict(train_photos=list(TRAIN_PHOTOS), val_photos=list(VAL_PHOTOS), patch_size=PATCH, block_size=BLOCK,
                noise=dict(model='Poisson-Gaussian on linearised sRGB', shot_a=SHOT, read_b=READ,
                           train=train_params, val=val_params),
                noisy_val_psnr=round(noisy_psnr, 3))
