"""``SafeCheckpointHook``: mmengine's ``CheckpointHook`` that only ever deletes checkpoints its training wrote.

mmengine's ``max_keep_ckpts`` deletes ``<out_dir>/iter_N.pth`` (or ``epoch_N.pth``) by *number*: the step ids
come from the message hub, which ``--resume`` restores from the checkpoint, and the best checkpoint's path
likewise. Resuming another run's checkpoint into a folder that holds a user's ``iter_N.pth`` therefore deleted
that file. This hook records every checkpoint path it writes (in the message hub, so the record travels with
the checkpoint and survives ``--resume``) and deletes a file only when it is on that record and inside this
run's checkpoint folder; anything else is kept and logged. Saving and naming are unchanged.

``tools/train.py`` swaps it in for the config's ``CheckpointHook`` (``runner_setup.use_safe_checkpoint_hook``);
a config may also name it directly: ``default_hooks.checkpoint.type='mmevit.SafeCheckpointHook'``
(registered when ``mmevit.engine.hooks`` is imported).
"""
import os.path as osp
from typing import Set

from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ...registry import HOOKS

# Message-hub runtime key holding the paths written by this training (saved in every checkpoint).
WRITTEN_KEY = 'mmevit_checkpoints_written'


class _OwnFilesOnly:
    """A file backend proxy whose ``remove``/``rmtree`` act only on the hook's own checkpoints."""

    def __init__(self, backend, hook: 'SafeCheckpointHook') -> None:
        self._backend = backend
        self._hook = hook

    def remove(self, path: str) -> None:
        if self._hook.owns(path):
            self._backend.remove(path)
            self._hook.forget(path)

    def rmtree(self, path: str) -> None:  # deepspeed checkpoints are folders
        if self._hook.owns(path):
            self._backend.rmtree(path)
            self._hook.forget(path)

    def __getattr__(self, name: str):
        return getattr(self._backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose ``max_keep_ckpts`` and best-checkpoint rotation delete only
    files this training wrote, in its own checkpoint folder."""

    def __init__(self, *args, **kwargs) -> None:
        self._written: Set[str] = set()
        self._runner = None
        self._best_before = None
        super().__init__(*args, **kwargs)

    # mmengine assigns ``self.file_backend`` in ``before_train`` and deletes through it, in the same method
    # and later; wrapping it on assignment covers every deletion path.
    @property
    def file_backend(self):
        return self._file_backend

    @file_backend.setter
    def file_backend(self, backend) -> None:
        self._file_backend = _OwnFilesOnly(backend, self)

    def owns(self, path: str) -> bool:
        inside = self.out_dir is not None and osp.normpath(osp.dirname(path)) == osp.normpath(self.out_dir)
        if inside and path in self._written:
            return True
        print_log(f'{type(self).__name__}: not deleting {path}: this training did not write it',
                  logger='current', level=30)
        return False

    def forget(self, path: str) -> None:
        self._written.discard(path)
        self._publish()

    def _remember(self, *paths) -> None:
        self._written.update(p for p in paths if p)
        self._publish()

    def _publish(self) -> None:
        if self._runner is not None:
            self._runner.message_hub.update_info(WRITTEN_KEY, sorted(self._written))

    def _best_paths(self) -> Set[str]:
        hub = self._runner.message_hub.runtime_info
        return {v for k, v in hub.items() if v and (k == 'best_ckpt' or k.startswith('best_ckpt_'))}

    def before_train(self, runner) -> None:
        self._runner = runner
        # A resumed checkpoint carries the record of the training it belongs to.
        self._written = set(runner.message_hub.get_info(WRITTEN_KEY) or [])
        super().before_train(runner)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # Recorded before saving, so that the checkpoint's own message hub lists it (and a best checkpoint
        # written just before, when mmengine re-saves the last checkpoint to store the new best).
        paths = {self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))}
        if self._best_before is not None:
            paths |= self._best_paths() - self._best_before
        self._remember(*paths)
        super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        # A best path that changes during this call is a file this call wrote; one restored by --resume is not.
        self._best_before = self._best_paths()
        try:
            super()._save_best_checkpoint(runner, metrics)
            self._remember(*(self._best_paths() - self._best_before))
        finally:
            self._best_before = None
