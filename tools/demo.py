#!/usr/bin/env python
"""README command 1: train SkipAt-T + UperNet from scratch on the bundled demo dataset, on CPU, in minutes.

Steps:
1. Generate the demo dataset (``mmevit/datasets/demo_ade.py``, ADE20K layout) into ``--data-root`` unless a
   complete one is already there. Nothing existing is overwritten: a non-empty ``--data-root`` that is not a
   demo dataset is refused.
2. Train ``configs/demo/skipat_t_upernet_demo.py`` with mmengine's Runner; mmseg's IoUMetric scores the
   held-out validation split at the end of training.
3. Score the majority-class baseline (the most frequent training class predicted everywhere) on the same
   split with the same IoU definition (mmseg's ``IoUMetric`` arithmetic).
4. Save a few prediction panels (image | ground truth | prediction) and ``summary.json`` in the run's log dir
   (``<work-dir>/<timestamp>/``), print a summary, and exit 1 if mIoU < ``--min-miou`` (0.5) or
   mIoU < ``--min-ratio`` (2) x the baseline's mIoU.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

# Must be set before torch (libgomp) loads: spinning OpenMP threads collapse on a shared CPU (see run_demo.sh).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo', 'skipat_t_upernet_demo.py')
IGNORE_INDEX = 255


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default='data/demo_ade', help='demo dataset (generated here if missing)')
    p.add_argument('--work-dir', default='work_dirs/demo', help='logs, checkpoint, prediction panels')
    p.add_argument('--max-iters', type=int, default=None, help="training iterations (default: the config's)")
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--num-panels', type=int, default=6, help='prediction panels to save')
    p.add_argument('--min-miou', type=float, default=0.5, help='fail below this mIoU (fraction)')
    p.add_argument('--min-ratio', type=float, default=2.0, help='fail below this multiple of the baseline mIoU')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- config
def set_schedule(cfg, max_iters: int) -> None:
    """Rescale the iteration-based schedule to ``max_iters`` (warm-up capped at a tenth of it)."""
    if max_iters < 1:
        raise ValueError(f'--max-iters must be >= 1, got {max_iters}')
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    ckpt = cfg.default_hooks.get('checkpoint')
    if ckpt is not None:
        ckpt.interval = max_iters
    scheds = cfg.param_scheduler if isinstance(cfg.param_scheduler, list) else [cfg.param_scheduler]
    warm_end = None
    for s in scheds:
        if s.get('end') == old:
            s.end = max_iters
        elif s.get('begin', 0) == 0:  # the warm-up
            s.end = warm_end = max(1, min(s.end, max_iters // 10))
    for s in scheds:
        if warm_end is not None and s.get('begin', 0) > 0:
            s.begin = warm_end


def set_data_root(cfg, data_root: str) -> None:
    cfg.data_root = data_root
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key) is not None:
            cfg[key].dataset.data_root = data_root


# ----------------------------------------------------------------------------- baseline
def class_pixel_counts(labels: Iterable[np.ndarray], num_classes: int,
                       ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Pixels per class over label maps that are already in training ids (``ignore_index`` skipped)."""
    counts = np.zeros(num_classes, np.int64)
    for lab in labels:
        lab = np.asarray(lab).ravel()
        lab = lab[(lab != ignore_index) & (lab >= 0) & (lab < num_classes)]
        counts += np.bincount(lab.astype(np.int64), minlength=num_classes)
    return counts


def score_constant_prediction(cls: int, labels: Iterable[np.ndarray], num_classes: int,
                              ignore_index: int = IGNORE_INDEX) -> Dict[str, object]:
    """IoU of predicting ``cls`` at every pixel, by mmseg's IoUMetric arithmetic (per-image areas summed over
    the split, ignored pixels dropped, IoU = intersection / union, mIoU = nanmean over classes)."""
    import torch
    from mmseg.evaluation import IoUMetric
    areas = []
    for lab in labels:
        label = torch.from_numpy(np.asarray(lab).astype(np.int64))
        pred = torch.full_like(label, cls)
        areas.append(IoUMetric.intersect_and_union(pred, label, num_classes, ignore_index))
    totals = [sum(a[i] for a in areas) for i in range(4)]
    metrics = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'], nan_to_num=None, beta=1)
    iou = np.asarray(metrics['IoU'], dtype=np.float64)
    return dict(iou=iou.tolist(), miou=float(np.nanmean(iou)), aacc=float(metrics['aAcc']))


def majority_baseline(train_labels: Iterable[np.ndarray], val_labels: Iterable[np.ndarray], num_classes: int,
                      ignore_index: int = IGNORE_INDEX) -> Dict[str, object]:
    """The majority-class baseline: the most frequent training class, predicted everywhere on the val split.

    Labels are training-id maps (after ``reduce_zero_label``). Returns the class, the training pixel counts,
    per-class IoU and mIoU (fractions, not percent) on the val labels.
    """
    counts = class_pixel_counts(train_labels, num_classes, ignore_index)
    if counts.sum() == 0:
        raise ValueError('no labelled training pixels')
    cls = int(np.argmax(counts))
    out = score_constant_prediction(cls, val_labels, num_classes, ignore_index)
    out.update(cls=cls, train_counts=counts.tolist())
    return out


def dataset_labels(dataset) -> Iterable[np.ndarray]:
    """Training-id label maps of an mmseg dataset, loaded by mmseg's own ``LoadAnnotations`` (which applies
    the dataset's ``reduce_zero_label`` and ``label_map``)."""
    from mmseg.datasets.transforms import LoadAnnotations
    load = LoadAnnotations()
    for i in range(len(dataset)):
        yield load(dict(dataset.get_data_info(i)))['gt_seg_map'].astype(np.int64)


# ----------------------------------------------------------------------------- panels
def colourise(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Class-id map -> RGB; ignored/unknown pixels are black."""
    pal = np.zeros((256, 3), np.uint8)
    pal[:len(palette)] = np.asarray(palette, np.uint8)
    return pal[np.clip(label, 0, 255).astype(np.uint8)]


def save_panels(model, dataset, palette, out_dir: str, num: int, scale: int = 2) -> List[str]:
    """Save ``image | ground truth | prediction`` PNGs for the first ``num`` samples of ``dataset``."""
    import torch
    from mmengine.dataset import pseudo_collate
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    labels = dataset_labels(dataset)
    model.eval()
    for i in range(min(num, len(dataset))):
        sample = dataset[i]
        with torch.no_grad():
            pred = model.test_step(pseudo_collate([sample]))[0].pred_sem_seg.data[0].cpu().numpy()
        info = dataset.get_data_info(i)
        img = np.asarray(Image.open(info['img_path']).convert('RGB'))
        gt = next(labels)
        h, w = gt.shape
        sep = np.full((h, 2, 3), 255, np.uint8)
        panel = np.concatenate([img[:h, :w], sep, colourise(gt, palette), sep, colourise(pred, palette)], 1)
        if scale > 1:
            panel = panel.repeat(scale, 0).repeat(scale, 1)
        path = osp.join(out_dir, f'{i:02d}_' + osp.splitext(osp.basename(info['img_path']))[0] + '.png')
        Image.fromarray(panel).save(path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- main
def make_metric_catcher():
    """A hook that keeps the metrics of the last validation run (the one at the end of training)."""
    from mmengine.hooks import Hook

    class MetricCatcher(Hook):
        priority = 'LOWEST'
        metrics: Optional[dict] = None

        def after_val_epoch(self, runner, metrics=None) -> None:
            self.metrics = dict(metrics or {})

    return MetricCatcher()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    t_start = time.time()

    from mmevit.datasets.demo_ade import ensure_demo_ade
    manifest, generated = ensure_demo_ade(args.data_root)
    t_data = time.time() - t_start
    print(f"[demo] {'generated' if generated else 'reusing'} demo dataset at {args.data_root} "
          f"({manifest['num_train']} train / {manifest['num_val']} val images, {t_data:.1f}s)", flush=True)

    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    cfg.launcher = 'none'
    set_data_root(cfg, args.data_root)
    if args.max_iters is not None:
        set_schedule(cfg, args.max_iters)
    classes = list(cfg.demo_metainfo['classes'])
    if classes != list(manifest['classes']):
        raise ValueError(f"config classes {classes} differ from the dataset's {manifest['classes']}")

    runner = Runner.from_cfg(cfg)
    catcher = make_metric_catcher()
    runner.register_hook(catcher, priority='LOWEST')
    t0 = time.time()
    runner.train()  # validates on the held-out split at the end
    t_train = time.time() - t0
    if not catcher.metrics or 'mIoU' not in catcher.metrics:
        raise RuntimeError(f'no mIoU from the final validation: {catcher.metrics}')
    miou = float(catcher.metrics['mIoU']) / 100  # IoUMetric reports percent

    t0 = time.time()
    num_classes = len(classes)
    base = majority_baseline(dataset_labels(runner.train_dataloader.dataset),
                             dataset_labels(runner.val_dataloader.dataset), num_classes)
    palette = cfg.demo_metainfo['palette']
    panel_dir = osp.join(runner.log_dir, 'predictions')
    panels = save_panels(runner.model, runner.val_dataloader.dataset, palette, panel_dir, args.num_panels)
    t_post = time.time() - t0
    t_total = time.time() - t_start

    ratio = miou / base['miou'] if base['miou'] > 0 else float('inf')
    passed = miou >= args.min_miou and ratio >= args.min_ratio
    ckpt = osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    summary = dict(
        passed=passed, miou=miou, baseline_miou=base['miou'], ratio=ratio,
        baseline_class=classes[base['cls']], baseline_iou=dict(zip(classes, base['iou'])),
        train_pixel_counts=dict(zip(classes, base['train_counts'])),
        metrics={k: v for k, v in catcher.metrics.items() if isinstance(v, (int, float))},
        max_iters=cfg.train_cfg.max_iters, thresholds=dict(min_miou=args.min_miou, min_ratio=args.min_ratio),
        seconds=dict(data=round(t_data, 1), train_and_eval=round(t_train, 1), baseline_and_panels=round(t_post, 1),
                     total=round(t_total, 1)),
        paths=dict(data_root=osp.abspath(args.data_root), log_dir=osp.abspath(runner.log_dir),
                   checkpoint=osp.abspath(ckpt), panels=[osp.abspath(p) for p in panels]),
        load_average=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None)
    with open(osp.join(runner.log_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)

    legend = ', '.join(f'{c}={tuple(p)}' for c, p in zip(classes, palette))
    lines = [
        '=' * 78,
        f"SkipAt-T + UperNet demo ({cfg.train_cfg.max_iters} iterations, from scratch, CPU)",
        f"  mIoU (held-out, {manifest['num_val']} images): {miou:.4f}",
        f"  majority baseline mIoU:                  {base['miou']:.4f}  (always '{classes[base['cls']]}')",
        f"  ratio:                                   {ratio:.2f}x",
        f"  wall time: total {t_total:.0f}s = data {t_data:.0f}s + train/eval {t_train:.0f}s "
        f"+ baseline/panels {t_post:.0f}s",
        f"  log dir:     {runner.log_dir}",
        f"  checkpoint:  {ckpt}",
        f"  predictions: {panel_dir}  (image | ground truth | prediction; {legend}; black = ignored)",
        f"  RESULT: {'PASS' if passed else 'FAIL'} (needs mIoU >= {args.min_miou} and >= {args.min_ratio}x "
        'baseline)',
        '=' * 78,
    ]
    print('\n'.join(lines), flush=True)
    return 0 if passed else 1


if __name__ == '__main__':
    sys.exit(main())
