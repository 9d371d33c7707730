# Evo-ViT-S + UPerNet on ADE20K.
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
#
# Everything but the backbone follows mmseg's ViT UPerNet recipe (as skipat_s_upernet.py): MultiLevelNeck, UPerHead
# + FCN auxiliary head, AdamW lr 6e-5 / wd 0.01 with no decay on pos_embed, cls_token and norms, 1500 linear
# warm-up iterations then poly decay to 160k, 512x512 crops. The official Evo-ViT code covers classification only.
# Backbone: EvoViT-S with the official schedule (layers 0-3 on all 1024 tokens of a 512x512 crop, token selection
# before layers 4 and 8 keeping 512), stage-wise pruning in training and test (the pretrained model's inference
# path; no layer-to-stage hook when fine-tuning). Outputs of layers 2, 5, 8, 11 as NCHW maps with every token at its
# spatial position (the tokens a stage did not update keep their last value). Position embedding resized from the
# 224 checkpoint to the 32x32 grid on load, and to each input's grid at run time. ImageNet mean/std (as Evo-ViT).
# Weights: the official ImageNet checkpoint (Google Drive, github.com/YifanXu74/Evo-ViT), downloaded by hand to
# checkpoints/evo_deit_small_patch16_224.pth; init_cfg converts it (qk/v merged into qkv, heads dropped).
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    '../_base_/ade20k_160k.py',  # dataset, runtime, AdamW + poly schedule, batch 16, RNGStateHook
]

crop_size = (512, 512)
embed_dims = 384
data_preprocessor = dict(type='FiniteSegDataPreProcessor', size=crop_size)  # + NaN/Inf check in training
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # EncoderDecoder would pass it on to the backbone; weights come from backbone.init_cfg
    backbone=dict(
        _delete_=True,  # drop mmseg's VisionTransformer kwargs
        type='EvoViT',
        arch='s',
        img_size=crop_size,
        patch_size=16,
        out_indices=(2, 5, 8, 11),
        out_type='featmap',
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/evo_deit_small_patch16_224.pth')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[embed_dims] * 4, num_classes=150),
    auxiliary_head=dict(in_channels=embed_dims, num_classes=150))
