# The DeiT ImageNet-1k recipe (as mmpretrain's deit configs implement it), shared by mmevit's ViT-like classifiers:
# 224x224, 300 epochs, batch 1024 = 8 GPUs x 128 images with repeated augmentation (3 repeats), AdamW lr 1e-3
# (5e-4 x 1024 / 512), wd 0.05 (none on norms, biases, cls_token, pos_embed), grad-norm clip 5, 5 warm-up epochs
# then cosine to 1e-5; exact --resume. A config adds the model, its data preprocessing and its test pipeline.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

# Total batch 1024 = 8 GPUs x 128 images; the lr is for that batch. As in mmdet, it is NOT rescaled by default:
# `tools/train.py --auto-scale-lr` scales it by (real total batch) / base_batch_size, or keep the batch with
# `--cfg-options optim_wrapper.accumulative_counts=K` (K x GPUs x 128 = 1024).
train_dataloader = dict(
    batch_size=128,
    sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True, num_repeats=3))

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
            '.pos_embed': dict(decay_mult=0.0)
        }),
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
