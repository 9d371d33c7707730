"""Train a model from an mmseg / mmdet / mmpretrain / mmevit config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch      (or tools/dist_train.sh)

The config's ``default_scope`` picks the toolbox. Without CUDA, ``--launcher pytorch`` runs on CPUs with
gloo (``mmevit.compat.prepare_cpu_distributed``) and ``--amp`` autocasts to bfloat16.
"""
import argparse
import contextlib

import mmevit  # noqa: F401  (compat shims, registration into the toolboxes)
from mmengine.config import Config
from mmevit import compat
from mmevit.engine import runner_setup

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model (mmengine Runner)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or without a value from the latest checkpoint of the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 AmpOptimWrapper on CUDA, bfloat16 autocast on CPU')
    runner_setup.add_runner_args(parser)
    return runner_setup.parse_runner_args(parser, argv)

def build_cfg(args: argparse.Namespace) -> Config:
    cfg = runner_setup.load_config(args)
    runner_setup.set_resume(cfg, args.resume)
    if args.amp:
        runner_setup.enable_amp(cfg)
    else:
        runner_setup.cpu_fallback_for_amp(cfg)
    compat.prepare_cpu_distributed(cfg, args.launcher)
    return cfg

def main(argv=None) -> None:
    args = parse_args(argv)
    trust = compat.trust_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust:
        cfg = build_cfg(args)
        runner = runner_setup.build_runner(cfg)
        runner.train()

if __name__ == '__main__':
    main()
