# SkipAt-S + Mask R-CNN on COCO 2017, 1x schedule: 12 epochs, 8 GPUs x 2 images = batch 16, images resized to
# fit 1333x800 (keeping the aspect ratio) with random horizontal flips, padded to a multiple of 32.
#
# Data, heads, schedule (500 warm-up iterations, lr x0.1 after epochs 8 and 11) and evaluation (COCO bbox and
# segm AP on val2017) are mmdet's Mask R-CNN 1x (mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py). The backbone
# and what differs for a plain ViT follow ViTDet (Li et al., ECCV 2022):
# - SkipAtViT gives one stride-16 map (the last block's, no final norm); SimpleFeaturePyramid makes strides
#   4/8/16/32 from it by deconvolution / max pooling (+ stride 64 for the RPN), 256 channels, LayerNorm.
# - AdamW lr 1e-4, weight decay 0.1 (none on norms, pos_embed, cls_token), layer-wise lr decay 0.7
#   (lr * 0.7 ** (13 - layer): embeddings layer 0, block i layer i + 1, neck and heads the full lr),
#   drop path 0.1. Not ViTDet's: its 100-epoch large-scale-jitter recipe and its LN/4conv heads.
# - Position embeddings stay on the 14x14 pre-training grid and are resized to each input's grid on the fly.
# The plain-ViT baseline is vit_s_mask-rcnn_1x.py (same class, skip_indices=()). No checkpoint has been trained
# with these configs: the backbone starts from the official ImageNet weights of the SkipAt release.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/coco_vitdet_1x.py',  # 1x schedule, ViTDet AdamW with layer-wise lr decay, RNGStateHook
]

embed_dims = 384
model = dict(
    # The official SkipAt/ViT checkpoints were trained with mean = std = 0.5 (timm's ViT default), i.e. 127.5
    # on 0-255 RGB input, not the ImageNet statistics of mmdet's base file.
    # FiniteDetDataPreprocessor: mmdet's DetDataPreprocessor that refuses NaN/Inf training batches.
    data_preprocessor=dict(type='FiniteDetDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,  # drop the ResNet kwargs of the base file
        type='SkipAtViT',
        arch='s',
        img_size=224,
        patch_size=16,
        skip_indices=(3, 4, 5, 6, 7, 8),  # the paper's: blocks 4-9 (1-based) skip attention
        out_indices=(11, ),
        final_norm=False,
        with_cls_token=True,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
            'skipat-small.t7')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=embed_dims,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=dict(type='LN2d', eps=1e-6)))

# Total batch 16 = 8 GPUs x 2 images; lr 1e-4 is for that batch (tools/train.py --auto-scale-lr rescales it).
# CheckedCocoDataset: mmdet's CocoDataset whose annotation errors name the file (mmevit/datasets/coco.py).
train_dataloader = dict(batch_size=2, dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
