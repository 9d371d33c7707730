"""Evaluate a checkpoint on a config's test set (mmseg / mmdet / mmpretrain / mmevit configs).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show-dir DIR] [--show] [--tta] [--compile]
    torchrun --nproc_per_node N tools/test.py CONFIG CHECKPOINT --launcher pytorch   (or tools/dist_test.sh)

CHECKPOINT may be any checkpoint the config's model family reads: an mmevit/OpenMMLab training checkpoint,
or an official/timm/mmpretrain one (whole model or bare backbone), converted into a temporary file in the work
dir that is removed afterwards. It must provide every key of the model and nothing else: a mismatch is an
error naming the keys, and nothing is evaluated (``--allow-missing`` accepts missing keys, with a warning
naming them). ``--out``: mmseg configs write a directory of PNG label maps, mmdet/mmpretrain ones a ``.pkl``.
"""
import argparse
import contextlib
import os.path as osp
import sys

import mmevit  # noqa: F401  (compat shims, registration into the toolboxes)
from mmengine.config import Config
from mmevit import compat
from mmevit.engine import runner_setup
from mmevit.engine.convert import CheckpointMismatchError
from mmevit.engine.runner_checkpoints import checkpoint_for_model
from mmevit.models.checkpoint import CheckpointReadError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model (mmengine Runner)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or URL (mmevit/OpenMMLab, or official/timm/mmpretrain '
                        'weights of the config\'s backbone family)')
    parser.add_argument('--work-dir', help='directory for the evaluation logs and metrics '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--out', help='save the predictions: a new directory of PNG label maps for mmseg configs, '
                        'a new .pkl file for mmdet/mmpretrain configs')
    parser.add_argument('--show', action='store_true', help='show each prediction in a window')
    parser.add_argument('--show-dir', help='draw the predictions into this directory')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each --show window stays up')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation with the config\'s tta_model and tta_pipeline')
    parser.add_argument('--allow-missing', action='store_true',
                        help='evaluate even when the checkpoint lacks keys of the model (they keep their '
                        'initialisation; a warning names them)')
    parser.add_argument('--compile', action='store_true',
                        help='compile the backbone/neck/generator with frozen weights (torch.compile, inductor) for '
                        'faster inference; the first batches include compilation time')
    runner_setup.add_runner_args(parser)
    return runner_setup.parse_runner_args(parser, argv)


def build_cfg(args: argparse.Namespace) -> Config:
    cfg = runner_setup.load_config(args)
    runner_setup.cpu_fallback_for_amp(cfg)
    if args.show or args.show_dir:
        runner_setup.enable_visualization(cfg, args.show_dir, args.show, args.wait_time)
    if args.out:
        runner_setup.set_test_out(cfg, args.out)
    if args.tta:
        runner_setup.enable_tta(cfg)
    if args.compile:
        runner_setup.enable_inference_compile(cfg)
    return cfg


def main(argv=None) -> dict:
    args = parse_args(argv)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
    trust = compat.trust_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust, runner_setup.registry_hints():  # a mistyped type= names the closest registered names
        cfg = build_cfg(args)
        model_cfg = cfg.model.module if args.tta else cfg.model
        with checkpoint_for_model(args.checkpoint, model_cfg, cfg.get('default_scope'), cfg.work_dir,
                                  allow_missing=args.allow_missing) as path:
            cfg.load_from = path
            compat.prepare_cpu_distributed(cfg, args.launcher)
            return runner_setup.build_runner(cfg).test()


if __name__ == '__main__':
    try:
        main()
    except (CheckpointMismatchError, CheckpointReadError, FileNotFoundError,
            runner_setup.UnregisteredTypeError) as e:  # evaluate nothing
        sys.exit(f'error: {e}')
