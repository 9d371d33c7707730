#!/usr/bin/env python
"""README command 1: train a demo config from scratch on its generated demo dataset, on CPU, in minutes.

    python tools/demo.py [TASK] [--data-root DIR] [--work-dir DIR] [--max-iters N] ...

TASK (default ade20k) picks the config under configs/demo/ whose ``demo = dict(task=...)`` names it
(``--config`` picks one directly). For ade20k: the demo dataset (ADE20K layout, ``make_demo_data.py ade20k``)
is made in ``--data-root`` unless it is already there, SkipAt-T + UperNet trains on it and is scored (mIoU on
the held-out split) against the majority-class baseline; prediction panels and ``summary.json`` go to the
run's log dir. Exits 1 if mIoU < ``--min-score`` or < ``--min-ratio`` x the baseline's (defaults: the
config's ``demo`` thresholds). The work is done by ``mmevit.engine.demo``.
"""
import argparse
import glob
import os
import os.path as osp
import re
import sys
from typing import Dict, Optional, Sequence

# Must be set before torch (libgomp) loads: spinning OpenMP threads collapse on a shared CPU (see run_demo.sh).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

DEMO_CONFIGS = osp.join(REPO, 'configs', 'demo')
_TASK_RE = re.compile(r"^demo = dict\(task='([A-Za-z0-9_-]+)'", re.M)


def demo_configs() -> Dict[str, str]:
    """task -> demo config, read from the ``demo = dict(task='...'`` line of configs/demo/*.py."""
    found: Dict[str, str] = {}
    for path in sorted(glob.glob(osp.join(DEMO_CONFIGS, '*.py'))):
        with open(path) as f:
            m = _TASK_RE.search(f.read())
        if m:
            found.setdefault(m.group(1), path)
    return found


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    configs = demo_configs()
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('task', nargs='?', default='ade20k', help=f'demo to run: {", ".join(sorted(configs))}')
    p.add_argument('--config', help="demo config (default: the task's in configs/demo/)")
    p.add_argument('--data-root', help="demo dataset, made there if missing (default: the config's data_root)")
    p.add_argument('--work-dir', help='logs, checkpoint, prediction panels (default: work_dirs/demo)')
    p.add_argument('--max-iters', type=int, help="training iterations (>= 1; default: the config's)")
    p.add_argument('--num-panels', type=int, default=6, help='prediction panels to save')
    p.add_argument('--min-score', '--min-miou', type=float, help="fail below this score (default: the config's)")
    p.add_argument('--min-ratio', type=float, help="fail below this multiple of the baseline's score")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = p.parse_args(argv)
    if args.config is None:
        if args.task not in configs:
            p.error(f"unknown task {args.task!r}; demos: {', '.join(sorted(configs)) or 'none'}")
        args.config = configs[args.task]
    if args.max_iters is not None and args.max_iters < 1:
        p.error(f'--max-iters must be >= 1, got {args.max_iters}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from mmevit.engine.demo import get_demo_runner, rescale_schedule
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('demo') is None:
        raise ValueError(f"{args.config} is not a demo config: it has no demo=dict(task=...)")
    run, report = get_demo_runner(cfg.demo.task)
    cfg.work_dir = args.work_dir or 'work_dirs/demo'
    cfg.launcher = 'none'
    if args.max_iters is not None:
        rescale_schedule(cfg, args.max_iters)
    try:
        summary = run(cfg, args.data_root or cfg.data_root, args.num_panels, args.min_score, args.min_ratio)
    except FileExistsError as e:  # the data root holds something else: say so, without a traceback
        print(f'demo: {e}', file=sys.stderr)
        return 2
    print(report(summary), flush=True)
    return 0 if summary['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
