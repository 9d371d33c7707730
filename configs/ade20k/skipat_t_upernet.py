# SkipAt-T + UPerNet on ADE20K: skipat_s_upernet.py with the tiny backbone (192 channels).
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
_base_ = './skipat_s_upernet.py'

embed_dims = 192
model = dict(
    backbone=dict(
        arch='t',
        init_cfg=dict(
            checkpoint='https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
            'skipat-tiny.t7')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
