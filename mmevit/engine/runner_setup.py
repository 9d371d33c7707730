"""Config edits shared by ``tools/train.py`` and ``tools/test.py``, for configs of any toolbox.

The config's ``default_scope`` (mmseg, mmdet, mmpretrain or mmevit) decides which registries the Runner
builds from; ``enable_visualization`` (each toolbox's visualization hook) and ``set_test_out`` (mmseg writes
PNG label maps, the others a ``.pkl``) follow it as the toolboxes' own tools do. The checks of a work dir
(``check_work_dir``) and of a checkpoint to resume (``check_resume``) run before the Runner is built.
"""
import argparse
import contextlib
import difflib
import importlib
import os
import os.path as osp
import re
from typing import Iterator, List, Optional

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


def enable_visualization(cfg: Config, show_dir: Optional[str] = None, show: bool = False,
                         wait_time: float = 2.) -> None:
    """``--show``/``--show-dir``/``--wait-time``: make the config's visualization hook draw every test
    prediction, into ``show_dir`` and/or a window shown for ``wait_time`` seconds (as each toolbox's test.py)."""
    if show_dir:
        show_dir = osp.abspath(show_dir)  # mmdet would otherwise place a relative one under the work dir
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = hook.get('type', '') if hook else ''
    if kind.endswith('SegVisualizationHook'):
        hook.update(draw=True, interval=1)
        if show_dir:
            if cfg.get('visualizer') is None:
                raise KeyError('--show-dir needs a visualizer in the config')
            cfg.visualizer['save_dir'] = show_dir
    elif kind.endswith('DetVisualizationHook'):
        hook['draw'] = True
        if show_dir:
            hook['test_out_dir'] = show_dir
    elif kind.endswith('VisualizationHook'):  # mmpretrain
        hook.update(enable=True, interval=1)
        if show_dir:
            hook['out_dir'] = show_dir
    else:
        raise KeyError(f'--show/--show-dir need a visualization hook in default_hooks (got {kind or "none"})')
    if show:
        hook.update(show=True, wait_time=wait_time)


def enable_tta(cfg: Config) -> None:
    """``--tta``: test the config's ``tta_model`` wrapped around its model, on its ``tta_pipeline`` (mmseg's and
    mmdet's test.py; mmseg's ADE20K base files define both)."""
    lacking = [k for k in ('tta_model', 'tta_pipeline') if cfg.get(k) is None]
    if lacking:
        raise KeyError(f'--tta needs {" and ".join(lacking)} in the config (e.g. tta_model=dict(type='
                       "'SegTTAModel') and a TestTimeAug tta_pipeline, as in mmseg's _base_/datasets/ade20k.py)")
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = dict(cfg.tta_model, module=cfg.model)


def enable_inference_compile(cfg: Config) -> None:
    """``--compile``: ``InferenceCompileHook`` (the networks compiled with frozen weights before testing)."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(str(h.get('type', '')).split('.')[-1] == 'InferenceCompileHook' for h in hooks):
        hooks.append(dict(type='mmevit.InferenceCompileHook'))
    cfg.custom_hooks = hooks


def _metric_cfgs(evaluator) -> list:
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


def _add_metric(cfg: Config, metric: dict) -> None:
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator['metrics'] = _metric_cfgs(evaluator) + [metric]
    else:
        cfg.test_evaluator = _metric_cfgs(evaluator) + [metric]


def set_test_out(cfg: Config, out: str) -> None:
    """``--out`` as the config's toolbox has it.

    mmseg: a directory of PNG label maps, written by ``IoUMetric(output_dir=out)`` (``keep_results=True`` as
    mmseg's test.py sets it); it must not exist or be empty. mmdet: a new ``.pkl`` through
    ``DumpDetResults`` (masks RLE-encoded); other toolboxes: a new ``.pkl`` through mmengine's ``DumpResults``.
    """
    if cfg.get('default_scope') == 'mmseg':
        if osp.exists(out) and not osp.isdir(out):
            raise FileExistsError(f'--out {out!r} is a file: an mmseg config writes a directory of PNG label maps')
        if osp.isdir(out) and os.listdir(out):
            raise FileExistsError(f'--out {out!r} is a non-empty directory: refusing to write label maps into it')
        metrics = [m for m in _metric_cfgs(cfg.test_evaluator) if str(m.get('type', '')).endswith('IoUMetric')]
        if not metrics:
            raise KeyError('--out with an mmseg config writes PNG label maps through IoUMetric(output_dir=...), '
                           'but the config\'s test_evaluator has no IoUMetric')
        for metric in metrics:
            metric.update(output_dir=osp.abspath(out), keep_results=True)
        return
    check_out_file(out)
    dump = 'DumpDetResults' if cfg.get('default_scope') == 'mmdet' else 'DumpResults'
    _add_metric(cfg, dict(type=dump, out_file_path=out))


def check_out_file(out: str) -> None:
    """``--out`` for mmdet/mmpretrain configs: a new ``.pkl`` file."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file for this config, got {out!r}')
    if osp.exists(out):
        raise FileExistsError(f'--out {out!r} exists: refusing to overwrite it')


def enable_auto_scale_lr(cfg: Config) -> None:
    """``--auto-scale-lr`` (mmdet/mmpretrain): scale the lr by the real total batch size over the config's
    ``auto_scale_lr.base_batch_size``."""
    auto = cfg.get('auto_scale_lr')
    if not auto or auto.get('base_batch_size') is None:
        raise KeyError('--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in the config: the total '
                       'batch size (GPUs x samples per GPU) its learning rate was set for')
    auto['enable'] = True


def disable_validation(cfg: Config) -> None:
    """``--no-validate`` (mmpretrain): train without the validation loop, dataloader and evaluator."""
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None


class WorkDirInUseError(FileExistsError):
    """The work dir holds checkpoints a new training would overwrite."""


def checkpoint_dirs(cfg: Config) -> list:
    """The local folders the config's CheckpointHook writes into: the work dir, or
    ``<out_dir>/<work dir name>`` when the hook sets ``out_dir`` (as mmengine does)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir')
    if out_dir and osp.abspath(out_dir) != osp.abspath(cfg.work_dir):
        return [osp.join(out_dir, osp.basename(osp.abspath(cfg.work_dir)))] if '://' not in out_dir else []
    return [cfg.work_dir]


def check_work_dir(cfg: Config, force: bool = False) -> None:
    """Refuse a work dir that already holds checkpoints (``*.pth``, ``last_checkpoint``), unless this run
    resumes (``cfg.resume``) or ``force``: a new training would overwrite them. Call after ``set_resume``."""
    if force or cfg.get('resume'):
        return
    found = []
    for folder in checkpoint_dirs(cfg):
        if osp.isdir(folder):
            found += [osp.join(folder, f) for f in sorted(os.listdir(folder))
                      if f == 'last_checkpoint' or (f.endswith('.pth') and osp.isfile(osp.join(folder, f)))]
    if found:
        shown = ', '.join(osp.basename(f) for f in found[:10]) + (f' (+{len(found) - 10} more)' if found[10:] else '')
        raise WorkDirInUseError(
            f'work dir {osp.dirname(found[0])} already holds checkpoints this run did not write: {shown}. A new '
            'training would overwrite them. Use another --work-dir, --resume to continue that training, or '
            '--force to train here anyway (files this run did not write are never deleted).')


def use_safe_checkpoint_hook(cfg: Config) -> None:
    """Replace mmengine's CheckpointHook by ``mmevit.SafeCheckpointHook`` (same options), whose
    ``max_keep_ckpts`` deletes only checkpoints this training wrote."""
    from mmengine.hooks import CheckpointHook

    from .hooks.checkpoint_hook import SafeCheckpointHook
    hooks = [(cfg.get('default_hooks') or {}).get('checkpoint')] + list(cfg.get('custom_hooks') or [])
    for hook in hooks:
        if not hook:
            continue
        kind = hook.get('type')
        if kind in ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
            hook['type'] = 'mmevit.SafeCheckpointHook'
        elif kind not in ('mmevit.SafeCheckpointHook', SafeCheckpointHook) and hook.get('max_keep_ckpts', -1) > 0:
            print_log(f'{kind} is not mmengine\'s CheckpointHook: its max_keep_ckpts may delete checkpoints of '
                      'the work dir that this run did not write', logger='current', level=30)


def check_resume(cfg: Config) -> None:
    """When the run resumes, check the checkpoint it will resume from (``runner_checkpoints.check_resumable``).
    Call after ``set_resume``."""
    if not cfg.get('resume'):
        return
    from mmengine.runner import find_latest_checkpoint

    from .runner_checkpoints import check_resumable
    path = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    if path is None:
        return  # mmengine starts a new training
    check_resumable(path, cfg.get('model'), cfg.get('default_scope'))


def build_runner(cfg: Config):
    """``Runner.from_cfg``, or the config's own ``runner_type`` (a mistyped ``type=`` gets ``registry_hints``)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with registry_hints():
        if 'runner_type' in cfg:
            return RUNNERS.build(cfg)
        return Runner.from_cfg(cfg)


# ---------------------------------------------------------------------- config typos in type=
# mmengine's message for a type no registry knows (also when wrapped by an outer build's message).
_NOT_REGISTERED = re.compile(r'`?(?P<name>[\w.]+)`? is not in the (?P<scope>\w+)::(?P<registry>[\w ]+) registry')


class UnregisteredTypeError(KeyError):
    """A config names a ``type`` that is not registered; the message suggests the registered names closest to
    it. A ``KeyError``, as mmengine's own error, printed without ``KeyError``'s quoting."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


def _registry_of(scope: str, name: str):
    """The registry called ``name`` in ``scope`` (``mmseg``, ``mmevit``, ``mmengine``...), or None."""
    from mmengine.registry import Registry
    try:
        module = importlib.import_module('mmengine.registry' if scope == 'mmengine' else f'{scope}.registry')
    except ImportError:
        return None
    for value in vars(module).values():
        if isinstance(value, Registry) and value.name == name and value.scope == scope:
            return value
    return None


def registered_names(scope: str, registry: str) -> List[str]:
    """Names a config in ``scope`` can give as ``type`` for ``registry``: bare names of that registry and its
    parents, and ``<scope>.Name`` for the other scopes' registries under the same root."""
    reg = _registry_of(scope, registry)
    if reg is None:
        return []
    names, node = [], reg
    while node is not None:
        names += list(node.module_dict)
        node = node.parent
    root = reg.root if hasattr(reg, 'root') else reg
    stack = [root]
    while stack:
        node = stack.pop()
        stack += list(node.children.values())
        if node is not reg and node.scope != 'mmengine':
            names += [f'{node.scope}.{n}' for n in node.module_dict]
    return list(dict.fromkeys(names))


def unregistered_type_hint(message: str) -> Optional[str]:
    """For mmengine's "X is not in the <scope>::<registry> registry" message, a hint naming the registered
    names closest to X (case-insensitive first), or None when the message is not that one."""
    m = _NOT_REGISTERED.search(message)
    if m is None:
        return None
    name, scope, registry = m.group('name'), m.group('scope'), m.group('registry')
    candidates = registered_names(scope, registry)
    bare = name.rsplit('.', 1)[-1]
    lowered = {c.rsplit('.', 1)[-1].lower(): c for c in reversed(candidates)}
    close = [lowered[bare.lower()]] if bare.lower() in lowered else []
    for c in difflib.get_close_matches(name, candidates, n=6, cutoff=0.6):
        if c.rsplit('.', 1)[-1] not in {k.rsplit('.', 1)[-1] for k in close}:  # one spelling per class name
            close.append(c)
    if close:
        return (f'type={name!r} is not a registered {registry} in scope {scope!r}: did you mean '
                + ' or '.join(repr(c) for c in close[:3]) + '?')
    return (f'type={name!r} is not a registered {registry} in scope {scope!r}, and no registered name is close; '
            "for a class of a package, add it to the config's custom_imports (e.g. custom_imports = "
            "dict(imports=['mmevit'])) or prefix its scope (type='mmevit.Name')")


@contextlib.contextmanager
def registry_hints() -> Iterator[None]:
    """Re-raise mmengine's error for an unregistered ``type=`` (a config typo such as ``type='SkipAtVit'``) as
    ``UnregisteredTypeError`` naming the closest registered names. Other errors pass unchanged."""
    try:
        yield
    except KeyError as e:
        message = str(e.args[0]) if e.args else ''
        hint = None if isinstance(e, UnregisteredTypeError) else unregistered_type_hint(message)
        if hint is None:
            raise
        raise UnregisteredTypeError(f'{hint}\n({message})') from e
