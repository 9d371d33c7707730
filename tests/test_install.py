"""The pinned stack is what tools/setup_env.sh installs, and mmcv's compiled ops work on it."""
from importlib.metadata import version

import torch


def test_pinned_versions():
    assert version('torch').startswith('2.14.1') and version('torchvision').startswith('0.29.1')
    assert version('mmcv') == '2.1.0' and version('mmengine') == '0.10.7'
    assert version('mmsegmentation') == '1.2.2' and version('mmdet') == '3.3.0'
    assert version('mmpretrain') == '1.2.0'


def test_mmcv_compiled_ops_run():
    from mmcv.ops import DeformConv2d, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    conv = DeformConv2d(4, 6, kernel_size=3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    zero_offset = torch.zeros(1, 2 * 9, 8, 8)
    # With zero offsets a deformable conv is an ordinary conv.
    torch.testing.assert_close(conv(x, zero_offset),
                               torch.nn.functional.conv2d(x, conv.weight, padding=1),  # mmcv: no bias
                               atol=1e-5, rtol=1e-4)


def test_torchvision_ops_import_beside_torch():
    """mmpretrain's registry imports torchvision.ops; PyPI's torchvision fails beside torch 2.13's file."""
    import torchvision.ops  # noqa: F401
    import mmpretrain.registry  # noqa: F401
