# SkipAt-B + UPerNet on ADE20K: skipat_s_upernet.py with the base backbone (768 channels).
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
_base_ = './skipat_s_upernet.py'

embed_dims = 768
model = dict(
    backbone=dict(
        arch='b',
        # SkipAt publishes no B checkpoint. We start from timm's ViT-B/16 ImageNet weights (ImageNet-21k
        # pre-training, ImageNet-1k fine-tuning, mean = std = 0.5 like the SkipAt checkpoints; the same weights
        # mmseg's ViT-B UPerNet starts from): SkipAtViT converts the timm keys, drops the attention of the
        # skipped blocks and leaves their Phi at its random init, so SkipAt-B is initialised from a plain ViT-B.
        init_cfg=dict(
            checkpoint='https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/'
            'jx_vit_base_p16_224-80ecf9dd.pth')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
