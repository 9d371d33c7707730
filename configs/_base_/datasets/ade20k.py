# mmseg's ADE20K data settings (mmseg::_base_/datasets/ade20k.py) with mmevit's checked annotation loading:
# LoadSegAnnotations (mmevit/datasets/seg_loading.py) is mmseg's LoadAnnotations that names the annotation file it
# cannot decode and refuses label maps with values outside the classes (after reduce_zero_label: stored 0 -> 255,
# ignored; stored v -> v - 1) other than 255 (ignored), instead of failing in the loss without the file (or, in
# IoUMetric, dropping them silently). reduce_zero_label comes from the dataset (ADE20KDataset: True).
# Changing the classes: set num_classes here (or the loaders' num_classes) as well as in the heads.
_base_ = ['mmseg::_base_/datasets/ade20k.py']

num_classes = 150
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSegAnnotations', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # after Resize: the ground truth is not resized
    dict(type='LoadSegAnnotations', num_classes=num_classes),
    dict(type='PackSegInputs')
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadSegAnnotations', num_classes=num_classes)],
            [dict(type='PackSegInputs')],
        ])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
