# LIT-S on ImageNet-1k: the official LIT-S/M/B recipe (the Swin Transformer training code it is built on).
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
#
# Train: AdamW lr 1e-3 for batch 1024 (5e-4 x 1024 / 512), wd 0.05 (none on norms, biases and relative-position
# bias tables), 20 warm-up epochs then cosine to 1e-5, grad-norm clip 5, label smoothing 0.1, Mixup 0.8 / CutMix
# 1.0, RandAugment m9-mstd0.5, random erasing 0.25, drop path 0.2 (M 0.3, B 0.5). The DTM offset convolutions
# learn at 0.01x the lr (the official OFFSET_LR_MULTI).
# Test: bicubic resize of the short side to 256, centre crop 224, ImageNet mean/std (the official evaluation).
# Head: LayerNorm -> mean over the 7x7 tokens -> linear (the backbone's final_norm + out_type='avg_featmap').
# The official checkpoints (lit_s.pth, ...; see lit_metafile.yml) load through tools/test.py, which converts them
# (the relative_position_index buffers are dropped, `head.*` becomes `head.fc.*`).
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
        arch='s',
        img_size=224,
        out_indices=(3, ),
        out_type='avg_featmap',
        final_norm=True,
        drop_path_rate=0.2),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),  # timm's init, as the official
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    # No model-level init_cfg: LIT initialises itself as the official code does.
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

# Total batch 1024 = 8 GPUs x 128 images; the lr is for that batch. As in mmdet, it is NOT rescaled by default:
# `tools/train.py --auto-scale-lr` scales it by (real total batch) / base_batch_size.
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.relative_position_bias_table': dict(decay_mult=0.0),
            '.conv_offset': dict(lr_mult=0.01),
            '.conv_offset.bias': dict(lr_mult=0.01, decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
