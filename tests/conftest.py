import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURES = osp.join(osp.dirname(REPO), 'shared', 'fixtures')


@pytest.fixture(scope='session')
def fixtures_dir() -> str:
    if not osp.isdir(FIXTURES):
        pytest.fail(f'parity fixtures not found at {FIXTURES} (shared/ must sit beside the repo)')
    return FIXTURES


# A RetinaNet on a SkipAtViT-T (single stride-16 map, FPN extra levels to stride 256), small test pipeline:
# shared by test_registry.py (mmdet's train.py) and test_inferencers.py (DetInferencer).
TINY_RETINANET = """\
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(_delete_=True, type='SkipAtViT', arch='t', img_size=(128, 128), out_indices=(11,),
                  final_norm=False),
    neck=dict(in_channels=[192], out_channels=32, start_level=0, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(num_classes=2, in_channels=32, feat_channels=32, stacked_convs=1,
                   anchor_generator=dict(strides=[16, 32, 64, 128, 256])))
metainfo = dict(classes=('cat', 'dog'), palette=[(220, 20, 60), (0, 0, 142)])
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(dataset=dict(metainfo=metainfo, pipeline=test_pipeline))
"""


@pytest.fixture
def tiny_retinanet_config(tmp_path) -> str:
    path = tmp_path / 'retinanet_skipat_t.py'
    path.write_text(TINY_RETINANET)
    return str(path)


@pytest.fixture(autouse=True)
def _isolate_default_scope():
    """A test that builds a Runner or calls ``init_default_scope`` leaves mmengine's current default scope set
    for every later test (mmevit classes are then looked up in, e.g., mmseg's registries): drop the scopes a
    test created, so each test starts from the scope it found."""
    from mmengine.registry import DefaultScope
    before = list(DefaultScope._instance_dict)
    yield
    for name in list(DefaultScope._instance_dict):
        if name not in before:
            DefaultScope._instance_dict.pop(name)
