# The ADE20K 512x512 / 160k-iteration recipe of mmseg's ViT UPerNet (mmseg::vit/
# vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py), shared by mmevit's ViT-like UPerNet configs: dataset
# (with LoadSegAnnotations), runtime, exact --resume, AdamW lr 6e-5 / wd 0.01 without decay on pos_embed, cls_token
# and norms, 1500 linear warm-up iterations then poly decay to 160k, 8 GPUs x 2 images. A config adds the model
# (an mmseg model base file first in its _base_ list) and its backbone.
_base_ = [
    './datasets/ade20k.py',  # mmseg's, with LoadSegAnnotations
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

# Total batch 16 = 8 GPUs x 2 images; lr 6e-5 is for that batch. As in mmdet, the lr is NOT rescaled by default
# (a run on fewer GPUs trains at the recipe's lr with a smaller batch): `tools/train.py --auto-scale-lr` scales it
# by (real total batch) / base_batch_size, or keep the batch with
# `--cfg-options optim_wrapper.accumulative_counts=K` (K x GPUs x 2 = 16).
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
