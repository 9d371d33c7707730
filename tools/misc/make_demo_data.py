#!/usr/bin/env python
"""Make a demo dataset in the real layout of the dataset it stands in for (nothing is downloaded).

    python tools/misc/make_demo_data.py TASK OUT_DIR [--num-train N] [--num-val N] [--seed S] [--force]

OUT_DIR must be new or empty. A folder this tool made (it holds ``mmevit_demo.json``) is reused when asked for
the same task and arguments, and replaced with ``--force`` only if every file in it is one the tool wrote,
unchanged; any other non-empty folder is never written to.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmevit.datasets import demo_tasks
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('task', choices=demo_tasks(), metavar='TASK', help=f'one of: {", ".join(demo_tasks())}')
    p.add_argument('out_dir', metavar='OUT_DIR', help='new or empty folder')
    p.add_argument('--num-train', type=int, help="training samples (default: the task's)")
    p.add_argument('--num-val', type=int, help="validation samples (default: the task's)")
    p.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    p.add_argument('--force', action='store_true',
                   help="replace this tool's own earlier output in OUT_DIR (never anything else)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmevit.datasets import make_demo_data
    try:
        marker, made = make_demo_data(args.task, args.out_dir, args.num_train, args.num_val, args.seed,
                                      force=args.force)
    except (FileExistsError, ValueError, TypeError) as e:
        print(f'make_demo_data: {e}', file=sys.stderr)
        return 2
    a = marker['args']
    print(f"{'made' if made else 'already there, unchanged:'} {args.task} demo data in {args.out_dir} "
          f"({a['num_train']} train / {a['num_val']} val, seed {a['seed']}, {len(marker['files'])} files)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
