"""Tiny configs and data sets for the end-to-end tests of ``tools/`` (test_tools.py, test_dist.py).

Everything is written under a test's ``tmp_path``: an ADE20K-layout segmentation set (64x64 JPEG images,
PNG label maps with 0 = ignore as ADE20K's ``reduce_zero_label``), an mmseg ``EncoderDecoder`` config on a
4-block SkipAtViT with a SyncBN ``UPerHead``, an mmpretrain ``ImageClassifier`` config shaped like the
official SkipAt fixture, and an mmdet ``RetinaNet`` on a 4-image COCO-layout set. ``SEG_TTA`` adds mmseg's
ADE20K-style ``tta_model``/``tta_pipeline`` for ``--tta``.
"""
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')


def load_tool(name: str):
    """``tools/<name>.py`` (e.g. ``'train'``, ``'analysis/layer_correlation'``) as a module: ``main(argv)`` runs it
    in-process."""
    spec = importlib.util.spec_from_file_location('mmevit_test_tool_' + name.replace('/', '_'),
                                                  osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

SEG_CONFIG = '''
default_scope = 'mmseg'
data_root = {data_root!r}
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                           size=(64, 64)),
    backbone=dict(type='SkipAtViT',
                  arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                  img_size=64, patch_size=16, skip_indices=(2,), out_indices=(0, 1, 2, 3)),
    neck=dict(type='MultiLevelNeck', in_channels=[32] * 4, out_channels=32, scales=[4, 2, 1, 0.5]),
    decode_head=dict(type='UPerHead', in_channels=[32] * 4, in_index=[0, 1, 2, 3], pool_scales=(2, ),
                     channels=16, dropout_ratio=0.1, num_classes=3, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

metainfo = dict(classes=('wall', 'floor', 'sky'), palette=[[120, 120, 120], [80, 50, 50], [6, 230, 230]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                 seg_map_suffix='.png', reduce_zero_label=True,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                 seg_map_suffix='.png', reduce_zero_label=True,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=0., power=1.0, begin=0, end=100, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
'''

CLS_CONFIG = '''
default_scope = 'mmpretrain'
data_root = {data_root!r}
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=10, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                           to_rgb=True),
    backbone=dict(type='SkipAtViT',
                  arch=dict(embed_dims=36, num_layers=12, num_heads=3, feedforward_channels=144),
                  img_size={img_size}, patch_size=16, skip_indices=(3, 4, 5, 6, 7, 8), out_type='cls_token',
                  final_norm=True, norm_eps=1e-6),
    head=dict(type='VisionTransformerClsHead', num_classes=10, in_channels=36))
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root, ann_file='val.txt', data_prefix='val',
                 metainfo=dict(classes=[str(i) for i in range(10)]), with_label=True,
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    visualization=dict(type='VisualizationHook', enable=False))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
'''

DET_CONFIG = '''
default_scope = 'mmdet'
data_root = {data_root!r}
model = dict(
    type='RetinaNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='SkipAtViT',
                  arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                  img_size=64, patch_size=16, skip_indices=(2,), out_indices=(3,)),
    neck=dict(type='FPN', in_channels=[32], out_channels=32, start_level=0, add_extra_convs='on_output',
              num_outs=2),
    bbox_head=dict(type='RetinaHead', num_classes=1, in_channels=32, stacked_convs=1, feat_channels=32,
                   anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2, scales_per_octave=1,
                                         ratios=[1.0], strides=[16, 32]),
                   bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4, target_stds=[1.0] * 4),
                   loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                 ignore_iof_thr=-1),
                   sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=10))
metainfo = dict(classes=('box', ))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='PackDetInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64), keep_ratio=True),
                 dict(type='LoadAnnotations', with_bbox=True),
                 dict(type='PackDetInputs',
                      meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='ann.json', metainfo=metainfo,
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='ann.json', metainfo=metainfo,
                 data_prefix=dict(img='images/'), pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + '/ann.json', metric='bbox')
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
                     logger=dict(type='LoggerHook', interval=1),
                     visualization=dict(type='DetVisualizationHook'))
log_processor = dict(by_epoch=False)
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
randomness = dict(seed=0)
'''

# Appended to SEG_CONFIG for --tta: mmseg's ADE20K test-time augmentation (scales x flips, SegTTAModel).
SEG_TTA = '''
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (1.0, 1.5)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')]])
]
'''

# Appended to CLS_CONFIG for a training run.
CLS_TRAIN = '''
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=data_root, ann_file='val.txt', data_prefix='val',
                 metainfo=dict(classes=[str(i) for i in range(10)]), with_label=True,
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(by_epoch=False, max_iters=2)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
                     logger=dict(type='LoggerHook', interval=1))
log_processor = dict(by_epoch=False)
'''


def make_ade_like(root: str, num_train: int = 4, num_val: int = 2, size: int = 64, seed: int = 0) -> str:
    """ADE20K layout: images/{training,validation}/*.jpg, annotations/{training,validation}/*.png.

    Label maps hold 0 (ignored after ``reduce_zero_label``) and 1..3, in blocks, so the images carry the
    labels' structure (each class region has its own colour plus noise).
    """
    rng = np.random.default_rng(seed)
    colours = np.array([[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200]], dtype=np.float64)
    for split, n in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(n):
            blocks = rng.integers(0, 4, size=(4, 4))
            label = np.kron(blocks, np.ones((size // 4, size // 4), dtype=np.int64)).astype(np.uint8)
            img = colours[label] + rng.normal(0, 20, size=(size, size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                osp.join(root, 'images', split, f'{split}_{i}.jpg'))
            Image.fromarray(label).save(osp.join(root, 'annotations', split, f'{split}_{i}.png'))
    return root


def write_seg_config(tmp_path, data_root: Optional[str] = None, tta: bool = False) -> str:
    data_root = data_root or make_ade_like(str(tmp_path / 'ade'))
    path = str(tmp_path / ('tiny_skipat_upernet_tta.py' if tta else 'tiny_skipat_upernet.py'))
    with open(path, 'w') as f:
        f.write(SEG_CONFIG.format(data_root=data_root) + (SEG_TTA if tta else ''))
    return path


def make_cls_data(root: str, num: int = 2, size: int = 160, seed: int = 0) -> List[np.ndarray]:
    """Lossless PNG images + ``val.txt``; returns the RGB arrays as written."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'val'), exist_ok=True)
    images, lines = [], []
    for i in range(num):
        img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(osp.join(root, 'val', f'{i}.png'))
        images.append(img)
        lines.append(f'{i}.png {i % 10}')
    with open(osp.join(root, 'val.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return images


def write_cls_config(tmp_path, img_size: int = 160, train: bool = False) -> str:
    path = str(tmp_path / 'tiny_skipat_cls.py')
    with open(path, 'w') as f:
        f.write(CLS_CONFIG.format(data_root=str(tmp_path / 'cls'), img_size=img_size))
        if train:
            f.write(CLS_TRAIN)
    return path


def make_coco_like(root: str, num: int = 4, size: int = 64, seed: int = 0) -> str:
    """COCO layout (images/*.jpg, ann.json): one red 24x24 box per image, category 'box'."""
    import json
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, anns = [], []
    for i in range(num):
        img = rng.integers(0, 50, size=(size, size, 3), dtype=np.uint8)
        x, y = (int(v) for v in rng.integers(0, size - 24, size=2))
        img[y:y + 24, x:x + 24] = [200, 40, 40]
        Image.fromarray(img).save(osp.join(root, 'images', f'{i}.jpg'))
        images.append(dict(id=i, file_name=f'{i}.jpg', width=size, height=size))
        anns.append(dict(id=i, image_id=i, category_id=1, bbox=[x, y, 24, 24], area=576, iscrowd=0))
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=[dict(id=1, name='box')]), f)
    return root


def write_det_config(tmp_path) -> str:
    data_root = make_coco_like(str(tmp_path / 'coco'))
    path = str(tmp_path / 'tiny_skipat_retinanet.py')
    with open(path, 'w') as f:
        f.write(DET_CONFIG.format(data_root=data_root))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(**extra) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_tool(args: Sequence[str], timeout: int = 300, check: bool = True, **env) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` (or a shell script when ``args[0]`` ends in .sh); output captured."""
    script = osp.join(TOOLS, args[0])
    cmd = [script, *args[1:]] if script.endswith('.sh') else [sys.executable, script, *args[1:]]
    proc = subprocess.run(cmd, cwd=REPO, env=tool_env(PYTHON=sys.executable, **env), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n'
                             f'{proc.stderr[-6000:]}')
    return proc
