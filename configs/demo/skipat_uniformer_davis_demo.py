# SkipAt UniFormer video denoiser trained from scratch on the DAVIS-layout demo data (mmevit/datasets/
# demo_davis.py: a camera panning and zooming over scikit-image photographs; make it with
# `python tools/misc/make_demo_data.py davis data/demo_davis`), on CPU in a few minutes. Compared with
# configs/davis/skipat_uniformer_denoiser.py:
# - a narrow network (C = 8, depths 1/1/2/1, heads 1/2/4, MLP ratio 2: 0.13 M parameters, 0.63 GMACs per
#   7x64x64 clip; 0.14 M and 0.75 G without SkipAt) on 7-frame 64x64 crops (size_divisor 64: nothing padded in
#   training), batch 2, 300 iterations (about 3.5 minutes on 2 busy CPU cores);
# - AdamW at 2e-3 (10x the recipe: the schedule is 1,000x shorter), 20 warm-up iterations, cosine to 1e-5, fp32;
# - validation once at the end on the 4 held-out sequences (other photographs; 10 frames of 96x128, restored in
#   7-frame windows every 3 frames, padded to 128x128 inside the model), with the PSNR/SSIM of the noisy input
#   next to the restored one (prefix 'noisy'). Pass criterion (tools/run_demo.sh davis): PSNR - noisy/PSNR >= 3 dB.
_base_ = ['../_base_/restoration_runtime.py']  # scope, loops, hooks (PSNR-best checkpoints, RNGStateHook)

# What tools/demo.py (`bash tools/run_demo.sh davis`) does with this config: make the demo data in
# data_root, train, and pass if the restored held-out PSNR beats the noisy input's by >= min_gain dB.
demo = dict(task='davis', num_train=12, num_val=4, seed=0, min_gain=3.0)

data_root = 'data/demo_davis'
sigma = 30
clip_len = 7
crop = 64
max_iters = 300
warmup_iters = 20

train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='VideoFramesDataset', data_root=data_root, ann_file='ImageSets/2017/train.txt',
                 data_prefix=dict(img='JPEGImages/480p'), min_frames=clip_len,
                 pipeline=[dict(type='LoadVideoFrames', clip_len=clip_len),
                           dict(type='VideoRandomCrop', crop_size=crop),
                           dict(type='VideoRandomFlip'),
                           dict(type='AddGaussianNoise', sigma=sigma),
                           dict(type='PackVideoInputs')]))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VideoFramesDataset', data_root=data_root, ann_file='ImageSets/2017/val.txt',
                 data_prefix=dict(img='JPEGImages/480p'),
                 pipeline=[dict(type='LoadVideoFrames'), dict(type='AddGaussianNoise', sigma=sigma, seed=0),
                           dict(type='PackVideoInputs')]))
test_dataloader = val_dataloader
val_evaluator = [dict(type='PSNR'), dict(type='SSIM'),
                 dict(type='PSNR', pred_key='input_img', prefix='noisy'),
                 dict(type='SSIM', pred_key='input_img', prefix='noisy')]
test_evaluator = val_evaluator

model = dict(
    type='VideoDenoiser',
    generator=dict(type='UniFormerDenoiser',
                   arch=dict(embed_dims=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 4], mlp_ratio=2.),
                   window_size=(clip_len, 8, 8), skip_attention=True),
    pixel_loss=dict(type='CharbonnierLoss', eps=1e-3),
    data_preprocessor=dict(type='RestorationDataPreprocessor'),
    train_cfg=dict(clamp_output=True),
    test_cfg=dict(num_frames=clip_len, frame_stride=3))

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)

default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best=None,
                                                                rule=None))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
