# UniFormer video denoiser (mmevit/models/denoisers/uniformer_denoiser.py, arch 's') on DAVIS-2017 with additive
# white Gaussian noise sigma = 30, the SkipAt paper's video-denoising setup (after TempFormer): multi-input
# multi-output on 7-frame clips, random 128x128 crops, Charbonnier loss.
# - Data: DAVIS-2017 480p (data/davis/JPEGImages/480p/<sequence>/*.jpg), the 60 train sequences (ImageSets/2017/
#   train.txt) for training: a random 7-frame clip of a random sequence per sample, a random 128x128 crop,
#   random horizontal / vertical flips and time reversal, fresh Gaussian noise (sigma 30 on 0-255, unclipped).
#   Test: the 30 val sequences (first 85 frames, the FastDVDnet protocol), noise from seed 0 and the sequence
#   name (identical in every run); each sequence is restored in 7-frame windows every 4 frames (3 frames of
#   overlap; every output frame is the mean of the windows covering it), each window in 256x256 tiles
#   (overlap 32); PSNR/SSIM on 8-bit RGB per sequence (mean over its frames), averaged over the sequences.
#   Set8: the same pipeline with test_dataloader.dataset.data_root=data/set8, ann_file='' and
#   data_prefix=dict(img='') (one folder of frames per sequence).
# - Schedule (not given by the paper; ours): AdamW lr 2e-4 (betas 0.9/0.999, weight decay 0.02), 2k-iteration
#   linear warm-up, cosine to 1e-6 over 300k iterations of batch 16, mixed precision.
# Recipe: 4 GPUs x 4 images (batch 16), 300k iterations, 128x128 crops.
_base_ = ['../_base_/restoration_runtime.py']  # scope, loops, hooks (PSNR-best checkpoints, RNGStateHook)

sigma = 30
clip_len = 7
crop_size = (128, 128)  # of 7-frame clips
max_iters = 300_000
warmup_iters = 2_000

train_pipeline = [
    dict(type='LoadVideoFrames', clip_len=clip_len),
    dict(type='VideoRandomCrop', crop_size=crop_size[0]),
    dict(type='VideoRandomFlip', prob=0.5, directions=('horizontal', 'vertical', 'temporal')),
    dict(type='AddGaussianNoise', sigma=sigma),
    dict(type='PackVideoInputs'),
]
test_pipeline = [
    dict(type='LoadVideoFrames', max_frames=85),
    dict(type='AddGaussianNoise', sigma=sigma, seed=0),
    dict(type='PackVideoInputs'),
]
train_dataloader = dict(
    batch_size=4,  # per GPU: 4 GPUs x 4 = the total batch of 16
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='VideoFramesDataset', data_root='data/davis', ann_file='ImageSets/2017/train.txt',
                 data_prefix=dict(img='JPEGImages/480p'), min_frames=clip_len, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,  # whole sequences
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VideoFramesDataset', data_root='data/davis', ann_file='ImageSets/2017/val.txt',
                 data_prefix=dict(img='JPEGImages/480p'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='PSNR'), dict(type='SSIM')]
test_evaluator = val_evaluator

model = dict(
    type='VideoDenoiser',
    generator=dict(type='UniFormerDenoiser', arch='s', window_size=(clip_len, 8, 8), skip_attention=False,
                   drop_path_rate=0.),
    pixel_loss=dict(type='CharbonnierLoss', eps=1e-3),
    data_preprocessor=dict(type='RestorationDataPreprocessor'),
    train_cfg=dict(clamp_output=True),
    test_cfg=dict(num_frames=clip_len, frame_stride=4, tile=256, tile_overlap=32))

optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=20_000)
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(checkpoint=dict(interval=20_000))
