# ViT-T + Mask R-CNN on COCO 2017, 1x schedule (12 epochs, 8 GPUs x 2 images, 1333x800, flip): the baseline of
# skipat_t_mask-rcnn_1x.py (same class and recipe, no skipped block), from the official ViT-T checkpoint of the
# SkipAt release.
_base_ = './skipat_t_mask-rcnn_1x.py'

model = dict(
    backbone=dict(
        skip_indices=(),
        init_cfg=dict(
            checkpoint='https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
            'vit-tiny.t7')))
