"""Config edits shared by ``tools/train.py`` and ``tools/test.py``, for configs of any toolbox.

The config's ``default_scope`` (mmseg, mmdet, mmpretrain or mmevit) decides which registries the Runner
builds from; nothing here depends on it except ``enable_show_dir``, which knows each toolbox's
visualization hook.
"""
import argparse
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The options train.py and test.py share: --cfg-options, --launcher, --trust-checkpoint, --local-rank."""
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value (e.g. train_cfg.max_iters=10)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='fully unpickle checkpoints (arbitrary code execution: only for files you trust)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(args: argparse.Namespace) -> Config:
    """Read ``args.config``, apply ``--cfg-options``, the launcher and the work dir (train.py and test.py)."""
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    return cfg


def set_work_dir(cfg: Config, work_dir: Optional[str], config_path: str) -> str:
    """``--work-dir`` > the config's ``work_dir`` > ``./work_dirs/<config name>``.

    Refuses a path that exists and is not a directory (a user's file is never replaced by a work dir).
    """
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    if osp.exists(cfg.work_dir) and not osp.isdir(cfg.work_dir):
        raise FileExistsError(f'work dir {cfg.work_dir!r} exists and is not a directory: refusing to use it')
    return cfg.work_dir


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``resume='auto'``: the latest checkpoint of the work dir (mmengine's ``last_checkpoint``), or, when
    there is none yet, a fresh start that keeps the config's ``load_from`` initialisation; a path: that
    checkpoint; ``None``: no resuming. Call after ``set_work_dir``."""
    if resume is None:
        return
    if resume == 'auto':
        from mmengine.runner import find_latest_checkpoint
        if find_latest_checkpoint(cfg.work_dir) is None:
            print_log(f'--resume: no checkpoint in {cfg.work_dir} yet, starting a new run', logger='current',
                      level=30)
            return
        cfg.resume = True
        cfg.load_from = None  # mmengine then resumes the work dir's latest checkpoint
        return
    if '://' not in resume and not osp.isfile(resume):
        raise FileNotFoundError(f'--resume: checkpoint file not found: {resume}')
    cfg.resume = True
    cfg.load_from = resume


def enable_amp(cfg: Config) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision; returns the wrapper type chosen.

    With CUDA: mmengine's ``AmpOptimWrapper`` (dynamic loss scaling, dtype from the config or float16).
    Without: ``CPUAmpOptimWrapper`` (bfloat16 autocast), since ``AmpOptimWrapper`` asserts a GPU.
    """
    wrapper = cfg.get('optim_wrapper')
    if wrapper is None:
        raise KeyError('--amp needs an optim_wrapper in the config')
    if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        raise ValueError(f"--amp supports OptimWrapper configs, got type={wrapper['type']!r}")
    if torch.cuda.is_available():
        wrapper['type'] = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
        wrapper.setdefault('dtype', 'float16')
    else:
        wrapper['type'] = 'CPUAmpOptimWrapper'
        wrapper.pop('loss_scale', None)
        if wrapper.get('dtype') not in (None, 'bfloat16'):
            print_log(f"--amp without CUDA: autocasting to bfloat16, not {wrapper['dtype']}", logger='current',
                      level=30)
        wrapper['dtype'] = 'bfloat16'
    return wrapper['type']


def cpu_fallback_for_amp(cfg: Config) -> bool:
    """A config that asks for ``AmpOptimWrapper`` cannot build without CUDA: use the CPU variant instead."""
    wrapper = cfg.get('optim_wrapper')
    if torch.cuda.is_available() or not wrapper or wrapper.get('type') != 'AmpOptimWrapper':
        return False
    print_log('AmpOptimWrapper needs CUDA: using CPUAmpOptimWrapper (bfloat16 autocast) instead',
              logger='current', level=30)
    enable_amp(cfg)
    return True


def set_launcher(cfg: Config, launcher: str) -> None:
    cfg.launcher = launcher


def enable_show_dir(cfg: Config, show_dir: str) -> None:
    """Make the config's visualization hook draw every test prediction into ``show_dir``."""
    show_dir = osp.abspath(show_dir)  # mmdet would otherwise place a relative one under the work dir
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = hook.get('type', '') if hook else ''
    if kind.endswith('SegVisualizationHook'):
        hook.update(draw=True, interval=1)
        if cfg.get('visualizer') is None:
            raise KeyError('--show-dir needs a visualizer in the config')
        cfg.visualizer['save_dir'] = show_dir
    elif kind.endswith('DetVisualizationHook'):
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    elif kind.endswith('VisualizationHook'):  # mmpretrain
        hook.update(enable=True, out_dir=show_dir, interval=1)
    else:
        raise KeyError(f'--show-dir needs a visualization hook in default_hooks (got {kind or "none"})')


def check_out_file(out: str) -> None:
    """``--out`` dumps predictions with mmengine's ``DumpResults``: a new ``.pkl`` file."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out!r}')
    if osp.exists(out):
        raise FileExistsError(f'--out {out!r} exists: refusing to overwrite it')


def build_runner(cfg: Config):
    """``Runner.from_cfg``, or the config's own ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
