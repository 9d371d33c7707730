#!/usr/bin/env python
"""Cut SIDD-Medium sRGB image pairs into the training patch pairs of the Uformer recipe.

    python tools/dataset_converters/sidd_crops.py SIDD_Medium_Srgb/Data data/sidd/train \
        [--patch-size 256] [--num-patches 300] [--seed 0] [--nproc 4]

SRC holds one folder per scene with ``NOISY_SRGB_<n>.PNG`` and ``GT_SRGB_<n>.PNG`` (SIDD-Medium: 160 scenes, 320
pairs). As the official ``generate_patches_SIDD.py`` does, every pair gives ``--num-patches`` random
``--patch-size`` crops at the same place in both images, written losslessly as ``<pair>_<patch>.png`` (1-based,
pairs in sorted order) into OUT/input (noisy) and OUT/groundtruth (clean): 96,000 pairs with the defaults, the
layout ``PairedImageDataset`` reads. Crops are drawn from ``--seed`` and the pair index, so the output does not
depend on ``--nproc``. OUT must be new or empty (the official script deletes it; this one refuses).
"""
import argparse
import glob
import os
import os.path as osp
import sys
from multiprocessing import Pool
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np


def find_pairs(src: str) -> List[Tuple[str, str]]:
    """(noisy, clean) paths: every ``*NOISY*`` image under ``src/<scene>/`` with its ``GT`` counterpart."""
    noisy = sorted(p for p in glob.glob(osp.join(src, '*', '*')) if 'NOISY' in osp.basename(p)
                   and p.lower().endswith('.png'))
    if not noisy:
        raise FileNotFoundError(f'no <scene>/*NOISY*.PNG images under {src} (expected SIDD_Medium_Srgb/Data)')
    pairs = []
    for path in noisy:
        clean = osp.join(osp.dirname(path), osp.basename(path).replace('NOISY', 'GT'))
        if not osp.isfile(clean):
            raise FileNotFoundError(f'{path} has no ground truth {clean}')
        pairs.append((path, clean))
    return pairs


def crop_pair(job: Tuple[int, str, str, str, int, int, int]) -> int:
    index, noisy_path, clean_path, out, size, count, seed = job
    noisy, clean = cv2.imread(noisy_path, cv2.IMREAD_COLOR), cv2.imread(clean_path, cv2.IMREAD_COLOR)
    if noisy is None or clean is None:
        raise OSError(f'cannot read {noisy_path if noisy is None else clean_path}')
    if noisy.shape != clean.shape:
        raise ValueError(f'{noisy_path} {noisy.shape} and {clean_path} {clean.shape} differ in size')
    H, W = noisy.shape[:2]
    if H < size or W < size:
        raise ValueError(f'{noisy_path} ({H}x{W}) is smaller than the patch size {size}')
    rng = np.random.default_rng([seed, index])
    for j in range(count):
        top, left = int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))
        name = f'{index + 1}_{j + 1}.png'
        for sub, img in (('input', noisy), ('groundtruth', clean)):
            if not cv2.imwrite(osp.join(out, sub, name), img[top:top + size, left:left + size]):
                raise OSError(f'cannot write {osp.join(out, sub, name)}')
    return count


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='SIDD_Medium_Srgb/Data (one folder per scene)')
    p.add_argument('out', help='new or empty output folder (gets input/ and groundtruth/)')
    p.add_argument('--patch-size', type=int, default=256)
    p.add_argument('--num-patches', type=int, default=300, help='patches per image pair')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = p.parse_args(argv)
    for name in ('patch_size', 'num_patches', 'nproc'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if osp.exists(args.out) and (not osp.isdir(args.out) or os.listdir(args.out)):
        print(f'sidd_crops: {args.out} exists and is not an empty folder: refusing to write into it', file=sys.stderr)
        return 1
    try:
        pairs = find_pairs(args.src)
    except FileNotFoundError as e:
        print(f'sidd_crops: {e}', file=sys.stderr)
        return 1
    for sub in ('input', 'groundtruth'):
        os.makedirs(osp.join(args.out, sub), exist_ok=True)
    jobs = [(i, n, c, args.out, args.patch_size, args.num_patches, args.seed) for i, (n, c) in enumerate(pairs)]
    if args.nproc > 1:
        with Pool(args.nproc) as pool:
            total = sum(pool.imap_unordered(crop_pair, jobs))
    else:
        total = sum(map(crop_pair, jobs))
    print(f'sidd_crops: {total} patch pairs of {args.patch_size}x{args.patch_size} from {len(pairs)} image pairs '
          f'in {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
