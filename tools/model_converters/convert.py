"""Convert an official / timm / mmpretrain / mmevit checkpoint to the exact keys of a model, for any family.

    python tools/model_converters/convert.py SRC DST --config CONFIG      # the config's whole model
    python tools/model_converters/convert.py SRC DST --model SPEC         # a registered model, e.g.
                                                                         #   'SkipAtViT:arch=s'
        [--allow-missing] [--force] [--trust-checkpoint]

The target model is built on the meta device (no memory, no init); the checkpoint goes through the family's
own converter (``mmevit.engine.convert.convert_for_model``) and is checked strictly: every key of the model
must come from SRC with its shape, and nothing else may be left (source keys the family drops on purpose,
e.g. the unused attention of SkipAt's skipped blocks or a classifier head for a segmentor, are listed). DST
is ``{'state_dict': ..., 'meta': {...}}`` of plain tensors and data, readable with
``torch.load(DST, weights_only=True)``; it loads into the model with ``load_state_dict(strict=True)``, as
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` (``--model``) or ``load_from=DST`` (``--config``).
"""
import argparse
import os
import os.path as osp
import sys

import torch

import mmevit
from mmevit import compat
from mmevit.engine.convert import (CheckpointMismatchError, build_from_spec, check_state_dict,
                                   convert_for_model)
from mmevit.engine.runner_checkpoints import build_meta_model
from mmevit.models.checkpoint import read_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert a checkpoint to the keys of an mmevit model')
    parser.add_argument('src', help='source checkpoint (path or URL)')
    parser.add_argument('dst', help='output file (must not exist, unless --force)')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('--config', help='convert for this config\'s model (mmseg/mmdet/mmpretrain/mmevit)')
    target.add_argument('--model', metavar='SPEC',
                        help="convert for a registered model: 'Name:key=value,...', e.g. 'SkipAtViT:arch=s'")
    parser.add_argument('--allow-missing', action='store_true',
                        help='accept model keys the checkpoint does not provide (saved without them)')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists (never SRC)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='fully unpickle SRC (arbitrary code execution: only for files you trust)')
    return parser.parse_args(argv)


def build_config_model(config: str) -> torch.nn.Module:
    from mmengine.config import Config
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    return build_meta_model(cfg.model, cfg.get('default_scope'))


def check_paths(src: str, dst: str, force: bool) -> None:
    """DST is never SRC (in any spelling), never a directory, and exists only with --force."""
    same = osp.realpath(src) == osp.realpath(dst)
    if '://' not in src and osp.exists(src) and osp.exists(dst):
        same = same or osp.samefile(src, dst)  # hard links, bind mounts
    if same:
        raise FileExistsError(f'DST {dst!r} is the source checkpoint: refusing to overwrite it')
    if osp.isdir(dst):
        raise IsADirectoryError(f'DST {dst!r} is a directory')
    if osp.exists(dst) and not force:
        raise FileExistsError(f'DST {dst!r} exists; pass --force to overwrite it')
    parent = osp.dirname(osp.abspath(dst))
    if not osp.isdir(parent):
        raise FileNotFoundError(f'directory {parent} does not exist')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_paths(args.src, args.dst, args.force)
        model = build_config_model(args.config) if args.config else build_from_spec(args.model)
        if args.trust_checkpoint:
            with compat.trust_checkpoints():
                checkpoint = read_checkpoint(args.src)
        else:
            checkpoint = read_checkpoint(args.src)
        state, dropped = convert_for_model(checkpoint, model)
        check_state_dict(state, model, allow_missing=args.allow_missing, source=args.src)
    except (CheckpointMismatchError, FileExistsError, FileNotFoundError, IsADirectoryError, KeyError,
            TypeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    meta = dict(converted_from=osp.basename(args.src), mmevit_version=mmevit.__version__,
                target=args.config or args.model, dropped_keys=list(dropped))
    tmp = args.dst + '.tmp'
    torch.save({'state_dict': state, 'meta': meta}, tmp)
    os.replace(tmp, args.dst)  # a failed save never leaves a half-written DST
    print(f'{args.src} -> {args.dst}: {len(state)} keys for {type(model).__name__} ({meta["target"]})')
    if dropped:
        print(f'dropped {len(dropped)} source keys: ' + ', '.join(dropped))
    return 0


if __name__ == '__main__':
    sys.exit(main())
