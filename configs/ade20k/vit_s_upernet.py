# ViT-S + UPerNet on ADE20K: the baseline of skipat_s_upernet.py (same class and recipe, no skipped block),
# from the official ViT-S checkpoint of the SkipAt release.
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
_base_ = './skipat_s_upernet.py'

model = dict(
    backbone=dict(
        skip_indices=(),
        init_cfg=dict(
            checkpoint='https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
            'vit-small.t7')))
