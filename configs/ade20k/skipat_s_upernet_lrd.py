# SkipAt-S + UPerNet on ADE20K with layer-wise learning-rate decay: skipat_s_upernet.py with a BEiT-style
# fine-tuning optimizer (AdamW, wd 0.05, lr decayed by 0.9 per block towards the input; lr 1e-4 so that the middle
# blocks train near the 6e-5 of the plain recipe).
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
#
# The lr of a backbone parameter is lr * 0.9 ** (13 - layer): patch/pos embeddings and the cls token are layer 0,
# block i is layer i + 1, the rest (neck, heads) layer 13 = the full lr (SkipAtViT.get_layer_depth).
# mmpretrain's LearningRateDecayOptimWrapperConstructor asks the *model* for get_layer_depth, which mmseg's
# EncoderDecoder lacks; BackboneLayerDecayOptimWrapperConstructor (mmevit.engine) is that constructor, fed with
# model.backbone.get_layer_depth(name, 'backbone.').
_base_ = './skipat_s_upernet.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
