"""``EvoViTScheduleHook``: Evo-ViT's layer-to-stage training schedule.

The official training (``engine_deit.py``, ``engine_levit.py`` of github.com/YifanXu74/Evo-ViT) runs the
first epochs with *layer-wise* pruning (every pruned layer ranks the tokens again) and, for Evo-LeViT, a fixed
score trade-off of 0.5; from epoch 200 on it switches to *stage-wise* pruning (one selection per stage, the
inference path) and the learned trade-off ``sigmoid(learn_tradeoff)``. The models keep these as settings
(``set_evo_schedule(stage_wise=..., learn_tradeoff=...)``, training mode only: evaluation always runs the
inference path); this hook sets them from the epoch (or iteration) before every training step, so a resumed
run lands in the right phase.

Config: ``custom_hooks = [dict(type='mmevit.EvoViTScheduleHook', switch_epoch=200)]``. Because the
trade-off parameters get no gradient before the switch, distributed training needs
``model_wrapper_cfg=dict(type='MMDistributedDataParallel', find_unused_parameters=True)``.
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ...registry import HOOKS


@HOOKS.register_module()
class EvoViTScheduleHook(Hook):
    """Switch every Evo-ViT module of the model from layer-wise pruning with a fixed trade-off to stage-wise
    pruning with the learned trade-off.

    Args:
        switch_epoch: First (0-based) epoch of the second phase; the official recipes switch at 200 (of 300).
        switch_iter: First (0-based) iteration of the second phase, for iteration-based training.
            Exactly one of ``switch_epoch`` and ``switch_iter`` is given.
    """

    priority = 'NORMAL'

    def __init__(self, switch_epoch: Optional[int] = None, switch_iter: Optional[int] = None) -> None:
        if (switch_epoch is None) == (switch_iter is None):
            raise ValueError('EvoViTScheduleHook: give exactly one of switch_epoch and switch_iter')
        for name, v in (('switch_epoch', switch_epoch), ('switch_iter', switch_iter)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f'EvoViTScheduleHook: {name} must be an int >= 0, got {v!r}')
        self.switch_epoch, self.switch_iter = switch_epoch, switch_iter
        self._phase: Optional[bool] = None

    def before_train(self, runner) -> None:
        self._apply(runner)

    def before_train_epoch(self, runner) -> None:
        self._apply(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.switch_iter is not None:
            self._apply(runner)

    def _apply(self, runner) -> None:
        second = (runner.epoch >= self.switch_epoch if self.switch_epoch is not None
                  else runner.iter >= self.switch_iter)
        if second == self._phase:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        targets = [m for m in model.modules() if callable(getattr(m, 'set_evo_schedule', None))]
        if not targets:
            raise RuntimeError('EvoViTScheduleHook: the model has no Evo-ViT module (no set_evo_schedule); '
                               'remove the hook or use an EvoViT/EvoLeViT backbone')
        for m in targets:
            m.set_evo_schedule(stage_wise=second, learn_tradeoff=second)
        self._phase = second
        where = f'epoch {runner.epoch}' if self.switch_epoch is not None else f'iteration {runner.iter}'
        print_log(f'EvoViTScheduleHook: {where}: '
                  + ('stage-wise pruning, learned trade-off' if second else 'layer-wise pruning, fixed trade-off'),
                  logger='current')
