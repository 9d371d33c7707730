"""Demo data in the DAVIS-2017 layout (``mmevit.datasets.davis``): clean video sequences made by moving a virtual
camera over real photographs shipped with scikit-image, so that frames have real texture and real motion.

Each sequence pans (a constant velocity of 0.5-2.5 pixels per frame in a random direction) and zooms (the
scale changes by up to +-1.5 % per frame) over one photograph, rendered by ``cv2.warpAffine`` with bilinear
interpolation into 96 x 128 frames, saved as JPEG (quality 95, like DAVIS' frames). Noise is not stored: it
is added on the fly (training) or from a seed (testing) by ``AddGaussianNoise``.

Layout (``out_dir``):
    JPEGImages/480p/<sequence>/<00000..>.jpg    ``num_train`` training sequences (16 frames each) from the
                                                training photos, ``num_val`` held-out ones (10 frames) from
                                                *other* photos
    ImageSets/2017/train.txt, val.txt           the sequence names of each split
"""
import os
import os.path as osp

import cv2
import numpy as np

from .demo_data import register_demo_data

TRAIN_PHOTOS = ('astronaut', 'rocket', 'immunohistochemistry', 'hubble_deep_field', 'retina')
VAL_PHOTOS = ('chelsea', 'coffee')
FRAME_HW = (96, 128)
TRAIN_FRAMES, VAL_FRAMES = 16, 10


def load_photo(name: str) -> np.ndarray:
    from skimage import data
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3])


def render_sequence(photo: np.ndarray, rng: np.random.Generator, num_frames: int, hw=FRAME_HW) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a camera panning and zooming over ``photo``."""
    H, W = hw
    PH, PW = photo.shape[:2]
    scale0 = rng.uniform(0.6, 1.0)  # output pixels per photo pixel
    zoom = rng.uniform(-0.015, 0.015)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.5, 2.5)
    scales = scale0 * (1 + zoom) ** np.arange(num_frames)
    # the view (H / s x W / s photo pixels) must stay inside the photo at every frame
    half = np.array([H, W]) / scales.min() / 2 + 1
    path = np.arange(num_frames)[:, None] * speed * np.array([np.sin(angle), np.cos(angle)])
    lo, hi = half - path.min(0), np.array([PH, PW]) - half - path.max(0)
    if np.any(hi < lo):
        raise ValueError(f'photo {PH}x{PW} is too small for {num_frames} frames of {H}x{W}')
    start = rng.uniform(lo, hi)
    frames = []
    for t in range(num_frames):
        cy, cx = start + path[t]
        s = scales[t]
        M = np.array([[s, 0, W / 2 - s * cx], [0, s, H / 2 - s * cy]], np.float64)
        frames.append(cv2.warpAffine(photo, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


@register_demo_data('davis')
def make_demo_davis(out_dir: str, num_train: int = 12, num_val: int = 4, seed: int = 0) -> dict:
    """Write the demo DAVIS data into the empty folder ``out_dir`` (module docstring); returns its metadata."""
    rng = np.random.default_rng(seed)
    frames_root = osp.join(out_dir, 'JPEGImages', '480p')
    os.makedirs(osp.join(out_dir, 'ImageSets', '2017'))
    splits = {}
    for split, photos, count, length in (('train', TRAIN_PHOTOS, num_train, TRAIN_FRAMES),
                                         ('val', VAL_PHOTOS, num_val, VAL_FRAMES)):
        images = [load_photo(p) for p in photos]
        names = []
        for i in range(count):
            k = i % len(photos)
            name = f'{split}_{photos[k]}_{i:03d}'
            os.makedirs(osp.join(frames_root, name))
            for t, frame in enumerate(render_sequence(images[k], rng, length)):
                cv2.imwrite(osp.join(frames_root, name, f'{t:05d}.jpg'), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            names.append(name)
        with open(osp.join(out_dir, 'ImageSets', '2017', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')
        splits[split] = names
    return dict(train_photos=list(TRAIN_PHOTOS), val_photos=list(VAL_PHOTOS), frame_size=list(FRAME_HW),
                frames=dict(train=TRAIN_FRAMES, val=VAL_FRAMES), sequences=splits)
