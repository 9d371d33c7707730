"""Every model registered by mmevit builds small, runs forward with finite outputs, and backpropagates
into every parameter. A new registered class must add its small kwargs here (the sweep fails otherwise)."""
import pytest
import torch

import mmevit
from mmevit.registry import MODELS

SMALL_KWARGS = {
    'SkipAtViT': dict(arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                      skip_indices=(1, 2), img_size=64, out_indices=(0, 2, 3), drop_path_rate=0.1),
}
INPUTS = {
    'SkipAtViT': lambda: torch.randn(2, 3, 48, 64),
}


def test_sweep_table_covers_every_registered_model():
    assert set(MODELS.module_dict) == set(SMALL_KWARGS), 'add the new model to SMALL_KWARGS/INPUTS'


@pytest.mark.parametrize('name', sorted(MODELS.module_dict))
def test_registered_model_forward_backward(name):
    model = MODELS.build(dict(type=name, **SMALL_KWARGS[name]))
    model.train()
    outs = model(INPUTS[name]())
    outs = [o for o in (outs if isinstance(outs, (tuple, list)) else [outs])]
    assert outs and all(torch.isfinite(o).all() for o in outs)
    sum(o.float().pow(2).mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'{name}: no gradient for {missing}'


@pytest.mark.parametrize('toolbox', ['mmseg', 'mmdet', 'mmpretrain'])
@pytest.mark.parametrize('name', sorted(MODELS.module_dict))
def test_registered_in_every_installed_toolbox(toolbox, name):
    import importlib
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    assert registry.get(name) is MODELS.get(name)
    assert name in mmevit.REGISTERED_INTO[toolbox]
