"""The ADE20K demo dataset: small, deterministic semantic-segmentation scenes in the ADE20K directory layout.

``make_demo_data('ade20k', root)`` (or ``tools/misc/make_demo_data.py ade20k ROOT``) writes::

    <root>/images/training/DEMO_train_00000000.jpg        RGB, JPEG quality 95
    <root>/annotations/training/DEMO_train_00000000.png   uint8 class map (single channel)
    <root>/images/validation/DEMO_val_00000000.jpg
    <root>/annotations/validation/DEMO_val_00000000.png
    <root>/mmevit_demo.json                               marker (written last, see ``demo_data``)

Annotations follow ADE20K: 0 is "other" (ignored: mmseg maps it to 255 with ``reduce_zero_label=True``) and
1..K are the classes, so class ``i`` of ``CLASSES`` is stored as ``i + 1``. Label 0 is used for a few thin
"clutter" scribbles, which exercise the ignore path.

Scenes (128 x 128 px): a textured background with 2-4 objects (about 30-110 px across) of distinct classes.
Colours are drawn from one distribution for every class, so colour says nothing about the class; each class
has its own shape *and* texture (objects occlude each other, so shapes are often partial):

==========  ==================================  ==================================================
class       shape                               texture
==========  ==================================  ==================================================
background  the rest of the image               smooth low-frequency colour noise
disk        circle (radius 18-39 px)            flat colour with fine pixel speckle
rectangle   rotated rectangle (sides 34-78 px)  checkerboard of two colours (6-10 px cells)
triangle    triangle (circumradius 28-50 px)    two-colour camouflage blobs (about 3-5 px)
stripes     rotated ellipse (72-112 x 28-48)    stripes of two colours (5-9 px period, any angle)
==========  ==================================  ==================================================

Every sample is rendered from its own generator seeded with ``(seed, split, index)``, so a given seed always
gives byte-identical files, and a smaller dataset is a prefix of a larger one. Rendering needs only numpy,
OpenCV and Pillow (no mmseg).
"""
import io
import os
import os.path as osp
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from .demo_data import register_demo_data

CLASSES: Tuple[str, ...] = ('background', 'disk', 'rectangle', 'triangle', 'stripes')
PALETTE: List[List[int]] = [[120, 120, 120], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200]]
IGNORE_LABEL = 0          # ADE20K's "other": becomes 255 (ignored) with reduce_zero_label=True
SIZE = 128                # image side (px)
VERSION = 1               # bump when the files written change
SPLITS = {'training': 'train', 'validation': 'val'}
_SPLIT_ID = {'training': 0, 'validation': 1}

# Stored label values (class index + 1).
BG, DISK, RECT, TRI, STRIPES = 1, 2, 3, 4, 5


# ----------------------------------------------------------------------------- rendering
def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, size=3)


def _second_colour(rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
    """A colour clearly different from ``c`` (for two-tone textures)."""
    d = rng.uniform(70, 130, size=3) * rng.choice([-1., 1.], size=3)
    out = c + d
    # Reflect out-of-range channels so the contrast survives.
    out = np.where((out < 0) | (out > 255), c - d, out)
    return np.clip(out, 0, 255)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = _colour(rng)
    grid = int(rng.integers(3, 7))
    noise = rng.uniform(-45, 45, size=(grid, grid, 3)).astype(np.float32)
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + noise, 0, 255)


def _disk_mask(rng, size, yy, xx):
    r = rng.uniform(18, 39)
    cy, cx = rng.uniform(r * 0.5, size - r * 0.5, size=2)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _poly_mask(size: int, pts: np.ndarray) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m.astype(bool)


def _rect_mask(rng, size, yy, xx):
    h, w = rng.uniform(34, 78, size=2)
    cy, cx = rng.uniform(10, size - 10, size=2)
    a = rng.uniform(0, np.pi)
    ca, sa = np.cos(a), np.sin(a)
    u, v = (xx - cx) * ca + (yy - cy) * sa, -(xx - cx) * sa + (yy - cy) * ca
    return (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)


def _triangle_mask(rng, size, yy, xx):
    c = rng.uniform(16, size - 16, size=2)
    r = rng.uniform(28, 50)
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-.35, .35, 3)
    pts = np.stack([c[0] + r * np.cos(angles), c[1] + r * np.sin(angles)], axis=1)
    return _poly_mask(size, pts)


def _ellipse_mask(rng, size, yy, xx):
    a, b = rng.uniform(36, 56), rng.uniform(14, 24)
    cy, cx = rng.uniform(10, size - 10, size=2)
    t = rng.uniform(0, np.pi)
    ct, st = np.cos(t), np.sin(t)
    u, v = (xx - cx) * ct + (yy - cy) * st, -(xx - cx) * st + (yy - cy) * ct
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _texture(rng, label, size, yy, xx) -> np.ndarray:
    """The fill of one object (H, W, 3) float; only the pixels under its mask are used."""
    c1 = _colour(rng)
    if label == DISK:
        return c1 + rng.normal(0, 14, size=(size, size, 3))
    c2 = _second_colour(rng, c1)
    if label == RECT:
        cell = rng.uniform(6, 10)
        oy, ox = rng.uniform(0, cell, size=2)
        on = ((np.floor((yy + oy) / cell) + np.floor((xx + ox) / cell)) % 2).astype(bool)
    elif label == STRIPES:
        period = rng.uniform(5, 9)
        a = rng.uniform(0, np.pi)
        on = ((xx * np.cos(a) + yy * np.sin(a)) / period % 1.0) < 0.5
    elif label == TRI:
        # camouflage: two-colour blobs from thresholded mid-frequency noise (not periodic, unlike the others)
        grid = int(rng.integers(12, 20))
        noise = cv2.resize(rng.standard_normal((grid, grid)).astype(np.float32), (size, size),
                           interpolation=cv2.INTER_CUBIC)
        on = noise > 0
    else:
        raise ValueError(label)
    return np.where(on[..., None], c1, c2)


_SHAPES = {DISK: _disk_mask, RECT: _rect_mask, TRI: _triangle_mask, STRIPES: _ellipse_mask}


def render_sample(rng: np.random.Generator, size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """One scene: (RGB uint8 image (size, size, 3), uint8 annotation (size, size) with values 0..5)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = _background(rng, size)
    ann = np.full((size, size), BG, np.uint8)
    n = int(rng.integers(2, 5))
    # 2-4 distinct object classes per scene, each class about equally often.
    labels = rng.choice([DISK, RECT, TRI, STRIPES], size=n, replace=False)
    for label in labels:
        mask = _SHAPES[int(label)](rng, size, yy, xx)
        if mask.sum() < 30:
            continue
        tex = _texture(rng, int(label), size, yy, xx)
        img[mask] = tex[mask]
        ann[mask] = label
    # Clutter labelled 0 ("other", ignored), like ADE20K's unlabelled stuff.
    for _ in range(int(rng.integers(0, 3))):
        pts = rng.uniform(0, size, size=2) + rng.uniform(-24, 24, size=(int(rng.integers(2, 5)), 2))
        clutter = np.zeros((size, size), np.uint8)
        cv2.polylines(clutter, [np.round(pts).astype(np.int32)], False, 1, thickness=2)
        m = clutter.astype(bool)
        img[m] = _colour(rng)
        ann[m] = IGNORE_LABEL
    return np.clip(np.round(img), 0, 255).astype(np.uint8), ann


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_ID[split], int(index)])


# ----------------------------------------------------------------------------- files
def sample_paths(root: str, split: str, index: int) -> Tuple[str, str]:
    name = f'DEMO_{SPLITS[split]}_{index:08d}'
    return (osp.join(root, 'images', split, name + '.jpg'), osp.join(root, 'annotations', split, name + '.png'))


def _encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == 'JPEG':
        Image.fromarray(img, 'RGB').save(buf, 'JPEG', quality=95, subsampling=0)
    else:
        Image.fromarray(img, 'L').save(buf, 'PNG')
    return buf.getvalue()


def _write_new(path: str, data: bytes) -> None:
    with open(path, 'xb') as f:  # 'x': fail rather than overwrite
        f.write(data)


@register_demo_data('ade20k', version=VERSION)
def make_ade20k(out_dir: str, *, num_train: int = 300, num_val: int = 50, seed: int = 0) -> dict:
    """Write ``num_train`` + ``num_val`` scenes under ``out_dir``; returns the metadata the demo needs."""
    counts = {'training': num_train, 'validation': num_val}
    pixel_counts = {split: [0] * (len(CLASSES) + 1) for split in counts}
    for split, n in counts.items():
        os.makedirs(osp.join(out_dir, 'images', split), exist_ok=True)
        os.makedirs(osp.join(out_dir, 'annotations', split), exist_ok=True)
        for i in range(n):
            img, ann = render_sample(sample_rng(seed, split, i), SIZE)
            img_path, ann_path = sample_paths(out_dir, split, i)
            _write_new(img_path, _encode(img, 'JPEG'))
            _write_new(ann_path, _encode(ann, 'PNG'))
            for v, c in zip(*np.unique(ann, return_counts=True)):
                pixel_counts[split][int(v)] += int(c)
    return dict(size=SIZE, classes=list(CLASSES), palette=PALETTE, ignore_label=IGNORE_LABEL,
                reduce_zero_label=True,
                # pixels per stored label value 0..K (index 0 = ignored "other")
                pixel_counts=pixel_counts)


__all__: Sequence[str] = ('CLASSES', 'PALETTE', 'IGNORE_LABEL', 'SIZE', 'render_sample', 'sample_rng',
                          'sample_paths', 'make_ade20k')
