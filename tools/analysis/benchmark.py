#!/usr/bin/env python
"""Time registered models or configs on random input; ``--compare A B`` runs two interleaved.

Examples:
    python tools/analysis/benchmark.py skipat-s --size 512 --batch 1
    python tools/analysis/benchmark.py --compare vit-s skipat-s --size 512 --repeats 9 --flops
    python tools/analysis/benchmark.py configs/ade20k/skipat_s_upernet.py --backbone-only --size 512
    python tools/analysis/benchmark.py 'SkipAtViT:arch=t,skip_indices=(2,3,4)' --size 224 --batch 16
    python tools/analysis/benchmark.py --compare skipat-s+eager skipat-s --size 512   # SDPA vs eager attention
    python tools/analysis/benchmark.py --compare vit-s evo-vit-s --batch 16 --repeats 21 --threads 1 --flops
"""
import argparse
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from mmevit.analysis import build_model, compare, count_gmacs  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', nargs='?', help='preset (skipat-s, vit-t, ...), Type:kw=v,... or config .py; '
                   'a +eager suffix selects the eager attention path')
    p.add_argument('--compare', nargs=2, metavar=('A', 'B'), help='time A and B interleaved; prints A/B')
    p.add_argument('--size', type=int, nargs='+', default=[224], help='H [W]')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    p.add_argument('--backbone-only', action='store_true', help='for configs: time the backbone only')
    p.add_argument('--eager', action='store_true', help='eager (non-SDPA) attention reference path')
    p.add_argument('--flops', action='store_true', help='also count GMACs per image (math SDPA kernel)')
    p.add_argument('--json', help='write the results to this JSON file (refuses to overwrite)')
    args = p.parse_args(argv)
    if bool(args.model) == bool(args.compare):
        p.error('give one MODEL or --compare A B')
    if args.repeats < 7 and args.compare:
        p.error('--compare needs at least 7 repeats')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (args.size * 2)[:2]
    dtype = getattr(torch, args.dtype)
    x = torch.randn(args.batch, 3, h, w, device=args.device, dtype=dtype)
    names = args.compare or [args.model]
    models = {n: build_model(n, args.backbone_only, args.eager).to(args.device, dtype) for n in names}
    if len(models) < len(names):
        models = {f'{i}:{n}': build_model(n, args.backbone_only, args.eager).to(args.device, dtype)
                  for i, n in enumerate(names)}
    results = compare(models, x, args.repeats, args.warmup)
    if args.flops:
        for n, m in models.items():
            results[n].gmacs = count_gmacs(m, x[:1])
    for r in results.values():
        print(r.summary())
    out = {n: r.to_dict() for n, r in results.items()}
    if args.compare:
        a, b = (results[n] for n in models)
        ratio = a.median / b.median
        print(f'speed-up of {b.name} over {a.name}: {ratio:.3f}x (ratio of medians)')
        out['speedup'] = ratio
        # The runs alternate A, B, B, A, ...: the median of per-pair ratios is robust to a loaded machine.
        pair = statistics.median(ta / tb for ta, tb in zip(a.times, b.times))
        print(f'median per-pair speed-up: {pair:.3f}x over {len(a.times)} pairs')
        out['pair_speedup'] = pair
        if a.gmacs and b.gmacs:
            print(f'FLOP-limited speed-up: {a.gmacs / b.gmacs:.3f}x; reached {ratio / (a.gmacs / b.gmacs):.1%}')
            out['flop_ratio'] = a.gmacs / b.gmacs
    if args.json:
        if os.path.exists(args.json):
            raise FileExistsError(f'{args.json} exists; not overwriting it')
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    main()
