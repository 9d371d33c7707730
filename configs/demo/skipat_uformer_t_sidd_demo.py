# SkipAt-Uformer-T trained from scratch on the SIDD-layout demo data (mmevit/datasets/demo_sidd.py: real
# photographs with Poisson-Gaussian camera noise; make it with `python tools/misc/make_demo_data.py sidd
# data/demo_sidd`), on CPU in a few minutes. Compared with configs/sidd/skipat_uformer_t.py:
# - img_size 64 and 64x64 crops (the network then pads nothing: size_divisor 64) from 96x96 patches, batch 8,
#   no drop path and no mixup (a 300-iteration run does not overfit);
# - AdamW at 1e-3 (5x the recipe: the schedule is 2,500x shorter), 20 warm-up iterations, cosine to 1e-5, fp32;
# - validation once at the end on the 24 held-out 64x64 blocks (other photographs than the training ones), with
#   the PSNR/SSIM of the noisy input next to the restored one (prefix 'noisy').
_base_ = ['../_base_/restoration_runtime.py']  # scope, loops, hooks (PSNR-best checkpoints, RNGStateHook)

# What tools/demo.py (`bash tools/run_demo.sh sidd`) does with this config: make the demo data in
# data_root, train, and pass if the restored held-out PSNR beats the noisy input's by >= min_gain dB.
demo = dict(task='sidd', num_train=240, num_val=24, seed=0, min_gain=3.0)

data_root = 'data/demo_sidd'
crop = 64
max_iters = 300
warmup_iters = 20

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='PairedImageDataset', data_root=data_root,
                 data_prefix=dict(img='train/input', gt='train/groundtruth'),
                 pipeline=[dict(type='LoadImagePair'), dict(type='PairedRandomCrop', crop_size=crop),
                           dict(type='RandomDihedral'), dict(type='PackRestorationInputs')]))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SIDDValidationBlocks', data_root=data_root, noisy_file='val/ValidationNoisyBlocksSrgb.mat',
                 gt_file='val/ValidationGtBlocksSrgb.mat', pipeline=[dict(type='PackRestorationInputs')]))
test_dataloader = val_dataloader
val_evaluator = [dict(type='PSNR'), dict(type='SSIM'),
                 dict(type='PSNR', pred_key='input_img', prefix='noisy'),
                 dict(type='SSIM', pred_key='input_img', prefix='noisy')]
test_evaluator = val_evaluator

model = dict(
    type='Denoiser',
    generator=dict(type='Uformer', arch='t', img_size=crop, drop_path_rate=0., skipat='attention'),
    pixel_loss=dict(type='CharbonnierLoss', eps=1e-3),
    data_preprocessor=dict(type='RestorationDataPreprocessor'),
    train_cfg=dict(clamp_output=True))

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)

default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best=None,
                                                                rule=None))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
