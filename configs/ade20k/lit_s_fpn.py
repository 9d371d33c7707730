# LIT-S + Semantic FPN on ADE20K: lit_ti_fpn.py with the official dense LIT-S backbone.
# Recipe: 8 GPUs x 2 images (batch 16), 80k iterations, 512x512 crops.
#
# Backbone as the official segmentation LIT: the four stage outputs (strides 4-32, 96/192/384/768 channels),
# each with its own LayerNorm (norm0..norm3); relative-position bias tables sized for the 512x512 crop (63x63 at
# stage 3, 31x31 at stage 4), resized bicubically from the 224 ImageNet checkpoint when it is loaded and to each
# input's stage grid at run time; drop path 0.2 (the LIT-S ImageNet value).
_base_ = './lit_ti_fpn.py'

model = dict(
    backbone=dict(
        arch='s',
        img_size=512,
        out_norm_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='https://github.com/ziplab/LIT/releases/download/v1.0/lit_s.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
