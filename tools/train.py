"""Train a model from an mmseg / mmdet / mmpretrain / mmevit config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--force] [--amp] [--auto-scale-lr]
                          [--no-validate] [--cfg-options k=v ...]
    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch      (or tools/dist_train.sh)
    GPUS=16 tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR                 (--launcher slurm)

The config's ``default_scope`` picks the toolbox. A work dir that already holds checkpoints is refused unless
the run resumes (``--resume``) or ``--force`` is given, and ``max_keep_ckpts`` only ever deletes checkpoints
this training wrote. ``--resume CKPT`` checks that CKPT is a training checkpoint of the config's model before
the Runner starts. Without CUDA, ``--launcher pytorch`` runs on CPUs with gloo
(``mmevit.compat.prepare_cpu_distributed``) and ``--amp`` autocasts to bfloat16.
"""
import argparse
import contextlib
import sys

import mmevit  # noqa: F401  (compat shims, registration into the toolboxes)
from mmengine.config import Config
from mmevit import compat
from mmevit.engine import runner_setup
from mmevit.engine.runner_checkpoints import NotResumableError
from mmevit.models.checkpoint import CheckpointReadError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model (mmengine Runner)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or without a value from the latest checkpoint of the work dir')
    parser.add_argument('--force', action='store_true',
                        help='train in a work dir that already holds checkpoints (same-named ones are '
                        'overwritten; files this run did not write are never deleted)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 AmpOptimWrapper on CUDA, bfloat16 autocast on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the real total batch size over auto_scale_lr.base_batch_size')
    parser.add_argument('--no-validate', action='store_true', help='do not validate during training')
    runner_setup.add_runner_args(parser)
    return runner_setup.parse_runner_args(parser, argv)


def build_cfg(args: argparse.Namespace) -> Config:
    cfg = runner_setup.load_config(args)
    runner_setup.set_resume(cfg, args.resume)
    runner_setup.check_work_dir(cfg, force=args.force)
    runner_setup.check_resume(cfg)
    runner_setup.use_safe_checkpoint_hook(cfg)
    if args.auto_scale_lr:
        runner_setup.enable_auto_scale_lr(cfg)
    if args.no_validate:
        runner_setup.disable_validation(cfg)
    if args.amp:
        runner_setup.enable_amp(cfg)
    else:
        runner_setup.cpu_fallback_for_amp(cfg)
    compat.prepare_cpu_distributed(cfg, args.launcher)
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    trust = compat.trust_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust, runner_setup.registry_hints():  # a mistyped type= names the closest registered names
        cfg = build_cfg(args)
        runner = runner_setup.build_runner(cfg)
        runner.train()


if __name__ == '__main__':
    try:
        main()
    except (NotResumableError, runner_setup.WorkDirInUseError, CheckpointReadError,
            runner_setup.UnregisteredTypeError) as e:  # refused up front
        sys.exit(f'error: {e}')
