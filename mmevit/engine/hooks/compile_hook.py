"""``InferenceCompileHook``: ``tools/test.py --compile``, the model's networks compiled with frozen weights for
the test run (``mmevit.engine.inference_compile``).

Config: ``custom_hooks = [dict(type='InferenceCompileHook')]`` (``'mmevit.InferenceCompileHook'`` from other
scopes; exported to the mmseg/mmdet/mmpretrain hook registries). It acts before the test loop only, after the
checkpoint is loaded: validation during training keeps running eager, since a frozen graph would keep the
weights of the first validation.
"""
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...registry import HOOKS, TOOLBOXES, export_to
from ..inference_compile import NETWORKS, compile_networks


@export_to(*TOOLBOXES, registry='HOOKS')
@HOOKS.register_module()
class InferenceCompileHook(Hook):
    """Compile the model's ``networks`` (default: backbone, neck, generator, whichever exist) before testing.

    Args:
        networks: Submodule names to compile.
        compile_cfg: Keyword arguments of ``torch.compile`` (e.g. ``dict(dynamic=True)`` for test sets whose
            image sizes vary a lot).
    """

    priority = 'LOWEST'

    def __init__(self, networks: Sequence[str] = NETWORKS, compile_cfg: Optional[dict] = None) -> None:
        if isinstance(networks, str) or not networks:
            raise ValueError(f'InferenceCompileHook: networks must be a non-empty list of names, got {networks!r}')
        self.networks = tuple(networks)
        self.compile_cfg = dict(compile_cfg or {})

    def before_test(self, runner) -> None:
        done = compile_networks(runner.model, self.networks, **self.compile_cfg)
        print_log(f'InferenceCompileHook: compiled {", ".join(done)} (torch.compile, frozen weights); the first '
                  'batches include compilation time', logger='current')
