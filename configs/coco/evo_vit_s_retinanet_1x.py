# Evo-ViT-S + RetinaNet on COCO 2017, 1x schedule: 12 epochs, 8 GPUs x 2 images = batch 16, images resized to fit
# 1333x800 (keeping the aspect ratio) with random horizontal flips, padded to a multiple of 32.
#
# Data, RetinaNet head, schedule (500 warm-up iterations, lr x0.1 after epochs 8 and 11) and evaluation (COCO bbox
# AP on val2017) are mmdet's RetinaNet 1x (mmdet::retinanet/retinanet_r50_fpn_1x_coco.py). The official Evo-ViT
# code covers classification only; the plain-ViT detection set-up follows ViTDet (as skipat_s_mask-rcnn_1x.py):
# - EvoViT-S gives the last layer's stride-16 map (no final norm) with every token at its spatial position (the
#   tokens the last stage did not update keep their value from layer 7); official schedule: all tokens in layers
#   0-3, half of them (ranked by the global class attention) in layers 4-7 and 8-11, stage-wise in training and
#   test (the pretrained model's inference path).
# - SimpleFeaturePyramid makes strides 8/16/32 by deconvolution / max pooling and 64/128 by subsampling, 256
#   channels, LayerNorm: RetinaNet's five levels.
# - AdamW lr 1e-4, weight decay 0.1 (none on norms, pos_embed, cls_token), layer-wise lr decay 0.7, drop path 0.1.
# - Position embedding on the 14x14 pre-training grid, resized to each input's grid on the fly.
# Weights: the official ImageNet checkpoint (Google Drive, github.com/YifanXu74/Evo-ViT), downloaded by hand to
# checkpoints/evo_deit_small_patch16_224.pth; init_cfg converts it.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/coco_vitdet_1x.py',  # 1x schedule, ViTDet AdamW with layer-wise lr decay, RNGStateHook
]

embed_dims = 384
model = dict(
    data_preprocessor=dict(type='FiniteDetDataPreprocessor'),  # mmdet's + NaN/Inf check in training
    backbone=dict(
        _delete_=True,  # drop the ResNet kwargs of the base file
        type='EvoViT',
        arch='s',
        img_size=224,
        patch_size=16,
        out_indices=(11, ),
        out_type='featmap',
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/evo_deit_small_patch16_224.pth')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=embed_dims,
        out_channels=256,
        scale_factors=(2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=dict(type='LN2d', eps=1e-6)))

# Total batch 16 = 8 GPUs x 2 images; lr 1e-4 is for that batch. NOT rescaled by default: on fewer GPUs use
# `tools/train.py CONFIG --auto-scale-lr` or `--cfg-options optim_wrapper.accumulative_counts=K`.
# CheckedCocoDataset: mmdet's CocoDataset whose annotation errors name the file (mmevit/datasets/coco.py).
train_dataloader = dict(batch_size=2, dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
