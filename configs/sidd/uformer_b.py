# Uformer-B on SIDD sRGB denoising, the official recipe (ZhendongWang6/Uformer: train/train_denoise.py with
# --arch Uformer_B --batch_size 32 --train_ps 128 --warmup, options.py defaults) on mmengine:
# - Data: SIDD-Medium sRGB cut into 256x256 patch pairs, 300 per image (tools/dataset_converters/sidd_crops.py:
#   320 images -> 96,000 pairs in data/sidd/train/{input,groundtruth}), random 128x128 crops and one of the 8
#   dihedral transforms per sample; validation on the 1280 official 256x256 blocks (data/sidd/val/
#   ValidationNoisyBlocksSrgb.mat and ValidationGtBlocksSrgb.mat), PSNR/SSIM on 8-bit RGB.
# - Model: Uformer-B (win 8, LeFF, modulator, img_size 128 = the training patch, drop path 0.1), Charbonnier
#   loss with eps 1e-3 on the prediction clamped to [0, 1]; from the 6th epoch on, mixup of each batch with a
#   shuffled copy (Beta(1.2, 1.2) weights), as the official MixUp_AUG.
# - Schedule: AdamW (lr 2e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.02), 3 warm-up epochs then cosine to
#   1e-6, 250 epochs = 250 x 3,000 iterations of batch 32, as an iteration-based loop (resuming never replays
#   an epoch); the official warm-up steps once per epoch, this one per iteration. Mixed precision, as the
#   official torch.cuda.amp training (tools/train.py falls back to bfloat16 on CPUs).
# Recipe: 1 GPUs x 32 images (batch 32), 750k iterations, 128x128 crops.
_base_ = ['../_base_/restoration_runtime.py']  # scope, loops, hooks (PSNR-best checkpoints, RNGStateHook)

iters_per_epoch = 3000  # 96,000 training pairs / batch 32
max_iters = 250 * iters_per_epoch
warmup_iters = 3 * iters_per_epoch
crop_size = (128, 128)

# ----------------------------------------------------------------------------- data
train_pipeline = [
    dict(type='LoadImagePair'),
    dict(type='PairedRandomCrop', crop_size=crop_size[0]),
    dict(type='RandomDihedral'),
    dict(type='PackRestorationInputs'),
]
val_pipeline = [dict(type='PackRestorationInputs')]  # the .mat blocks are in memory already
train_dataloader = dict(
    batch_size=32,  # the total batch: on N GPUs use 32 / N per GPU
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='PairedImageDataset', data_root='data/sidd/train',
                 data_prefix=dict(img='input', gt='groundtruth'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SIDDValidationBlocks', data_root='data/sidd/val', pipeline=val_pipeline))
test_dataloader = val_dataloader  # SIDD's benchmark blocks have no public ground truth
val_evaluator = [dict(type='PSNR'), dict(type='SSIM')]
test_evaluator = val_evaluator

# ----------------------------------------------------------------------------- model
model = dict(
    type='Denoiser',
    generator=dict(type='Uformer', arch='b', img_size=crop_size[0], win_size=8, drop_path_rate=0.1,
                   modulator=True),
    pixel_loss=dict(type='CharbonnierLoss', eps=1e-3),
    data_preprocessor=dict(type='RestorationDataPreprocessor', mixup=dict(alpha=1.2, start_iter=5 * iters_per_epoch)),
    train_cfg=dict(clamp_output=True),
    # Whole 256x256 blocks; for full-resolution SIDD images (up to 5328x3000) use tiles, e.g. tile=512.
    test_cfg=dict(tile=None, tile_overlap=32))

# ----------------------------------------------------------------------------- schedule
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 * iters_per_epoch)
auto_scale_lr = dict(enable=False, base_batch_size=32)

# ----------------------------------------------------------------------------- runtime
default_hooks = dict(checkpoint=dict(interval=5 * iters_per_epoch))
