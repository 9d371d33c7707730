# SkipAt-T + Mask R-CNN on COCO 2017, 1x schedule (12 epochs, 8 GPUs x 2 images, 1333x800, flip):
# skipat_s_mask-rcnn_1x.py with the tiny backbone (192 channels); the plain-ViT baseline is vit_t_mask-rcnn_1x.py.
_base_ = './skipat_s_mask-rcnn_1x.py'

embed_dims = 192
model = dict(
    backbone=dict(
        arch='t',
        init_cfg=dict(
            checkpoint='https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
            'skipat-tiny.t7')),
    neck=dict(in_channels=embed_dims))
