"""Every model registered by mmevit builds small, runs forward with finite outputs, and backpropagates
into every parameter. A new registered class must add its small kwargs here (the sweep fails otherwise)."""
import pytest
import torch

import mmevit
from mmevit.registry import MODELS

SMALL_KWARGS = {
    'SkipAtViT': dict(arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                      skip_indices=(1, 2), img_size=64, out_indices=(0, 2, 3), drop_path_rate=0.1),
    'LIT': dict(arch=dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_heads=[1, 2, 3, 4],
                          mlp_ratios=[2, 2, 2, 2], position='relative'),
                img_size=64, out_norm_indices=(1, 2, 3), drop_path_rate=0.1),
    'SimpleFeaturePyramid': dict(in_channels=32, out_channels=16),
    'EvoViT': dict(arch=dict(embed_dims=32, num_layers=5, num_heads=2, feedforward_channels=64), img_size=64,
                   keep_ratios=(1, 1, .5, .5, .5), tradeoffs=(1, .5, .5, .5, .5), selection_layers=(2, 4),
                   out_indices=(1, 3, 4), drop_path_rate=0.1),
    'EvoLeViT': dict(arch=dict(embed_dims=[16, 24, 32], key_dim=8, num_heads=[2, 3, 4], depths=[3, 2, 2]),
                     img_size=64, drop_path_rate=0.1),
    'EvoViTClsHead': dict(num_classes=5, in_channels=16),
    'EvoLeViTClsHead': dict(num_classes=5, in_channels=16),
    'Uformer': dict(arch=dict(embed_dims=4, depths=[1, 2, 1, 1, 1, 1, 1, 2, 1], num_heads=[1, 1, 2, 2, 4, 4, 2, 2, 1]),
                    img_size=64, skipat='attention', drop_path_rate=0.1),
    'Denoiser': dict(generator=dict(type='Uformer', arch=dict(embed_dims=4, depths=[1] * 9,
                                                              num_heads=[1, 1, 2, 2, 4, 4, 2, 2, 1]),
                                    img_size=64, skipat='feature')),
    'CharbonnierLoss': dict(),
    'RestorationDataPreprocessor': dict(),
    'FiniteSegDataPreProcessor': dict(mean=[127.5] * 3, std=[127.5] * 3),
    'FiniteDetDataPreprocessor': dict(mean=[127.5] * 3, std=[127.5] * 3, pad_size_divisor=8),
    'FiniteClsDataPreprocessor': dict(mean=[127.5] * 3, std=[127.5] * 3),
    'UniFormerDenoiser': dict(arch=dict(embed_dims=4, depths=[1, 1, 2, 1], num_heads=[1, 2, 2]), skip_attention=True,
                              drop_path_rate=0.1),
    'VideoDenoiser': dict(generator=dict(type='UniFormerDenoiser', arch=dict(embed_dims=4, depths=[1] * 4,
                                                                             num_heads=[1, 1, 2]))),
}
INPUTS = {
    'SkipAtViT': lambda: torch.randn(2, 3, 48, 64),
    'LIT': lambda: torch.randn(2, 3, 44, 72),
    'SimpleFeaturePyramid': lambda: (torch.randn(2, 32, 6, 8), ),
    'EvoViT': lambda: torch.randn(2, 3, 48, 64),
    'EvoLeViT': lambda: torch.randn(2, 3, 80, 112),
    'EvoViTClsHead': lambda: ([torch.randn(2, 16), torch.randn(2, 16)], ),
    'EvoLeViTClsHead': lambda: ([torch.randn(4, 16), torch.randn(4, 16)], ),
    'Uformer': lambda: torch.rand(2, 3, 40, 72),
    'Denoiser': lambda: torch.rand(1, 3, 64, 48),
    'UniFormerDenoiser': lambda: torch.rand(2, 3, 3, 40, 72),
    'VideoDenoiser': lambda: torch.rand(1, 2, 3, 64, 48),
    # a dict is passed as keyword arguments
    'CharbonnierLoss': lambda: dict(pred=torch.rand(2, 3, 8, 8, requires_grad=True), target=torch.rand(2, 3, 8, 8)),
    'RestorationDataPreprocessor': lambda: dict(data=dict(inputs=[torch.rand(3, 8, 8, requires_grad=True)] * 2),
                                                training=False),
    # the toolboxes' preprocessors with the training-time NaN/Inf check (tests/test_data_errors.py tests it)
    'FiniteSegDataPreProcessor': lambda: dict(data=dict(inputs=[torch.rand(3, 8, 8, requires_grad=True)] * 2),
                                              training=False),
    'FiniteDetDataPreprocessor': lambda: dict(data=dict(inputs=[torch.rand(3, 8, 6, requires_grad=True)] * 2),
                                              training=False),
    'FiniteClsDataPreprocessor': lambda: dict(data=dict(inputs=[torch.rand(3, 8, 8, requires_grad=True)] * 2),
                                              training=False),
}


def test_sweep_table_covers_every_registered_model():
    assert set(MODELS.module_dict) == set(SMALL_KWARGS), 'add the new model to SMALL_KWARGS/INPUTS'


@pytest.mark.parametrize('name', sorted(MODELS.module_dict))
def test_registered_model_forward_backward(name):
    from mmengine.registry import DefaultScope

    from mmevit.registry import EXPORTS, TOOLBOXES
    # Build in the scope the class is used from (a toolbox head builds its losses from that toolbox), whatever
    # scope earlier tests left behind.
    scope = next((tb for tb in TOOLBOXES if name in EXPORTS[tb]), 'mmevit')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type=name, **SMALL_KWARGS[name]))
    model.train()
    inputs = INPUTS[name]()
    outs = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    if isinstance(outs, dict):  # a data preprocessor: its tensors
        outs = [v for v in outs.values() if isinstance(v, torch.Tensor)]
    outs = [o for o in (outs if isinstance(outs, (tuple, list)) else [outs])]
    assert outs and all(torch.isfinite(o).all() for o in outs)
    sum(o.float().pow(2).mean() for o in outs).backward()
    missing = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    # A model may declare the parameters it leaves unused by design in this mode (e.g. Evo-ViT's training-only
    # heads at inference, a fixed trade-off); exactly those, and nothing else, get no gradient.
    declared = model.unused_parameters() if hasattr(model, 'unused_parameters') else set()
    assert missing == declared, (f'{name}: no gradient for {sorted(missing - declared)}; declared unused but '
                                 f'got a gradient: {sorted(declared - missing)}')


@pytest.mark.parametrize('toolbox', ['mmseg', 'mmdet', 'mmpretrain'])
@pytest.mark.parametrize('name', sorted(MODELS.module_dict))
def test_registered_in_every_installed_toolbox(toolbox, name):
    import importlib
    from mmevit.registry import EXPORTS
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    if name not in EXPORTS[toolbox]:  # exports are explicit per class (e.g. a detection neck: mmdet only)
        assert registry.get(name) is not MODELS.get(name) and name not in mmevit.REGISTERED_INTO[toolbox]
        return
    assert registry.get(name) is MODELS.get(name)
    assert name in mmevit.REGISTERED_INTO[toolbox]
