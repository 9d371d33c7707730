"""Shrink a shipped ADE20K / COCO config to the demo data sets of ``make_demo_data`` (no pretrained download,
128-px images, narrow heads, two iterations of batch 2), and run it through ``tools/train.py`` then
``tools/test.py`` in-process: the end-to-end checks of every family's dense configs."""
import os.path as osp
from typing import List, Tuple

from tools_helpers import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

_COCO_MODELS = {
    'retinanet': '''model = dict(
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=32),
    bbox_head=dict(num_classes={num_classes}, in_channels=32, feat_channels=32, stacked_convs=1),
    test_cfg=dict(nms_pre=200, score_thr=0.0, max_per_img=20))''',
    'mask-rcnn': '''model = dict(
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes={num_classes}),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32, num_classes={num_classes})),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=20)))''',
}
# score_thr 0: two iterations at the warm-up lr leave every score below mmdet's 0.05, and CocoMetric reports
# nothing for an empty result.
_COCO = '''
_base_ = {base!r}
data_root = {data_root!r}
metainfo = dict(classes={classes!r})
{model}
_load = dict(type='LoadAnnotations', with_bbox=True, with_mask={with_mask})
train_pipeline = [dict(type='LoadImageFromFile'), _load, dict(type='Resize', scale=(128, 128), keep_ratio=True),
                  dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 128), keep_ratio=True), _load,
                 dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                                       'scale_factor'))]
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
'''

_ADE_HEADS = {
    'fpn': 'neck=dict(out_channels=32),\n    decode_head=dict(in_channels=[32] * 4, channels=32, '
           'num_classes={num_classes}, norm_cfg=norm_cfg))',
    'upernet': 'decode_head=dict(channels=32, num_classes={num_classes}, norm_cfg=norm_cfg),\n    '
               'auxiliary_head=dict(channels=16, num_classes={num_classes}, norm_cfg=norm_cfg))',
}
# BN instead of SyncBN (one process).
_ADE = '''
_base_ = {base!r}
data_root = {data_root!r}
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),
    {heads}
_dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=dict(classes={classes!r}), img_suffix='.jpg',
                seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **_dataset,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                           dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **_dataset,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=2, by_epoch=False)]
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
'''


def coco_demo_config(config: str, data_root: str, detector: str) -> str:
    """``configs/coco/<config>.py`` on the COCO demo set; ``detector``: ``'retinanet'`` or ``'mask-rcnn'``."""
    from mmevit.datasets import demo_coco
    n = len(demo_coco.CLASSES)
    return _COCO.format(base=osp.join(REPO, 'configs', 'coco', f'{config}.py'), data_root=data_root,
                        classes=demo_coco.CLASSES, model=_COCO_MODELS[detector].format(num_classes=n),
                        with_mask=detector == 'mask-rcnn')


def ade_demo_config(config: str, data_root: str, head: str) -> str:
    """``configs/ade20k/<config>.py`` on the ADE20K demo set; ``head``: ``'fpn'`` or ``'upernet'``."""
    from mmevit.datasets import demo_ade
    return _ADE.format(base=osp.join(REPO, 'configs', 'ade20k', f'{config}.py'), data_root=data_root,
                       classes=demo_ade.CLASSES, heads=_ADE_HEADS[head].format(num_classes=len(demo_ade.CLASSES)))


def logged(work) -> str:
    return ''.join(p.read_text() for p in work.glob('*/*.log'))


def train_and_test(cfg_text: str, tmp_path, name: str, checkpoint: str) -> Tuple[str, dict]:
    """Write the config, train it (``--no-validate``), test ``checkpoint`` of the work dir: (train log, metrics)."""
    cfg = tmp_path / f'{name}.py'
    cfg.write_text(cfg_text)
    work = tmp_path / 'work'
    load_tool('train').main([str(cfg), '--work-dir', str(work), '--no-validate'])
    metrics = load_tool('test').main([str(cfg), str(work / checkpoint), '--work-dir', str(tmp_path / 'test')])
    return logged(work), metrics


def restoration_demo_options(data_root: str, batch_size: int, iters: int) -> List[str]:
    """``--cfg-options`` that run a restoration demo config on ``data_root`` for ``iters`` iterations (half of
    them warm-up), validating and saving once at the end."""
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}', f'test_dataloader.dataset.data_root={data_root}',
            f'train_dataloader.batch_size={batch_size}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'param_scheduler.0.end={iters // 2}',
            f'param_scheduler.1.begin={iters // 2}', f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={iters}']
