# LIT-Ti on ImageNet-1k: the official LIT-Ti recipe (the PVT / DeiT training code it is built on).
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
#
# Train: AdamW lr 1e-3 for batch 1024 (5e-4 x 1024 / 512), wd 0.05 (none on norms, biases, position embeddings
# and cls token), 5 warm-up epochs then cosine to 1e-5, label smoothing 0.1, Mixup 0.8 / CutMix 1.0, RandAugment
# m9-mstd0.5, random erasing 0.25, repeated augmentation (3 repeats), drop path 0.1, no gradient clipping. The DTM
# offset convolutions learn at 0.01x the lr (the official dconv_lr_ratio).
# Test: bicubic resize of the short side to 256, centre crop 224, ImageNet mean/std (the official evaluation).
# Head: cls token (prepended at stage 4) -> LayerNorm -> linear. The position embeddings are learned on the
# 56/28/14/7 stage grids of a 224 input.
# The official checkpoint (lit_ti.pth; see lit_metafile.yml) loads through tools/test.py, which converts it
# (`patch_embed<s>`/`pos_embed<s>`/`block<s>` renamed to this model's `layers.<i>`, `head.*` to `head.fc.*`).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

# mmpretrain's ClsDataPreprocessor (the base file's settings) + NaN/Inf check in training.
data_preprocessor = dict(type='FiniteClsDataPreprocessor')
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='LIT',
        arch='ti',
        img_size=224,
        out_indices=(3, ),
        out_type='cls_token',
        with_cls_token=True,
        final_norm=True,
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),  # timm's init, as the official
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    # No model-level init_cfg: LIT initialises itself as the official code does.
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

# Total batch 1024 = 8 GPUs x 128 images; the lr is for that batch. As in mmdet, it is NOT rescaled by default:
# `tools/train.py --auto-scale-lr` scales it by (real total batch) / base_batch_size.
train_dataloader = dict(
    batch_size=128,
    sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True, num_repeats=3))
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4 * 1024 / 512, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.conv_offset': dict(lr_mult=0.01),
            '.conv_offset.bias': dict(lr_mult=0.01, decay_mult=0.0),
        }),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
