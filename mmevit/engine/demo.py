"""The library side of ``tools/demo.py``: train a config on a generated demo dataset and check that it learned.

A demo config carries a ``demo`` dict: the demo-data task and its arguments (``mmevit.datasets.demo_data``)
and the pass criterion (``min_score``, ``min_ratio``: the score must reach ``min_score`` and ``min_ratio``
times a trivial baseline's). The generic parts (schedule rescaling, data root, training while keeping the
final validation metrics, pass check, prediction panels, summary file) serve every task; the segmentation
parts (majority-class baseline scored with mmseg's IoUMetric arithmetic, colourised label maps) and
``run_segmentation_demo`` are the ADE20K demo's. ``DEMO_RUNNERS`` maps a demo task to its run and report
functions; a new demo adds its pair with ``register_demo_runner``.
"""
import json
import os
import os.path as osp
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log

IGNORE_INDEX = 255


# ----------------------------------------------------------------------------- config edits
def rescale_schedule(cfg: Config, max_iters: int) -> None:
    """Rescale an iteration-based schedule to ``max_iters``.

    The loop, the validation and checkpoint intervals and every scheduler ending at the old ``max_iters``
    move to ``max_iters``; a warm-up (a scheduler from 0 ending earlier) keeps its share of the schedule, at
    least one iteration, and the schedulers that started where it ended start where it now ends. A scheduler
    left with no iterations (e.g. the decay after a 1-iteration warm-up when ``max_iters`` is 1) is dropped.
    """
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f'max_iters must be an integer >= 1, got {max_iters!r}')
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_iters' not in train_cfg:
        raise ValueError(f'rescale_schedule needs an iteration-based train_cfg (max_iters), got {train_cfg}')
    old = train_cfg.max_iters
    train_cfg.max_iters = max_iters
    train_cfg.val_interval = max_iters
    ckpt = cfg.get('default_hooks', {}).get('checkpoint')
    if ckpt is not None:
        ckpt.interval = max_iters
    scheds = cfg.get('param_scheduler') or []
    scheds = list(scheds) if isinstance(scheds, (list, tuple)) else [scheds]
    if any(s.get('by_epoch', True) for s in scheds):
        raise ValueError('rescale_schedule handles iteration-based schedulers only (by_epoch=False)')
    warm = [id(s) for s in scheds if s.get('begin', 0) == 0 and s.get('end', old) < old]
    old_warm_end = max((s.end for s in scheds if id(s) in warm), default=0)
    new_warm_end = max(1, round(old_warm_end * max_iters / old)) if warm else 0
    kept = []
    for s in scheds:
        begin, end = s.get('begin', 0), s.get('end', old)
        if id(s) in warm:
            s.end = max(1, round(end * max_iters / old))
        elif end == old and begin in (0, old_warm_end):
            s.begin = new_warm_end if begin else 0
            s.end = max_iters
        else:
            raise ValueError(f'rescale_schedule: cannot rescale scheduler {dict(s)} (only warm-up + main phase)')
        if s.get('begin', 0) < s.end:
            kept.append(s)
    cfg.param_scheduler = kept


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point the config and its train/val/test datasets at ``data_root``."""
    cfg.data_root = data_root
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key) is not None:
            cfg[key].dataset.data_root = data_root


# ----------------------------------------------------------------------------- training
class MetricCatcher(Hook):
    """Keeps the metrics of the last validation run (for the demos: the one at the end of training)."""
    priority = 'LOWEST'

    def __init__(self) -> None:
        self.metrics: Optional[Dict[str, float]] = None

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self.metrics = dict(metrics or {})


def train_and_validate(runner, metric: str) -> Dict[str, float]:
    """``runner.train()`` (whose loop validates at its end), returning the final validation metrics."""
    catcher = MetricCatcher()
    runner.register_hook(catcher, priority='LOWEST')
    runner.train()
    if not catcher.metrics or metric not in catcher.metrics:
        raise RuntimeError(f'the final validation reported no {metric!r}: {catcher.metrics}')
    return catcher.metrics


def check_against_baseline(score: float, baseline: float, min_score: float, min_ratio: float) -> Dict[str, object]:
    """Passes when ``score >= min_score`` and ``score >= min_ratio * baseline``."""
    ratio = score / baseline if baseline > 0 else float('inf')
    return dict(ratio=ratio, passed=bool(score >= min_score and ratio >= min_ratio))


# ----------------------------------------------------------------------------- segmentation baseline
def seg_labels(dataset) -> Iterator[np.ndarray]:
    """Training-id label maps of an mmseg dataset, loaded by mmseg's own ``LoadAnnotations`` (which applies
    the dataset's ``reduce_zero_label`` and ``label_map``)."""
    from mmseg.datasets.transforms import LoadAnnotations
    load = LoadAnnotations()
    for i in range(len(dataset)):
        yield load(dict(dataset.get_data_info(i)))['gt_seg_map'].astype(np.int64)


def class_pixel_counts(labels: Iterable[np.ndarray], num_classes: int,
                       ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Pixels per class over training-id label maps (``ignore_index`` and out-of-range values skipped)."""
    counts = np.zeros(num_classes, np.int64)
    for lab in labels:
        lab = np.asarray(lab).ravel()
        lab = lab[(lab != ignore_index) & (lab >= 0) & (lab < num_classes)]
        counts += np.bincount(lab.astype(np.int64), minlength=num_classes)
    return counts


def score_constant_prediction(cls: int, labels: Iterable[np.ndarray], num_classes: int,
                              ignore_index: int = IGNORE_INDEX) -> Dict[str, object]:
    """IoU of predicting ``cls`` at every pixel, by mmseg's IoUMetric arithmetic (per-image areas summed over
    the split, ignored pixels dropped, IoU = intersection / union, mIoU = nanmean over classes). Fractions."""
    import torch
    from mmseg.evaluation import IoUMetric
    areas = []
    for lab in labels:
        label = torch.from_numpy(np.asarray(lab).astype(np.int64))
        areas.append(IoUMetric.intersect_and_union(torch.full_like(label, cls), label, num_classes,
                                                   ignore_index))
    if not areas:
        raise ValueError('no label maps to score')
    totals = [sum(a[i] for a in areas) for i in range(4)]
    metrics = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'], nan_to_num=None, beta=1)
    iou = np.asarray(metrics['IoU'], dtype=np.float64)
    return dict(iou=iou.tolist(), miou=float(np.nanmean(iou)), aacc=float(metrics['aAcc']))


def majority_baseline(train_labels: Iterable[np.ndarray], val_labels: Iterable[np.ndarray], num_classes: int,
                      ignore_index: int = IGNORE_INDEX) -> Dict[str, object]:
    """The most frequent training class, predicted everywhere on the val split: its class, the training pixel
    counts, and its per-class IoU, mIoU and aAcc on the val labels (fractions)."""
    counts = class_pixel_counts(train_labels, num_classes, ignore_index)
    if counts.sum() == 0:
        raise ValueError('no labelled training pixels')
    cls = int(np.argmax(counts))
    out = score_constant_prediction(cls, val_labels, num_classes, ignore_index)
    out.update(cls=cls, train_counts=counts.tolist())
    return out


# ----------------------------------------------------------------------------- panels
def colourise(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Class-id map -> RGB; ignored/unknown ids are black."""
    pal = np.zeros((256, 3), np.uint8)
    pal[:len(palette)] = np.asarray(palette, np.uint8)
    return pal[np.clip(label, 0, 255).astype(np.uint8)]


def save_panel(columns: Sequence[np.ndarray], path: str, scale: int = 2, sep: int = 2) -> str:
    """Save RGB images side by side (cropped to the first one's size, white ``sep``-px separators, each pixel
    repeated ``scale`` times) as a PNG."""
    from PIL import Image
    h, w = columns[0].shape[:2]
    bar = np.full((h, sep, 3), 255, np.uint8)
    parts = []
    for i, col in enumerate(columns):
        parts += ([bar] if i else []) + [np.asarray(col, np.uint8)[:h, :w]]
    panel = np.concatenate(parts, 1)
    if scale > 1:
        panel = panel.repeat(scale, 0).repeat(scale, 1)
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    Image.fromarray(panel).save(path)
    return path


def save_seg_panels(model, dataset, palette: Sequence[Sequence[int]], out_dir: str, num: int) -> List[str]:
    """``image | ground truth | prediction`` panels for the first ``num`` samples of an mmseg dataset."""
    import torch
    from mmengine.dataset import pseudo_collate
    from PIL import Image
    paths = []
    labels = seg_labels(dataset)
    model.eval()
    for i in range(min(num, len(dataset))):
        with torch.no_grad():
            pred = model.test_step(pseudo_collate([dataset[i]]))[0].pred_sem_seg.data[0].cpu().numpy()
        img_path = dataset.get_data_info(i)['img_path']
        img = np.asarray(Image.open(img_path).convert('RGB'))
        name = f'{i:02d}_' + osp.splitext(osp.basename(img_path))[0] + '.png'
        paths.append(save_panel([img, colourise(next(labels), palette), colourise(pred, palette)],
                                osp.join(out_dir, name)))
    return paths


# ----------------------------------------------------------------------------- the segmentation demo
def write_summary(summary: dict, path: str) -> str:
    with open(path, 'w') as f:
        json.dump(summary, f, indent=1)
        f.write('\n')
    return path


def run_segmentation_demo(cfg: Config, data_root: str, num_panels: int = 6, min_score: Optional[float] = None,
                          min_ratio: Optional[float] = None) -> dict:
    """Make (or reuse) the config's demo data in ``data_root``, train and validate with mmengine's Runner,
    score the majority-class baseline on the same split, save panels and ``summary.json`` in the run's log
    dir; returns the summary (mIoU as a fraction)."""
    from mmengine.runner import Runner

    from ..datasets import make_demo_data
    t_start = time.time()
    load_start = _load()
    demo = cfg.demo
    min_score = demo.min_score if min_score is None else min_score
    min_ratio = demo.min_ratio if min_ratio is None else min_ratio
    marker, made = make_demo_data(demo.task, data_root, demo.get('num_train'), demo.get('num_val'),
                                  demo.get('seed', 0))
    t_data = time.time() - t_start
    print_log(f"[demo] {'made' if made else 'reusing'} the {demo.task} demo data in {data_root} "
              f"({marker['args']['num_train']} train / {marker['args']['num_val']} val images, {t_data:.1f}s)",
              logger='current')
    classes = list(cfg.demo_metainfo['classes'])
    if classes != list(marker['meta']['classes']):
        raise ValueError(f"config classes {classes} differ from the demo data's {marker['meta']['classes']}")
    set_data_root(cfg, data_root)

    runner = Runner.from_cfg(cfg)
    t0 = time.time()
    metrics = train_and_validate(runner, 'mIoU')
    t_train = time.time() - t0
    miou = float(metrics['mIoU']) / 100  # IoUMetric reports percent

    t0 = time.time()
    base = majority_baseline(seg_labels(runner.train_dataloader.dataset), seg_labels(runner.val_dataloader.dataset),
                             len(classes))
    panel_dir = osp.join(runner.log_dir, 'predictions')
    panels = save_seg_panels(runner.model, runner.val_dataloader.dataset, cfg.demo_metainfo['palette'],
                             panel_dir, num_panels)
    t_post = time.time() - t0
    verdict = check_against_baseline(miou, base['miou'], min_score, min_ratio)
    summary = dict(
        task=demo.task, passed=verdict['passed'], miou=miou, baseline_miou=base['miou'], ratio=verdict['ratio'],
        baseline_class=classes[base['cls']], baseline_iou=dict(zip(classes, base['iou'])),
        train_pixel_counts=dict(zip(classes, base['train_counts'])),
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        max_iters=cfg.train_cfg.max_iters, num_train=marker['args']['num_train'],
        num_val=marker['args']['num_val'], data_generated=made,
        thresholds=dict(min_miou=min_score, min_ratio=min_ratio),
        seconds=dict(data=round(t_data, 1), train_and_eval=round(t_train, 1), baseline_and_panels=round(t_post, 1),
                     total=round(time.time() - t_start, 1)),
        paths=dict(data_root=osp.abspath(data_root), log_dir=osp.abspath(runner.log_dir),
                   checkpoint=osp.abspath(osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')),
                   panel_dir=osp.abspath(panel_dir), panels=[osp.abspath(p) for p in panels]),
        legend=dict(zip(classes, [list(p) for p in cfg.demo_metainfo['palette']])),
        load_average=dict(start=load_start, end=_load()))
    write_summary(summary, osp.join(runner.log_dir, 'summary.json'))
    return summary


def format_segmentation_summary(s: dict) -> str:
    sec = s['seconds']
    legend = ', '.join(f'{c}={tuple(p)}' for c, p in s['legend'].items())
    return '\n'.join([
        '=' * 78,
        f"SkipAt-T + UperNet demo ({s['max_iters']} iterations, from scratch, CPU)",
        f"  mIoU (held-out, {s['num_val']} images): {s['miou']:.4f}",
        f"  majority baseline mIoU:                  {s['baseline_miou']:.4f}  (always '{s['baseline_class']}')",
        f"  ratio:                                   {s['ratio']:.2f}x",
        f"  wall time: total {sec['total']:.0f}s = data {sec['data']:.0f}s + train/eval {sec['train_and_eval']:.0f}s"
        f" + baseline/panels {sec['baseline_and_panels']:.0f}s",
        f"  log dir:     {s['paths']['log_dir']}",
        f"  checkpoint:  {s['paths']['checkpoint']}",
        f"  predictions: {s['paths']['panel_dir']}  (image | ground truth | prediction; {legend}; black = ignored)",
        f"  RESULT: {'PASS' if s['passed'] else 'FAIL'} (needs mIoU >= {s['thresholds']['min_miou']} and >= "
        f"{s['thresholds']['min_ratio']}x baseline)",
        '=' * 78,
    ])


# task -> (run(cfg, data_root, num_panels, min_score, min_ratio) -> summary with 'passed', report(summary) -> str)
DEMO_RUNNERS: Dict[str, Tuple[Callable[..., dict], Callable[[dict], str]]] = {}


def register_demo_runner(task: str, run: Callable[..., dict], report: Callable[[dict], str]) -> None:
    if task in DEMO_RUNNERS:
        raise KeyError(f'a demo runner for {task!r} is already registered')
    DEMO_RUNNERS[task] = (run, report)


def get_demo_runner(task: str) -> Tuple[Callable[..., dict], Callable[[dict], str]]:
    if task not in DEMO_RUNNERS:
        raise KeyError(f'no demo runner for task {task!r}; demos: {", ".join(sorted(DEMO_RUNNERS))}')
    return DEMO_RUNNERS[task]


register_demo_runner('ade20k', run_segmentation_demo, format_segmentation_summary)


# ----------------------------------------------------------------------------- the denoising demos
def _to_hwc_uint8(img) -> np.ndarray:
    """A 0-255 (C, H, W) image, or a (T, C, H, W) clip shown as its frames stacked vertically, as HWC uint8."""
    a = img.detach().float().clamp(0, 255).round().byte().cpu().numpy()
    if a.ndim == 4:
        a = np.concatenate(list(a[:4]), axis=1)  # up to 4 frames, one under the other
    return a.transpose(1, 2, 0)


def save_restoration_panels(runner, out_dir: str, num: int) -> List[str]:
    """noisy | restored | clean panels of the first ``num`` validation samples (clips: frames stacked)."""
    paths: List[str] = []
    runner.model.eval()
    for data in runner.val_dataloader:
        with torch.no_grad():
            outs = runner.model.val_step(data)
        for s in outs:
            if len(paths) >= num:
                return paths
            name = osp.splitext(osp.basename(str(s.metainfo.get('img_path', s.metainfo.get('sequence',
                                                                                          len(paths))))))[0]
            columns = [_to_hwc_uint8(s.input_img), _to_hwc_uint8(s.pred_img), _to_hwc_uint8(s.gt_img)]
            paths.append(save_panel(columns, osp.join(out_dir, f'{len(paths):02d}_{name}.png')))
        if len(paths) >= num:
            break
    return paths


def run_denoising_demo(cfg: Config, data_root: str, num_panels: int = 6, min_score: Optional[float] = None,
                       min_ratio: Optional[float] = None) -> dict:
    """Make (or reuse) the config's demo data, train and validate a denoiser with mmengine's Runner, and pass
    when the restored held-out PSNR beats the noisy input's by at least ``min_score`` dB (default: the config's
    ``demo.min_gain``); saves noisy | restored | clean panels and ``summary.json`` in the run's log dir.
    ``min_ratio`` has no meaning here and must be left unset."""
    from mmengine.runner import Runner

    from ..datasets import make_demo_data
    if min_ratio is not None:
        raise ValueError('--min-ratio applies to the segmentation demo; a denoising demo checks the PSNR gain '
                         '(--min-score, in dB)')
    t_start = time.time()
    load_start = _load()
    demo = cfg.demo
    min_gain = float(demo.min_gain if min_score is None else min_score)
    marker, made = make_demo_data(demo.task, data_root, demo.get('num_train'), demo.get('num_val'),
                                  demo.get('seed', 0))
    t_data = time.time() - t_start
    print_log(f"[demo] {'made' if made else 'reusing'} the {demo.task} demo data in {data_root} ({t_data:.1f}s)",
              logger='current')
    set_data_root(cfg, data_root)
    runner = Runner.from_cfg(cfg)
    t0 = time.time()
    metrics = train_and_validate(runner, 'PSNR')
    t_train = time.time() - t0
    if 'noisy/PSNR' not in metrics:
        raise RuntimeError("the demo config's val_evaluator must also score the noisy input "
                           "(dict(type='PSNR', pred_key='input_img', prefix='noisy'))")
    t0 = time.time()
    panel_dir = osp.join(runner.log_dir, 'predictions')
    panels = save_restoration_panels(runner, panel_dir, num_panels)
    gain = float(metrics['PSNR']) - float(metrics['noisy/PSNR'])
    generator = runner.model.generator
    summary = dict(
        task=demo.task, passed=bool(gain >= min_gain), psnr=float(metrics['PSNR']),
        noisy_psnr=float(metrics['noisy/PSNR']), gain_db=gain, ssim=float(metrics.get('SSIM', float('nan'))),
        noisy_ssim=float(metrics.get('noisy/SSIM', float('nan'))), model=type(generator).__name__,
        params=sum(p.numel() for p in generator.parameters()),
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        max_iters=cfg.train_cfg.max_iters, num_train=marker['args']['num_train'],
        num_val=marker['args']['num_val'], data_generated=made, thresholds=dict(min_gain_db=min_gain),
        seconds=dict(data=round(t_data, 1), train_and_eval=round(t_train, 1), panels=round(time.time() - t0, 1),
                     total=round(time.time() - t_start, 1)),
        paths=dict(data_root=osp.abspath(data_root), log_dir=osp.abspath(runner.log_dir),
                   checkpoint=osp.abspath(osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')),
                   panel_dir=osp.abspath(panel_dir), panels=[osp.abspath(p) for p in panels]),
        load_average=dict(start=load_start, end=_load()))
    write_summary(summary, osp.join(runner.log_dir, 'summary.json'))
    return summary


def format_denoising_summary(s: dict) -> str:
    sec = s['seconds']
    return '\n'.join([
        '=' * 78,
        f"{s['model']} denoising demo '{s['task']}' ({s['max_iters']} iterations, from scratch, CPU)",
        f"  held-out PSNR: noisy {s['noisy_psnr']:.2f} dB -> restored {s['psnr']:.2f} dB "
        f"(gain {s['gain_db']:+.2f} dB)",
        f"  held-out SSIM: noisy {s['noisy_ssim']:.4f} -> restored {s['ssim']:.4f}",
        f"  wall time: total {sec['total']:.0f}s = data {sec['data']:.0f}s + train/eval {sec['train_and_eval']:.0f}s"
        f" + panels {sec['panels']:.0f}s",
        f"  log dir:     {s['paths']['log_dir']}",
        f"  panels:      {s['paths']['panel_dir']}  (noisy | restored | clean)",
        f"  RESULT: {'PASS' if s['passed'] else 'FAIL'} (needs a PSNR gain >= {s['thresholds']['min_gain_db']} dB)",
        '=' * 78,
    ])


register_demo_runner('sidd', run_denoising_demo, format_denoising_summary)
register_demo_runner('davis', run_denoising_demo, format_denoising_summary)


def _load() -> Optional[List[float]]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None
