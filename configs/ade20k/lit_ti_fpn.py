# LIT-Ti + Semantic FPN on ADE20K: the official LIT segmentation recipe (PVT's Semantic FPN setup).
# Recipe: 8 GPUs x 2 images (batch 16), 80k iterations, 512x512 crops.
#
# Data, FPN neck (256 channels, 4 levels) and FPN head are mmseg's Semantic FPN (mmseg::sem_fpn, ADE20K at
# 512x512: random resize of 2048x512 by 0.5-2.0, crop, flip, photometric distortion; whole-image test at short
# side 512). Optimiser as the official configs: AdamW lr 1e-4, wd 1e-4, poly decay (power 0.9) to 0 over 80k
# iterations; the DTM offset convolutions learn at 0.01x the lr. The batch (8 x 2) follows PVT's Semantic FPN
# recipe, which LIT's segmentation code comes from.
# Backbone: the official dense LIT-Ti: the four stage outputs (strides 4-32, 64/128/320/512 channels) without
# output norms; position embeddings kept on the 224-input grids and resized bilinearly to each input's stage
# grids; drop path 0.1. It starts from the official ImageNet checkpoint (lit_ti.pth); the official Semantic FPN
# checkpoint (sem_fpn_lit_ti.pth, see lit_metafile.yml) has the same backbone keys.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k.py',  # mmseg's, with LoadSegAnnotations
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(type='FiniteSegDataPreProcessor', size=crop_size)  # + NaN/Inf check in training
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # EncoderDecoder would pass it on to the backbone; weights come from backbone.init_cfg
    backbone=dict(
        _delete_=True,  # drop the ResNet kwargs of the base file
        type='LIT',
        arch='ti',
        img_size=224,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/ziplab/LIT/releases/download/v1.0/lit_ti.pth')),
    neck=dict(in_channels=[64, 128, 320, 512], out_channels=256, num_outs=4),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'.conv_offset': dict(lr_mult=0.01)}))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)]

# Total batch 16 = 8 GPUs x 2 images; the lr is for that batch. As in mmdet, it is NOT rescaled by default:
# `tools/train.py --auto-scale-lr` scales it by (real total batch) / base_batch_size.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
