#!/usr/bin/env python
"""Time registered models or configs on random input; ``--compare A B`` runs two interleaved.

Examples:
    python tools/analysis/benchmark.py skipat-s --size 512 --batch 1 --memory
    python tools/analysis/benchmark.py --compare vit-s skipat-s --size 512 --flops      # 15 pairs by default
    python tools/analysis/benchmark.py --compare mmseg-vit-s skipat-s --size 512        # toolbox ViT vs ours
    python tools/analysis/benchmark.py --compare uformer-t skipat-uformer-t --size 256
    python tools/analysis/benchmark.py configs/ade20k/skipat_s_upernet.py --size 512   # whole segmentor
    python tools/analysis/benchmark.py configs/ade20k/skipat_s_upernet.py --backbone-only --size 512
    python tools/analysis/benchmark.py 'SkipAtViT:arch=t,skip_indices=(2,3,4)' --size 224 --batch 16
    python tools/analysis/benchmark.py --compare skipat-s+eager skipat-s --size 512   # SDPA vs eager attention
    python tools/analysis/benchmark.py --compare skipat-s skipat-s --compile B --size 224   # what compile buys
    python tools/analysis/benchmark.py skipat-s --device cuda --amp fp16 --batch 256 --channels-last

Presets: see ``mmevit.analysis.PRESETS`` (``--list``). ``--compare`` reports the median of the per-pair time
ratios A/B (the speed-up of B over A) with its quartiles and min/max; whole detectors/segmentors/denoisers from a
config run ``mode='tensor'`` (the network, without post-processing).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from mmevit.analysis import (PRESETS, build_model, compare, count_flops, keep_freed_memory,  # noqa: E402
                             make_inputs, pair_ratios, peak_memory, prepare)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', nargs='?', help='preset (skipat-s, vit-t, uformer-t, mmseg-vit-s, ...), '
                   'Type:kw=v,... or config .py; a +eager suffix selects the eager attention path')
    p.add_argument('--compare', nargs=2, metavar=('A', 'B'), help='time A and B interleaved; reports A/B')
    p.add_argument('--list', action='store_true', help='list the presets and exit')
    p.add_argument('--size', type=int, nargs='+', default=[224], help='H [W]')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--repeats', type=int, default=None, help='timed runs per model (default 7; 15 pairs for '
                   '--compare)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'],
                   help='weights and input dtype (for mixed precision use --amp)')
    p.add_argument('--amp', choices=['fp16', 'bf16'], help='torch.autocast to this dtype')
    p.add_argument('--channels-last', action='store_true', help='channels-last weights and input')
    p.add_argument('--compile', nargs='?', const='all', choices=['all', 'A', 'B'],
                   help='torch.compile (inductor) the model(s): all, or only A / B of --compare')
    p.add_argument('--backbone-only', action='store_true', help='for configs: time the backbone only')
    p.add_argument('--eager', action='store_true', help='eager (non-SDPA) attention reference path')
    p.add_argument('--flops', action='store_true', help='also count params and GMACs per image')
    p.add_argument('--memory', action='store_true', help='also measure the peak memory of one forward')
    p.add_argument('--keep-freed-memory', action='store_true',
                   help='glibc: no mmap/munmap of large temporaries per call (steadier CPU timings; '
                   'mmevit.analysis.keep_freed_memory)')
    p.add_argument('--quiet', action='store_true', help='no progress output (stderr)')
    p.add_argument('--json', help='write the results to this JSON file (refuses to overwrite)')
    args = p.parse_args(argv)
    if args.list:
        return args
    if bool(args.model) == bool(args.compare):
        p.error('give one MODEL or --compare A B')
    if args.repeats is None:
        args.repeats = 15 if args.compare else 7
    if args.repeats < 7 and args.compare:
        p.error('--compare needs at least 7 repeats (15 recommended on a loaded machine)')
    if args.compile in ('A', 'B') and not args.compare:
        p.error('--compile A/B needs --compare')
    if args.json and os.path.exists(args.json):
        p.error(f'{args.json} exists; not overwriting it')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.list:
        for n in sorted(PRESETS):
            print(f'{n:28s} {PRESETS[n]}')
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        print('[benchmark] --keep-freed-memory: not glibc, ignored', file=sys.stderr)
    torch.manual_seed(0)
    size = tuple((args.size * 2)[:2])
    dtype = getattr(torch, args.dtype)
    names = args.compare or [args.model]
    keys = names if len(set(names)) == len(names) else [f'{n} ({"AB"[i]})' for i, n in enumerate(names)]
    log = (lambda s: None) if args.quiet else (lambda s: print(f'[benchmark] {s}', file=sys.stderr, flush=True))
    models, raw = {}, {}
    for i, (k, n) in enumerate(zip(keys, names)):
        log(f'building {n}')
        raw[k] = build_model(n, args.backbone_only, args.eager).to(args.device, dtype)
        do_compile = args.compile == 'all' or args.compile == 'AB'[i] if args.compile else False
        models[k] = prepare(raw[k], args.device, args.channels_last, do_compile)
    x, samples = make_inputs(raw[keys[0]], args.batch, size, args.device, dtype)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        results = compare(models, x, args.repeats, args.warmup, samples, args.amp, log)
    except Exception as e:  # torch.compile failures surface at the first call
        if args.compile:
            raise RuntimeError(f'torch.compile failed for {names} ({type(e).__name__}): {e}') from e
        raise
    for k, n in zip(keys, names):
        if args.flops:
            log(f'counting FLOPs of {n}')
            fc = count_flops(raw[k], x[:1],
                             n, samples[:1] if samples else None)
            results[k].gmacs, results[k].params = fc.gmacs, fc.params
        if args.memory:
            log(f'peak memory of {n}')
            results[k].peak_mem_mb, results[k].mem_method = peak_memory(
                n, args.batch, size, args.device, args.backbone_only, args.amp, args.channels_last,
                args.threads)
    for r in results.values():
        print(r.summary())
    out = dict(models={k: r.to_dict() for k, r in results.items()},
               settings=dict(torch=torch.__version__, threads=torch.get_num_threads(), device=args.device,
                             batch=args.batch, size=list(size), dtype=args.dtype, amp=args.amp,
                             channels_last=args.channels_last, compile=args.compile,
                             backbone_only=args.backbone_only, repeats=args.repeats, warmup=args.warmup,
                             keep_freed_memory=args.keep_freed_memory))
    if args.compare:
        a, b = (results[k] for k in keys)
        stats = pair_ratios(a.times, b.times)
        print(f'speed-up of {b.name} over {a.name}: {stats["median"]:.3f}x (median of {stats["pairs"]} per-pair '
              f'ratios; IQR {stats["q1"]:.3f}-{stats["q3"]:.3f}, min {stats["min"]:.3f}, max {stats["max"]:.3f}; '
              f'ratio of medians {stats["ratio_of_medians"]:.3f}x)')
        out['speedup'] = stats
        if a.gmacs and b.gmacs:
            flop_ratio = a.gmacs / b.gmacs
            print(f'FLOP-limited speed-up: {flop_ratio:.3f}x; reached {stats["median"] / flop_ratio:.1%}')
            out['flop_ratio'] = flop_ratio
    if args.json:
        with open(args.json, 'x') as f:  # 'x': never overwrite
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    main()
