"""The COCO demo dataset: small, deterministic instance-segmentation scenes in the COCO 2017 layout.

``make_demo_data('coco', root)`` (or ``tools/misc/make_demo_data.py coco ROOT``) writes::

    <root>/annotations/instances_train2017.json
    <root>/annotations/instances_val2017.json
    <root>/train2017/000000000001.jpg       RGB, JPEG quality 95, named by image id as in COCO
    <root>/val2017/000001000001.jpg
    <root>/mmevit_demo.json                 marker (written last, see ``demo_data``)

so that mmdet's COCO configs train on it and evaluate it by changing ``data_root`` alone (give
``metainfo=dict(classes=CLASSES)`` and ``num_classes=4`` as well for the right class names and heads: with
COCO's 80 names the four categories become labels 0-3 of the 80). The json files are COCO's format:
``info``, ``licenses``, ``images`` (id, file_name, width, height), ``annotations`` (id, image_id,
category_id, ``bbox`` [x, y, w, h], ``area``, ``iscrowd`` = 0, ``segmentation`` as a list of polygons) and
``categories`` with COCO's own ids, names and supercategories (a four-class subset, so ids are neither
contiguous nor 0-based, and label i of a model is the i-th category by id, as mmdet's ``CocoDataset`` maps them).

Scenes (128 x 128 px): a textured background with faint clutter lines (not annotated), and 2-5 objects of any
class (repeats allowed) whose sizes vary about fourfold. Colours are drawn from one distribution for every
class, so a detector must use shape and texture:

==========  ===========  ===============================================  ================================
id          name         shape                                            texture
==========  ===========  ===============================================  ================================
37          sports ball  disk (radius 8-30 px)                            flat colour, fine speckle
38          kite         deltoid, rotated (long diagonal 24-70 px)        two-colour camouflage blobs
42          surfboard    ellipse, rotated, aspect 2.5-4 (length 36-100)   stripes of two colours, any angle
84          book         rectangle, rotated, aspect 1.2-1.6 (20-64 px)    checkerboard of two colours
==========  ===========  ===============================================  ================================

Objects may overlap and be cut by the image border; later objects occlude earlier ones. Annotations
describe what is visible: ``area`` is the object's visible pixel count, ``bbox`` the box of those pixels,
and the polygons trace them to within a quarter pixel (an occluded object may have several). Placements
that would hide more than half of an earlier object, cut it into slivers or punch a hole in it (COCO polygons
cannot hold holes) are redrawn.

Every image is drawn from its own generator seeded with ``(seed, split, index)``: a given seed always gives
byte-identical files, and a smaller dataset is a prefix of a larger one. Needs numpy, OpenCV and Pillow.
"""
import io
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from .demo_data import register_demo_data

CATEGORIES: Tuple[dict, ...] = (
    dict(id=37, name='sports ball', supercategory='sports'),
    dict(id=38, name='kite', supercategory='sports'),
    dict(id=42, name='surfboard', supercategory='sports'),
    dict(id=84, name='book', supercategory='indoor'),
)
# In category-id order: mmdet's CocoDataset numbers the labels in the json's category order.
CLASSES: Tuple[str, ...] = tuple(c['name'] for c in CATEGORIES)
PALETTE: List[Tuple[int, int, int]] = [(230, 25, 75), (255, 225, 25), (0, 130, 200), (60, 180, 75)]
SIZE = 128                # image side (px)
VERSION = 1               # bump when the files written change
SPLITS = ('train2017', 'val2017')
_SPLIT_ID = {'train2017': 0, 'val2017': 1}
_FIRST_IMAGE_ID = {'train2017': 1, 'val2017': 1_000_001}
MIN_VISIBLE_FRACTION = 0.5   # of an object's own area
MIN_AREA = 40                # px, smallest visible object
MIN_PART = 12                # px, smallest visible part of an occluded object
_UPSAMPLE = 4                # polygons are traced on a 4x upsampled mask
_PLACEMENT_TRIES = 25

BALL, KITE, SURFBOARD, BOOK = (c['id'] for c in CATEGORIES)


# ----------------------------------------------------------------------------- shapes (polygon vertices)
def _rotate(pts: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + centre


def _shape(rng: np.random.Generator, cat: int, size: int) -> np.ndarray:
    """Vertices (K, 2) as (x, y) of one object of category ``cat``, centred somewhere in the image."""
    centre = rng.uniform(0.12 * size, 0.88 * size, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    if cat == BALL:
        r = rng.uniform(8, 30)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1) + centre
    if cat == KITE:  # a deltoid: short upper half, long lower half
        length = rng.uniform(24, 70)
        top, width = length * rng.uniform(0.28, 0.4), length * rng.uniform(0.3, 0.4)
        pts = np.array([[0, -top], [width, 0], [0, length - top], [-width, 0]])
        return _rotate(pts, angle, centre)
    if cat == SURFBOARD:
        length = rng.uniform(36, 100)
        a, b = length / 2, length / 2 / rng.uniform(2.5, 4)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return _rotate(np.stack([a * np.cos(t), b * np.sin(t)], 1), angle, centre)
    if cat == BOOK:
        h = rng.uniform(20, 64)
        w = h / rng.uniform(1.2, 1.6)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return _rotate(pts, angle, centre)
    raise ValueError(f'unknown category id {cat}')


def _fill(pts: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside the polygon (sub-pixel vertices)."""
    m = np.zeros((size, size), np.uint8)
    shift = 4  # cv2 fixed-point: 1/16 px; (x - 0.5) maps pixel centres (x + 0.5) onto cv2's integer grid
    cv2.fillPoly(m, [np.round((pts - 0.5) * (1 << shift)).astype(np.int32)], 1, lineType=cv2.LINE_8,
                 shift=shift)
    return m.astype(bool)


# ----------------------------------------------------------------------------- textures
def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, size=3)


def _contrast_colour(rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
    """A colour clearly different from ``c`` (for two-tone textures)."""
    d = rng.uniform(70, 130, size=3) * rng.choice([-1., 1.], size=3)
    return np.clip(np.where((c + d < 0) | (c + d > 255), c - d, c + d), 0, 255)


def _smooth_noise(rng: np.random.Generator, grid: int, size: int, channels: int = 1) -> np.ndarray:
    noise = rng.standard_normal((grid, grid, channels)).astype(np.float32)
    out = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return out.reshape(size, size, channels)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency colour variation with a fine grain, and 0-2 thin clutter lines (not objects)."""
    img = _colour(rng) + 35 * _smooth_noise(rng, int(rng.integers(3, 7)), size, 3)
    img += rng.normal(0, 6, size=(size, size, 3))
    for _ in range(int(rng.integers(0, 3))):
        pts = rng.uniform(0, size, size=2) + rng.uniform(-30, 30, size=(int(rng.integers(2, 5)), 2))
        line = np.zeros((size, size), np.uint8)
        cv2.polylines(line, [np.round(pts).astype(np.int32)], False, 1, thickness=1)
        img[line.astype(bool)] = _colour(rng)
    return img


def _texture(rng: np.random.Generator, cat: int, size: int) -> np.ndarray:
    """The fill of one object (size, size, 3) float; only the pixels under its mask are used."""
    c1 = _colour(rng)
    if cat == BALL:
        return c1 + rng.normal(0, 14, size=(size, size, 3))
    c2 = _contrast_colour(rng, c1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if cat == KITE:
        on = _smooth_noise(rng, int(rng.integers(14, 22)), size)[..., 0] > 0
    elif cat == SURFBOARD:
        period, a = rng.uniform(5, 9), rng.uniform(0, np.pi)
        on = ((xx * np.cos(a) + yy * np.sin(a)) / period % 1.0) < 0.5
    elif cat == BOOK:
        cell = rng.uniform(5, 9)
        oy, ox = rng.uniform(0, cell, size=2)
        on = ((np.floor((yy + oy) / cell) + np.floor((xx + ox) / cell)) % 2).astype(bool)
    else:
        raise ValueError(f'unknown category id {cat}')
    return np.where(on[..., None], c1, c2)


# ----------------------------------------------------------------------------- annotations
def _has_hole_or_sliver(mask: np.ndarray) -> bool:
    m = mask.astype(np.uint8)
    _, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is not None and (hierarchy[0][:, 3] >= 0).any():
        return True
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    return bool((stats[1:n, cv2.CC_STAT_AREA] < MIN_PART).any())


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` tracing the outline of a hole-free mask.

    The outline is traced on a 4x nearest-upsampled mask and mapped back through sub-pixel centres, so it
    runs within 1/8 px inside the pixel edges (COCO's frame: pixel (x, y) covers [x, x+1) x [y, y+1)).
    """
    up = cv2.resize(mask.astype(np.uint8), None, fx=_UPSAMPLE, fy=_UPSAMPLE, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for c in contours:
        c = cv2.approxPolyDP(c, epsilon=1.0, closed=True).reshape(-1, 2)
        if len(c) >= 3:
            pts = (c.astype(np.float64) + 0.5) / _UPSAMPLE
            polygons.append([round(float(v), 3) for v in pts.reshape(-1)])
    return polygons


def render_scene(rng: np.random.Generator, size: int = SIZE) -> Tuple[np.ndarray, List[dict]]:
    """One scene: an RGB uint8 image and its objects as ``dict(category_id, mask)`` (visible pixels)."""
    img = _background(rng, size)
    objects: List[dict] = []
    for cat in rng.choice([c['id'] for c in CATEGORIES], size=int(rng.integers(2, 6))):
        cat = int(cat)
        for _ in range(_PLACEMENT_TRIES):
            full = _fill(_shape(rng, cat, size), size)
            if full.sum() < MIN_AREA:
                continue
            # What the earlier objects would keep visible: enough of each, in no slivers, with no holes.
            kept = [o['mask'] & ~full for o in objects]
            if all(k.sum() >= max(MIN_AREA, MIN_VISIBLE_FRACTION * o['full_area']) and not _has_hole_or_sliver(k)
                   for o, k in zip(objects, kept)):
                break
        else:
            continue  # no placement fits: draw one object fewer
        for o, k in zip(objects, kept):
            o['mask'] = k
        tex = _texture(rng, cat, size)
        img[full] = tex[full]
        objects.append(dict(category_id=cat, mask=full, full_area=int(full.sum())))
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return image, [dict(category_id=o['category_id'], mask=o['mask']) for o in objects]


def annotate(obj: dict, ann_id: int, image_id: int) -> dict:
    """A COCO annotation of one object's visible mask."""
    ys, xs = np.nonzero(obj['mask'])
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return dict(id=ann_id, image_id=image_id, category_id=obj['category_id'],
                segmentation=mask_to_polygons(obj['mask']), area=float(len(xs)),
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)], iscrowd=0)


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_ID[split], int(index)])


# ----------------------------------------------------------------------------- files
def _write_new(path: str, data: bytes) -> None:
    with open(path, 'xb') as f:  # 'x': fail rather than overwrite
        f.write(data)


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, 'RGB').save(buf, 'JPEG', quality=95, subsampling=0)
    return buf.getvalue()


def make_split(out_dir: str, split: str, num: int, seed: int) -> dict:
    """Write the images of one split and return its COCO json dict (not written)."""
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        image_id = _FIRST_IMAGE_ID[split] + i
        img, objects = render_scene(sample_rng(seed, split, i))
        file_name = f'{image_id:012d}.jpg'
        _write_new(osp.join(out_dir, split, file_name), _jpeg(img))
        images.append(dict(id=image_id, file_name=file_name, width=img.shape[1], height=img.shape[0],
                           license=1, date_captured='2017-01-01 00:00:00'))
        for obj in objects:
            annotations.append(annotate(obj, len(annotations) + 1, image_id))
    return dict(
        info=dict(description=f'mmevit COCO-layout demo data ({split}): drawn shapes, seed {seed}',
                  version=str(VERSION), year=2017, contributor='mmevit', date_created='2017-01-01'),
        licenses=[dict(id=1, name='CC0 1.0 (generated data)', url='')],
        images=images, annotations=annotations, categories=[dict(c) for c in CATEGORIES])


@register_demo_data('coco', version=VERSION)
def make_coco(out_dir: str, *, num_train: int = 40, num_val: int = 10, seed: int = 0) -> dict:
    """Write ``num_train`` + ``num_val`` scenes under ``out_dir``; returns the metadata the configs need."""
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    instances: Dict[str, Dict[str, int]] = {}
    for split, num in zip(SPLITS, (num_train, num_val)):
        coco = make_split(out_dir, split, num, seed)
        _write_new(osp.join(out_dir, 'annotations', f'instances_{split}.json'), json.dumps(coco).encode())
        counts = {name: 0 for name in CLASSES}
        for ann in coco['annotations']:
            counts[CLASSES[[c['id'] for c in CATEGORIES].index(ann['category_id'])]] += 1
        instances[split] = counts
    return dict(size=SIZE, classes=list(CLASSES), category_ids=[c['id'] for c in CATEGORIES],
                palette=[list(p) for p in PALETTE], instances=instances)


__all__: Sequence[str] = ('CATEGORIES', 'CLASSES', 'PALETTE', 'SIZE', 'render_scene', 'annotate',
                          'mask_to_polygons', 'sample_rng', 'make_split', 'make_coco')
