# LIT-S + RetinaNet on COCO 2017, 1x schedule: lit_ti_retinanet_1x.py with the official dense LIT-S backbone.
# Recipe: 8 GPUs x 2 images (batch 16), 12 epochs (1x: lr x0.1 after epochs 8 and 11), images resized to fit
# 1333x800, random flip.
#
# Backbone as the official detection LIT: stage outputs 1-3 (strides 8/16/32, 192/384/768 channels), each with its
# own LayerNorm (norm1..norm3, the norms the official detection checkpoints hold); relative-position bias tables
# sized for an 800x800 input (99x99 at stage 3, 49x49 at stage 4), resized bicubically from the 224 ImageNet
# checkpoint when it is loaded and to each image's stage grid at run time; drop path 0.2 (the LIT-S ImageNet
# value). The FPN takes the three maps from its first input (as mmdet's Swin RetinaNet does).
_base_ = './lit_ti_retinanet_1x.py'

model = dict(
    backbone=dict(
        arch='s',
        img_size=800,
        out_indices=(1, 2, 3),
        out_norm_indices=(1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='https://github.com/ziplab/LIT/releases/download/v1.0/lit_s.pth')),
    neck=dict(in_channels=[192, 384, 768], start_level=0))
