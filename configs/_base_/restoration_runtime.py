# Runtime shared by mmevit's restoration configs (SIDD, DAVIS and their demos): mmevit scope, iteration-based
# logging, PSNR-best checkpoints, loops, environment and seed. A config sets its own schedule (optimizer,
# param_scheduler, train_cfg) and the checkpoint interval; exact --resume comes from rng_state.py.
_base_ = ['./rng_state.py']
default_scope = 'mmevit'
custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)

val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, max_keep_ckpts=3, save_best='PSNR', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
