# Evo-ViT-S (DeiT-S with slow-fast token evolution) on ImageNet-1k, 224x224, 300 epochs: the DeiT recipe (as
# mmpretrain's deit configs implement it) with Evo-ViT's two heads and layer-to-stage schedule.
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
#
# Train: AdamW lr 1e-3 for batch 1024 (the DeiT rule 5e-4 x batch / 512), wd 0.05 (none on norms, biases, cls_token,
# pos_embed), 5 warm-up epochs then cosine to 1e-5, label smoothing 0.1, Mixup 0.8 / CutMix 1.0, RandAugment
# m9-mstd0.5, random erasing 0.25, repeated augmentation (3 repeats), drop path 0.1, grad-norm clip 5.
# Evo-ViT (engine_deit.py of the official code): the loss is 0.5 CE(head on the mean of all patch tokens)
# + 0.5 CE(head_cls on the CLS token); layer-wise token selection for epochs 0-199, stage-wise (the inference path)
# from epoch 200 on (EvoViTScheduleHook). Evaluation always runs the stage-wise inference path.
# Test: ImageNet mean/std, bicubic resize of the short side to 256, centre crop 224 (the official eval).
#
# Fewer GPUs: the lr is for batch 1024 and is NOT rescaled by default (an issue on the official repository reports
# 66.2 % instead of 79.4 % top-1 for Evo-ViT-S trained on one GPU with the unchanged recipe). Either keep the batch
# with gradient accumulation, e.g. 1 GPU: `--cfg-options optim_wrapper.accumulative_counts=8` (8 x 128 = 1024),
# or scale the lr with the batch: `tools/train.py CONFIG --auto-scale-lr` (lr x real total batch / 1024).
# Weights: the official checkpoints are on Google Drive (links in github.com/YifanXu74/Evo-ViT); download by hand,
# then `python tools/model_converters/convert.py evo_deit_small_patch16_224.pth evo_vit_s_3rdparty_in1k.pth
# --config configs/imagenet/evo_vit_s.py` (or pass the downloaded file to tools/test.py directly).
_base_ = ['../_base_/imagenet_deit_300e.py']  # data, runtime, DeiT schedule (batch 1024), RNGStateHook

embed_dims = 384
# mmpretrain's ClsDataPreprocessor (the base file's settings) + NaN/Inf check in training.
data_preprocessor = dict(type='FiniteClsDataPreprocessor')
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='EvoViT',
        arch='s',
        img_size=224,
        patch_size=16,
        # official schedule (None = defaults): keep_ratios [1]*4 + [0.5]*8, tradeoffs [1]*4 + [0.5]*8,
        # token selection before layers 4 and 8
        out_type='avg_featmap',  # norm(mean of all patch tokens)
        train_cls_token=True,    # + norm_cls(CLS) for the training-only head
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='EvoViTClsHead',
        num_classes=1000,
        in_channels=embed_dims,
        cls_loss_weight=0.5,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
custom_hooks = [*_base_.custom_hooks, dict(type='mmevit.EvoViTScheduleHook', switch_epoch=200)]  # + RNGStateHook
