# SkipAt-S on ImageNet-1k, 224x224, 300 epochs: the DeiT recipe (as mmpretrain's deit configs implement it),
# preprocessed as the official SkipAt checkpoints were.
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
#
# Train: AdamW lr 1e-3 for batch 1024 (8 GPUs x 128), wd 0.05 (none on norms, biases, cls_token, pos_embed),
# 5 warm-up epochs then cosine to 1e-5, label smoothing 0.1, Mixup 0.8 / CutMix 1.0, RandAugment m9-mstd0.5,
# random erasing 0.25, repeated augmentation (3 repeats), drop path 0.1, grad-norm clip 5.
# Test: as the official validate.py (timm ViT default_cfg): bicubic resize of the short side to 248 (= 224 / 0.9),
# centre crop 224, mean = std = 0.5 (127.5 on 0-255 RGB input).
# The official checkpoints (see metafile.yml) hold a timm-style classifier (`head.weight`): tools/test.py converts
# them to this model's keys (`head.layers.head.weight`, Phi moved into the skipped blocks), and
# tools/model_converters/convert.py writes the converted file once (the command is in metafile.yml).
_base_ = ['../_base_/imagenet_deit_300e.py']  # data, runtime, DeiT schedule (batch 1024), RNGStateHook

embed_dims = 384
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SkipAtViT',
        arch='s',
        img_size=224,
        patch_size=16,
        skip_indices=(3, 4, 5, 6, 7, 8),  # the paper's: blocks 4-9 (1-based) skip attention
        out_type='cls_token',
        final_norm=True,
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=embed_dims,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # No model-level init_cfg: SkipAtViT initialises itself as timm's ViT does and leaves Phi at PyTorch's
    # default init, as the official model does.
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

mean = [127.5, 127.5, 127.5]
std = [127.5, 127.5, 127.5]
# FiniteClsDataPreprocessor: mmpretrain's ClsDataPreprocessor that refuses NaN/Inf training batches.
data_preprocessor = dict(type='FiniteClsDataPreprocessor', num_classes=1000, mean=mean, std=std, to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=mean,
        fill_std=std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
