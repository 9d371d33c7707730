"""Convert an official SkipAt, timm/DeiT or mmpretrain ViT checkpoint to an mmevit checkpoint.

    python tools/model_converters/skipat2mmevit.py SRC DST [--model backbone|classifier]
        [--skip-indices 3 4 5 6 7 8] [--force] [--trust-checkpoint]

DST is ``{'state_dict': ..., 'meta': {...}}``. ``--model backbone`` keys load strictly into ``SkipAtViT``
(e.g. ``init_cfg=dict(type='Pretrained', checkpoint=DST)`` or a segmentor's ``backbone``); ``--model
classifier`` keys (``backbone.*``, ``head.layers.*``) load strictly into mmpretrain's ``ImageClassifier`` with
``VisionTransformerClsHead``. ``meta`` records the backbone (and head) config matching the weights (its
``num_heads`` is a placeholder: the weights do not determine it). Source keys left out (unused attention of
skipped blocks, Phi modules beyond ``len(skip_indices)``, heads in backbone mode) are printed by name.
"""
import argparse
import os.path as osp
import sys

import torch

import mmevit
from mmevit import compat
from mmevit.engine.convert import convert_checkpoint
from mmevit.models.checkpoint import read_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert SkipAt/timm/mmpretrain ViT checkpoints to mmevit')
    parser.add_argument('src', help='source checkpoint (path or URL)')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--model', choices=['backbone', 'classifier'], default='backbone',
                        help='backbone: SkipAtViT keys; classifier: mmpretrain ImageClassifier keys')
    parser.add_argument('--skip-indices', type=int, nargs='*', default=None,
                        help='0-based skipped blocks of the target model (default: 3..8 for official '
                        'SkipAt, the Phi blocks for mmevit, none for a plain ViT)')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='fully unpickle SRC (arbitrary code execution: only for files you trust)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.exists(args.dst) and not args.force:
        print(f'error: {args.dst} exists; pass --force to overwrite it', file=sys.stderr)
        return 1
    if osp.isdir(args.dst):
        print(f'error: {args.dst} is a directory', file=sys.stderr)
        return 1
    if args.trust_checkpoint:
        with compat.trust_checkpoints():
            checkpoint = read_checkpoint(args.src)
    else:
        checkpoint = read_checkpoint(args.src)
    state, meta, dropped = convert_checkpoint(checkpoint, args.model, args.skip_indices)
    meta.update(converted_from=osp.basename(args.src), mmevit_version=mmevit.__version__, dropped_keys=dropped)
    parent = osp.dirname(osp.abspath(args.dst))
    if not osp.isdir(parent):
        print(f'error: directory {parent} does not exist', file=sys.stderr)
        return 1
    torch.save({'state_dict': state, 'meta': meta}, args.dst)
    print(f'{args.src} ({meta["source_format"]}) -> {args.dst}: {len(state)} keys, {args.model}, '
          f'skip_indices={tuple(meta["backbone"]["skip_indices"])}')
    if dropped:
        print(f'dropped {len(dropped)} keys: ' + ', '.join(dropped))
    return 0


if __name__ == '__main__':
    sys.exit(main())
