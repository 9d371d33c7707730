# Evo-LeViT-256 + UPerNet on ADE20K.
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
#
# The official Evo-ViT code covers classification only. Backbone: the three Evo-LeViT-256 stages as NCHW maps at
# strides 16/32/64 (256/384/512 channels; 32x32, 16x16, 8x8 for a 512x512 crop) with every token at its spatial
# position; stage-wise pruning with the learned trade-off (the pretrained model's inference path) in training and
# test. Position embeddings (stem and both subsampling attentions) resized from the 224 checkpoint on load and to
# each input at run time. ImageNet mean/std (as Evo-LeViT).
# Head: mmseg's UPerHead on the three maps (PPM on the stride-64 map), FCN auxiliary head on the stride-32 map,
# SyncBN; AdamW lr 6e-5 / wd 0.01 (none on norms, position embeddings, cls_token, trade-offs), 1500 linear warm-up
# iterations then poly decay to 160k (mmseg's UPerNet transformer schedule).
# Some learn_tradeoff scalars never get a gradient (the first attention sets the scores; nothing reads the last
# stage's), so DDP runs with find_unused_parameters=True.
# Weights: the official ImageNet checkpoint (Google Drive, github.com/YifanXu74/Evo-ViT), downloaded by hand to
# checkpoints/EvoLeViT_256.pth; init_cfg converts it (the duplicated stage_blocks.* copy and the heads dropped).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/ade20k_160k.py',  # dataset, runtime, AdamW + poly schedule, batch 16, RNGStateHook
]

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(type='FiniteSegDataPreProcessor', size=crop_size)  # + NaN/Inf check in training
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,  # drop the ResNet kwargs of the base file
        type='EvoLeViT',
        arch='256',
        img_size=crop_size,
        out_indices=(0, 1, 2),
        out_type='featmap',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/EvoLeViT_256.pth')),
    decode_head=dict(in_channels=[256, 384, 512], in_index=[0, 1, 2], channels=512, num_classes=150,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, in_index=1, channels=256, num_classes=150, norm_cfg=norm_cfg))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'learn_tradeoff': dict(decay_mult=0.)
        }))
