#!/usr/bin/env python
"""Parameters and MACs (multiply-accumulates; the papers' "FLOPs") of presets, registered types or configs.

Attention matmuls are included (SDPA is counted under the math kernel); ``+norms`` adds one MAC per normalised
element (the official Uformer ``flops()`` convention); models with an analytic ``flops()`` also print it.

Examples:
    python tools/analysis/get_flops.py skipat-s vit-s --size 512
    python tools/analysis/get_flops.py --paper                       # every registered arch at the paper sizes
    python tools/analysis/get_flops.py configs/coco/lit_ti_mask-rcnn_1x.py --size 800 1216   # whole detector
    python tools/analysis/get_flops.py configs/sidd/uformer_t.py --size 256 --json flops.json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from mmevit.analysis import PAPER_SIZES, flops_of  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('models', nargs='*', help='presets, Type:kw=v,... or config .py files')
    p.add_argument('--paper', action='store_true', help='every registered arch at its paper input size(s)')
    p.add_argument('--size', type=int, nargs='+', default=None, help='H [W] (default 224, or the paper size)')
    p.add_argument('--backbone-only', action='store_true', help='for configs: count the backbone only')
    p.add_argument('--json', help='write the results to this JSON file (refuses to overwrite)')
    args = p.parse_args(argv)
    if not args.models and not args.paper:
        p.error('give MODELS or --paper')
    if args.json and os.path.exists(args.json):
        p.error(f'{args.json} exists; not overwriting it')
    return args


def main(argv=None) -> list:
    args = parse_args(argv)
    jobs = [(m, tuple((args.size * 2)[:2]) if args.size else (224, 224)) for m in args.models]
    if args.paper:
        jobs += [(m, (s, s)) for m, s in PAPER_SIZES]
    rows = []
    print(f'{"model":34s} {"input":>10s} {"params (M)":>11s} {"GMACs":>9s} {"+norms":>9s} {"own flops()":>11s}')
    for spec, size in jobs:
        fc = flops_of(spec, size, args.backbone_only)
        own = f'{fc.own_macs / 1e9:11.3f}' if fc.own_macs is not None else f'{"-":>11s}'
        shape = fc.input_shape[1:2] + fc.input_shape[-2:] if len(fc.input_shape) == 5 else fc.input_shape[-2:]
        print(f'{spec:34s} {"x".join(map(str, shape)):>10s} {fc.params / 1e6:11.2f} {fc.gmacs:9.3f} '
              f'{(fc.macs + fc.norm_macs) / 1e9:9.3f} {own}', flush=True)
        rows.append(fc.to_dict())
    print('GMACs (per image; per clip for video, input T x H x W): multiply-accumulates of matmuls, linears, '
          'convolutions and attention (SDPA on the math kernel); '
          '+norms: one MAC per normalised element also counted.')
    if args.json:
        with open(args.json, 'x') as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == '__main__':
    main()
