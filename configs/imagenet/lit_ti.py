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
_base_ = ['../_base_/imagenet_deit_300e.py']  # data, runtime, DeiT schedule (batch 1024), RNGStateHook

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

val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.conv_offset': dict(lr_mult=0.01),
        '.conv_offset.bias': dict(lr_mult=0.01, decay_mult=0.0),
    }),
    clip_grad=None,  # the official LIT-Ti recipe does not clip
)
