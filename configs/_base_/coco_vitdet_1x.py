# mmdet's 1x schedule (12 epochs, 500 warm-up iterations, lr x0.1 after epochs 8 and 11, batch 16 = 8 GPUs x 2
# images) with the ViTDet optimizer for plain-ViT backbones (Li et al., ECCV 2022): AdamW lr 1e-4, weight decay 0.1
# (none on norms, pos_embed, cls_token), layer-wise lr decay 0.7 (lr * 0.7 ** (num_layers + 1 - layer):
# embeddings layer 0, block i layer i + 1, neck and heads the full lr); exact --resume. A config adds an mmdet
# model and dataset base file, its backbone and SimpleFeaturePyramid neck.
_base_ = [
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './rng_state.py',  # custom_hooks: RNGStateHook (exact --resume)
]
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
# lr 1e-4 is for batch 16. NOT rescaled by default: on fewer GPUs use `tools/train.py CONFIG --auto-scale-lr` or
# `--cfg-options optim_wrapper.accumulative_counts=K`.
auto_scale_lr = dict(enable=False, base_batch_size=16)
