# LIT-Ti + RetinaNet on COCO 2017, 1x schedule: the official LIT detection recipe (PVT's RetinaNet setup).
# Recipe: 8 GPUs x 2 images (batch 16), 12 epochs (1x: lr x0.1 after epochs 8 and 11), images resized to fit
# 1333x800, random flip.
#
# Data, FPN (256 channels from strides 8-32, extra levels on the input to stride 128), RetinaNet head, schedule
# (500 warm-up iterations) and evaluation (COCO bbox AP on val2017) are mmdet's RetinaNet 1x
# (mmdet::retinanet/retinanet_r50_fpn_1x_coco.py, as mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py uses it).
# Optimiser as the official configs: AdamW lr 1e-4, wd 1e-4; the DTM offset convolutions learn at 0.01x the lr.
# Backbone: the official dense LIT-Ti: four stage outputs (strides 4-32, 64/128/320/512 channels) without output
# norms, position embeddings kept on the 224-input grids and resized bilinearly to each image's stage grids,
# drop path 0.1. It starts from the official ImageNet checkpoint (lit_ti.pth); the official detector
# (retina_lit_ti.pth, see lit_metafile.yml) has the same backbone keys.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(type='FiniteDetDataPreprocessor'),  # mmdet's + NaN/Inf check in training
    backbone=dict(
        _delete_=True,  # drop the ResNet kwargs of the base file
        type='LIT',
        arch='ti',
        img_size=224,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/ziplab/LIT/releases/download/v1.0/lit_ti.pth')),
    neck=dict(in_channels=[64, 128, 320, 512], start_level=1, add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'.conv_offset': dict(lr_mult=0.01)}))

# Total batch 16 = 8 GPUs x 2 images; the lr is for that batch. As in mmdet, it is NOT rescaled by default:
# `tools/train.py --auto-scale-lr` scales it by (real total batch) / base_batch_size.
# CheckedCocoDataset: mmdet's CocoDataset whose annotation errors name the file (mmevit/datasets/coco.py).
train_dataloader = dict(batch_size=2, dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
