#!/usr/bin/env python
"""Denoise an image (or every image of a folder), or a video, with a restoration config and checkpoint.

    python tools/denoise.py CONFIG CHECKPOINT INPUT [--out-dir DIR] [--gt GT] [--tile N] [--device cpu] [--compile]
    python tools/denoise.py VIDEO_CONFIG CHECKPOINT FRAMES_DIR|VIDEO_FILE [--add-noise SIGMA] [--gt GT] ...

CHECKPOINT: an mmevit training checkpoint of CONFIG, or official network weights (e.g. the official Uformer-B
SIDD ``model_best.pth`` for ``configs/sidd/uformer_b.py``), converted on the fly and checked strictly. For each
image, OUT-DIR (default ``denoised/``) gets ``<name>.png`` (the result) and ``<name>_compare.png`` (input |
result, and | reference with ``--gt``). ``--gt``: the clean reference image (a folder for a folder INPUT, same
file names): PSNR/SSIM of the input and of the result are printed (``mmevit.evaluation`` definitions: 8-bit
RGB). ``--tile N``: restore large images in N x N tiles (overlapping by 32 pixels) to bound memory.
``--compile``: the network runs compiled with frozen weights (``mmevit.engine.compile_for_inference``, as
``tools/test.py --compile``): the first image (and each new image size) pays the compilation.

Video models (``VideoDenoiser`` configs, e.g. configs/davis/*.py) take a folder of frames (sorted by name) or a
video file (``.mp4``, ``.avi``, ... read with OpenCV) and restore the whole sequence in the config's temporal
sliding windows. OUT-DIR gets the denoised frames (``<frame>.png``, or ``<video>_<index>.png``) and
``<sequence>_compare.png``: up to ``--strip-frames`` evenly spaced frames, noisy on top, denoised below (and the
reference below that). ``--add-noise SIGMA``: INPUT is clean; Gaussian noise of SIGMA (0-255 scale, from
``--seed``) is added first, as the DAVIS/Set8 evaluation does, and PSNR/SSIM are measured against INPUT.
``--gt``: clean frames (folder, same names, or a video file). PSNR/SSIM of a sequence: the mean over its frames.
"""
import argparse
import contextlib
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='restoration config (e.g. configs/sidd/uformer_b.py)')
    p.add_argument('checkpoint', help='mmevit or official checkpoint of the config\'s network')
    p.add_argument('input', help='image file or folder of images')
    p.add_argument('--out-dir', default='denoised', help='where results are written (created if missing)')
    p.add_argument('--gt', help='clean reference image (or folder, same file names) for PSNR/SSIM')
    p.add_argument('--tile', type=int, help='restore in tiles of this size (overrides the config\'s test_cfg)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--add-noise', type=float, metavar='SIGMA',
                   help='video models: INPUT is clean; add Gaussian noise of SIGMA (0-255) and score against it')
    p.add_argument('--seed', type=int, default=0, help='seed of --add-noise')
    p.add_argument('--strip-frames', type=int, default=4, help='video models: frames in the before/after strip')
    p.add_argument('--compile', action='store_true',
                   help='compile the network with frozen weights (torch.compile, inductor) before restoring')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='fully unpickle the checkpoint (arbitrary code execution: only for files you trust)')
    return p.parse_args(argv)


def list_images(path: str) -> List[str]:
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'input not found: {path}')
    files = sorted(osp.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMG_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMG_EXTENSIONS)}) in {path}')
    return files


def reference_for(image: str, gt: Optional[str], folder_input: bool) -> Optional[str]:
    if gt is None:
        return None
    ref = osp.join(gt, osp.basename(image)) if folder_input else gt
    if not osp.isfile(ref):
        raise FileNotFoundError(f'reference for {image} not found: {ref}')
    return ref


def build_model(config: str, checkpoint: str, device: str, tile: Optional[int]) -> torch.nn.Module:
    import mmevit  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmevit.engine.convert import convert_file_for_model
    from mmevit.registry import MODELS
    cfg = Config.fromfile(config)
    if tile is not None:
        cfg.model.setdefault('test_cfg', {})['tile'] = tile
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmevit')):
        model = MODELS.build(cfg.model)
    if not hasattr(model, 'restore'):
        raise TypeError(f'{config}: {type(model).__name__} is not a restoration model (no restore())')
    state, _ = convert_file_for_model(checkpoint, model)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def denoise(model: torch.nn.Module, image: np.ndarray, device: str) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> uint8 RGB."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255.)[None].to(device)
    with torch.no_grad():
        y = model.restore(x).clamp(0, 1)
    return (y[0].permute(1, 2, 0).cpu().numpy() * 255.).round().astype(np.uint8)


def is_video_model(model: torch.nn.Module) -> bool:
    from mmevit.models.denoisers.uniformer_denoiser import VideoDenoiser
    return isinstance(model, VideoDenoiser)


def read_frames(path: str) -> Tuple[List[str], np.ndarray]:
    """Frame names and uint8 RGB frames (T, H, W, 3) of a frame folder or a video file."""
    import cv2
    import mmcv
    if osp.isdir(path):
        files = list_images(path)
        frames = [mmcv.imread(f, channel_order='rgb') for f in files]
        names = [osp.splitext(osp.basename(f))[0] for f in files]
    elif osp.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS):
        cap = cv2.VideoCapture(path)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        cap.release()
        if not frames:
            raise ValueError(f'cannot read any frame from {path} (codec not supported by OpenCV?)')
        stem = osp.splitext(osp.basename(path))[0]
        names = [f'{stem}_{i:05d}' for i in range(len(frames))]
    else:
        raise FileNotFoundError(f'video models take a folder of frames or a video file '
                                f'({", ".join(VIDEO_EXTENSIONS)}), got {path}')
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f'{path}: frames differ in size {sorted({f.shape for f in frames})}')
    return names, np.stack(frames)


def denoise_video(model: torch.nn.Module, noisy: np.ndarray, device: str) -> np.ndarray:
    """(T, H, W, 3) frames in 0-255 (uint8, or float for synthetic noise) -> uint8 (T, H, W, 3)."""
    x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(0, 3, 1, 2))).float().div(255.)[None].to(device)
    with torch.no_grad():
        y = model.restore(x).clamp(0, 1)
    return (y[0].permute(0, 2, 3, 1).cpu().numpy() * 255.).round().astype(np.uint8)


def video_strip(rows: List[np.ndarray], count: int) -> np.ndarray:
    """Up to ``count`` evenly spaced frames of each (T, H, W, 3) sequence side by side, one row per sequence."""
    T = rows[0].shape[0]
    idx = np.unique(np.linspace(0, T - 1, min(max(count, 1), T)).round().astype(int))
    return np.concatenate([np.concatenate(list(r[idx]), axis=1) for r in rows], axis=0)


def main_video(args: argparse.Namespace, model: torch.nn.Module) -> Dict[str, dict]:
    import mmcv
    from mmevit.evaluation import psnr, ssim
    names, frames = read_frames(args.input)
    ref = None
    if args.add_noise is not None:
        if args.gt is not None:
            raise ValueError('--add-noise scores against INPUT itself: do not pass --gt')
        ref = frames
        rng = np.random.default_rng(args.seed)
        noisy = frames.astype(np.float32) + (rng.standard_normal(frames.shape) * args.add_noise).astype(np.float32)
    else:
        noisy = frames
        if args.gt is not None:
            ref = read_frames(args.gt)[1]
            if ref.shape != frames.shape:
                raise ValueError(f'--gt {args.gt} {ref.shape} and {args.input} {frames.shape} differ in shape')
    restored = denoise_video(model, noisy, args.device)
    shown = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    for name, frame in zip(names, restored):
        mmcv.imwrite(mmcv.rgb2bgr(frame), osp.join(args.out_dir, name + '.png'))
    seq = osp.splitext(osp.basename(osp.normpath(args.input)))[0]
    strip = video_strip([shown, restored] + ([ref] if ref is not None else []), args.strip_frames)
    info = dict(frames=len(names), output=args.out_dir, compare=osp.join(args.out_dir, seq + '_compare.png'))
    mmcv.imwrite(mmcv.rgb2bgr(strip), info['compare'])
    line = f'{args.input}: {len(names)} frames of {frames.shape[2]}x{frames.shape[1]}'
    if ref is not None:
        info.update(psnr_in=float(np.mean([psnr(n, r) for n, r in zip(noisy, ref)])),
                    psnr_out=float(np.mean([psnr(o, r) for o, r in zip(restored, ref)])),
                    ssim_in=float(np.mean([ssim(n, r) for n, r in zip(noisy, ref)])),
                    ssim_out=float(np.mean([ssim(o, r) for o, r in zip(restored, ref)])))
        line += (f'  PSNR {info["psnr_in"]:.2f} -> {info["psnr_out"]:.2f} dB  '
                 f'SSIM {info["ssim_in"]:.4f} -> {info["ssim_out"]:.4f}')
    print(line)
    return {args.input: info}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    import mmcv
    from mmevit import compat
    from mmevit.evaluation import psnr, ssim
    trust = compat.trust_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust:
        model = build_model(args.config, args.checkpoint, args.device, args.tile)
    if args.compile:
        from mmevit.engine.inference_compile import compile_networks
        compile_networks(model)
    os.makedirs(args.out_dir, exist_ok=True)
    if is_video_model(model):
        return main_video(args, model)
    if args.add_noise is not None:
        raise ValueError('--add-noise is for video models')
    images = list_images(args.input)
    folder_input = osp.isdir(args.input)
    if args.gt is not None and folder_input != osp.isdir(args.gt):
        raise ValueError('--gt must be a folder when INPUT is a folder, and a file when it is a file')
    results = {}
    for path in images:
        noisy = mmcv.imread(path, channel_order='rgb')
        restored = denoise(model, noisy, args.device)
        stem = osp.splitext(osp.basename(path))[0]
        panels = [noisy, restored]
        ref_path = reference_for(path, args.gt, folder_input)
        line = f'{path}: {restored.shape[1]}x{restored.shape[0]}'
        info = dict(output=osp.join(args.out_dir, stem + '.png'))
        if ref_path:
            ref = mmcv.imread(ref_path, channel_order='rgb')
            if ref.shape != noisy.shape:
                raise ValueError(f'{ref_path} {ref.shape} and {path} {noisy.shape} differ in size')
            panels.append(ref)
            info.update(psnr_in=psnr(noisy, ref), psnr_out=psnr(restored, ref),
                        ssim_in=ssim(noisy, ref), ssim_out=ssim(restored, ref))
            line += (f'  PSNR {info["psnr_in"]:.2f} -> {info["psnr_out"]:.2f} dB  '
                     f'SSIM {info["ssim_in"]:.4f} -> {info["ssim_out"]:.4f}')
        mmcv.imwrite(mmcv.rgb2bgr(restored), info['output'])
        mmcv.imwrite(mmcv.rgb2bgr(np.concatenate(panels, axis=1)), osp.join(args.out_dir, stem + '_compare.png'))
        print(line)
        results[path] = info
    if args.gt and len(results) > 1:
        mean = {k: float(np.mean([r[k] for r in results.values()])) for k in ('psnr_in', 'psnr_out', 'ssim_in',
                                                                              'ssim_out')}
        print(f'mean over {len(results)} images: PSNR {mean["psnr_in"]:.2f} -> {mean["psnr_out"]:.2f} dB  '
              f'SSIM {mean["ssim_in"]:.4f} -> {mean["ssim_out"]:.4f}')
    return results


if __name__ == '__main__':
    main()
