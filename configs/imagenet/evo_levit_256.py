# Evo-LeViT-256 on ImageNet-1k, 224x224: the LeViT recipe (mmpretrain's levit-256_8xb256_in1k) with Evo-ViT's
# heads and training schedule.
# Recipe: 8 GPUs x 256 images (batch 2048), 1000 epochs, 224x224 crops.
#
# Train: AdamW lr 2e-3 for batch 2048 (5e-4 x batch / 512), wd 0.025 (none on norms, biases, position embeddings,
# cls_token and the trade-off scalars), 5 warm-up epochs then cosine to 1e-5, label smoothing 0.1, Mixup 0.8 /
# CutMix 1.0, RandAugment, random erasing 0.25 (mmpretrain's ImageNet Swin pipeline), no drop path (0.1 for 384).
# Evo-LeViT (engine_levit.py / losses_levit.py of the official code): layer-wise token selection and a fixed score
# trade-off of 0.5 for epochs 0-199, then stage-wise selection and the learned trade-off (EvoViTScheduleHook).
# Loss: 0.5 x (CE(head) + CE(head_cls)) / 2 on the mean patch token and the CLS token, + 0.5 x the distillation
# heads' loss. Distillation set-up: the official code hard-distils head_dist/head_cls_dist from a RegNetY-160
# teacher (`--distillation-type hard --teacher-model regnety_160`); mmpretrain's ImageClassifier has no teacher,
# so here the distillation heads are fitted to the labels (teacher optional = absent): expect the no-teacher
# accuracy of LeViT, below the official distilled numbers.
# Several learn_tradeoff scalars get no gradient (all of them before the switch; the first attention's and the
# last stage's always), so DDP runs with find_unused_parameters=True.
# Evaluation: (head + head_dist) / 2 on the mean of all patch tokens, stage-wise pruning.
#
# Fewer GPUs: the lr is for batch 2048 and is NOT rescaled by default. Keep the batch with
# `--cfg-options optim_wrapper.accumulative_counts=K` (total 8 x 256 = K x GPUs x per-GPU batch) or scale the lr:
# `tools/train.py CONFIG --auto-scale-lr`.
# Weights: Google Drive only (github.com/YifanXu74/Evo-ViT); convert the downloaded file with
# `python tools/model_converters/convert.py EvoLeViT_256.pth evo_levit_256_3rdparty_in1k.pth
# --config configs/imagenet/evo_levit_256.py`.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs2048_adamw_levit.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

# mmpretrain's ClsDataPreprocessor (the base file's settings) + NaN/Inf check in training.
data_preprocessor = dict(type='FiniteClsDataPreprocessor')
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='EvoLeViT',
        arch='256',
        img_size=224,
        # official: keep_ratios [1, 1, 0.5, ...] (the first two layers are never pruned), stage_keep_ratios 0.5
        out_indices=(2, ),
        out_type='avg_featmap',  # mean of all patch tokens
        train_cls_token=True),   # + the CLS token for the training-only heads
    neck=None,
    head=dict(
        type='EvoLeViTClsHead',
        num_classes=1000,
        in_channels=512,
        distillation=True,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, loss_weight=1.0),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
custom_hooks = [*_base_.custom_hooks, dict(type='mmevit.EvoViTScheduleHook', switch_epoch=200)]  # + RNGStateHook
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

# Total batch 2048 = 8 GPUs x 256 images; the lr is for that batch.
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.pos_embed': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.learn_tradeoff': dict(decay_mult=0.0),
        }))
auto_scale_lr = dict(enable=False, base_batch_size=2048)
