"""Evaluate a checkpoint on a config's test set (mmseg / mmdet / mmpretrain / mmevit configs).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl] [--show-dir DIR]
    torchrun --nproc_per_node N tools/test.py CONFIG CHECKPOINT --launcher pytorch   (or tools/dist_test.sh)

CHECKPOINT may be an mmevit/OpenMMLab checkpoint (loaded as it is) or a bare ViT checkpoint: official
SkipAt (``blocks.*``, ``param_k.*``, ``head.*``, possibly under ``model``/``state_dict_ema``), timm or an
mmevit backbone. Those are converted for the config's model (whose backbone must be ``SkipAtViT``) into a
temporary file in the work dir, which is removed afterwards.
"""
import argparse
import contextlib
import os
import os.path as osp
import tempfile
from typing import Iterator

import torch

import mmevit  # noqa: F401  (compat shims, registration into the toolboxes)
from mmengine.config import Config
from mmengine.logging import print_log
from mmevit import compat
from mmevit.engine import runner_setup
from mmevit.engine.convert import convert_for_model, is_bare_vit, toolbox_free_state
from mmevit.models.checkpoint import read_checkpoint

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model (mmengine Runner)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (mmevit/OpenMMLab, or official SkipAt/timm ViT)')
    parser.add_argument('--work-dir', help='directory for the evaluation logs and metrics '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the predictions to this new .pkl file')
    parser.add_argument('--show-dir', help='draw the predictions into this directory')
    runner_setup.add_runner_args(parser)
    return runner_setup.parse_runner_args(parser, argv)

def build_model(cfg: Config) -> torch.nn.Module:
    """The config's model, built in its default scope (for converting a checkpoint to its keys)."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return MODELS.build(cfg.model)

@contextlib.contextmanager
def checkpoint_for_model(cfg: Config, checkpoint: str) -> Iterator[str]:
    """Yield a path the Runner can load: ``checkpoint`` itself, or a converted copy of a bare ViT one."""
    ckpt = read_checkpoint(checkpoint)  # FileNotFoundError naming a missing file
    try:
        state = toolbox_free_state(ckpt)
    except KeyError:
        state = {}
    if not is_bare_vit(state):
        yield checkpoint
        return
    converted, dropped = convert_for_model(ckpt, build_model(cfg))
    print_log(f'{checkpoint}: bare ViT checkpoint converted for {cfg.model.get("type")} '
              f'({len(converted)} keys)', logger='current')
    if dropped:
        print_log(f'{checkpoint}: keys with no place in this model (dropped): {dropped}', logger='current',
                  level=30)
    os.makedirs(cfg.work_dir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix='converted_', suffix='.pth', dir=cfg.work_dir)
    os.close(fd)
    try:
        torch.save({'state_dict': converted, 'meta': {'converted_from': str(checkpoint)}}, path)
        yield path
    finally:
        os.remove(path)

def build_cfg(args: argparse.Namespace) -> Config:
    cfg = runner_setup.load_config(args)
    runner_setup.cpu_fallback_for_amp(cfg)
    if args.show_dir:
        runner_setup.enable_show_dir(cfg, args.show_dir)
    if args.out:
        runner_setup.check_out_file(args.out)
    compat.prepare_cpu_distributed(cfg, args.launcher)
    return cfg

def main(argv=None) -> dict:
    args = parse_args(argv)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
    trust = compat.trust_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust:
        cfg = build_cfg(args)
        with checkpoint_for_model(cfg, args.checkpoint) as path:
            cfg.load_from = path
            runner = runner_setup.build_runner(cfg)
            if args.out:
                from mmengine.evaluator import DumpResults
                runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
            return runner.test()

if __name__ == '__main__':
    main()
