"""CUDA checks (run with `pytest -m gpu` on a GPU machine; CI has none and deselects them)."""
import glob
import os.path as osp

import pytest
import torch

import mmevit
from mmevit.models.backbones.skipat_vit import SkipAtViT

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]


def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    model = SkipAtViT('t', out_indices=(2, 5, 8, 11)).eval()
    x = torch.randn(2, 3, 224, 320)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.cpu(), b, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_autocast_half_precision(dtype):
    torch.manual_seed(0)
    model = SkipAtViT('s').cuda().eval()
    x = torch.randn(2, 3, 512, 512, device='cuda')
    with torch.no_grad():
        ref = model(x)[0]
        with torch.autocast('cuda', dtype=dtype):
            out = model(x)[0]
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out.float() - ref).abs().mean() / ref.abs().mean() < 2e-2


def test_cuda_parity_with_official_fixtures(fixtures_dir):
    paths = sorted(glob.glob(osp.join(fixtures_dir, '*', '*.pt')))
    assert paths, f'no parity fixtures under {fixtures_dir}'
    for path in paths:
        name = {'skipat': 'skipat_vit', 'uformer': 'uformer'}.get(osp.basename(osp.dirname(path)))
        if name is None or name not in mmevit.official.OFFICIAL_BUILDERS:
            continue  # families whose fixtures map to several builders are checked in their own files
        fx = torch.load(path, weights_only=False)
        model = mmevit.from_official(name, fx['arch'], fx['state_dict']).cuda()
        with torch.no_grad():
            out = model(fx['input'].cuda()).cpu()
        torch.testing.assert_close(out, fx['output'], atol=1e-4, rtol=1e-3)


def test_cuda_training_step_reaches_every_parameter():
    model = SkipAtViT('t', out_indices=(3, 11), drop_path_rate=0.1).cuda().train()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 224, 224, device='cuda'))
    sum(o.float().pow(2).mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
