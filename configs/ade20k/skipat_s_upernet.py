# SkipAt-S + UPerNet on ADE20K.
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
#
# Everything but the backbone follows mmseg's ViT-B UPerNet recipe
# (mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py): MultiLevelNeck, UPerHead + FCN auxiliary
# head, AdamW lr 6e-5 / wd 0.01 with no decay on pos_embed, cls_token and norms, 1500 linear warm-up iterations
# then poly decay to 160k, 512x512 crops, 8 GPUs x 2 images = batch 16.
# The backbone is SkipAtViT; its plain-ViT baseline is vit_s_upernet.py (same class, skip_indices=()).
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    '../_base_/ade20k_160k.py',  # dataset, runtime, AdamW + poly schedule, batch 16, RNGStateHook
]

crop_size = (512, 512)
embed_dims = 384
# The official SkipAt/ViT checkpoints were trained and evaluated with mean = std = 0.5 (timm's ViT default), i.e.
# 127.5 on 0-255 RGB input, not the ImageNet statistics of mmseg's base file.
# FiniteSegDataPreProcessor: mmseg's SegDataPreProcessor that refuses NaN/Inf training batches
# (mmevit.models.data_preprocessors).
data_preprocessor = dict(type='FiniteSegDataPreProcessor', size=crop_size, mean=[127.5, 127.5, 127.5],
                         std=[127.5, 127.5, 127.5])
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # EncoderDecoder would pass it on to the backbone; weights come from backbone.init_cfg
    backbone=dict(
        _delete_=True,  # drop mmseg's VisionTransformer kwargs (mlp_ratio, norm_cfg, act_cfg, ...)
        type='SkipAtViT',
        arch='s',
        img_size=crop_size,
        patch_size=16,
        skip_indices=(3, 4, 5, 6, 7, 8),  # the paper's: blocks 4-9 (1-based) skip attention
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        with_cls_token=True,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
            'skipat-small.t7')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[embed_dims] * 4, num_classes=150),
    auxiliary_head=dict(in_channels=embed_dims, num_classes=150))
