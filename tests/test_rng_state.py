"""RNGStateHook: a run stopped after N iterations and resumed reaches the same weights as an uninterrupted
run (CPU, deterministic, num_workers 0), with dropout and drop-path active; without the hook it does not."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmevit  # noqa: F401
from mmevit.datasets import make_demo_data

pytestmark = pytest.mark.e2e


def seg_config(data_root: str, work_dir: str, max_iters: int, rng_hook: bool) -> Config:
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='RandomCrop', crop_size=(64, 64)), dict(type='RandomFlip', prob=0.5),
                dict(type='PackSegInputs')]
    return Config(dict(
        default_scope='mmseg',
        work_dir=work_dir,
        randomness=dict(seed=0, deterministic=True),
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3,
                                   size=(64, 64), pad_val=0, seg_pad_val=255),
            backbone=dict(type='SkipAtViT', arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                                                      feedforward_channels=64),
                          skip_indices=(2,), img_size=64, patch_size=8, drop_path_rate=0.2, drop_rate=0.1),
            decode_head=dict(type='FCNHead', in_channels=32, channels=16, num_convs=1, num_classes=5,
                             dropout_ratio=0.3, norm_cfg=dict(type='BN', requires_grad=True),
                             loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0))),
        train_dataloader=dict(
            batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(type='BaseSegDataset', data_root=data_root, img_suffix='.jpg', seg_map_suffix='.png',
                         reduce_zero_label=True, data_prefix=dict(img_path='images/training',
                                                                  seg_map_path='annotations/training'),
                         metainfo=dict(classes=('a', 'b', 'c', 'd', 'e')), pipeline=pipeline)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='mmevit.RNGStateHook')] if rng_hook else [],
        log_level='WARNING',
    ))


def train(cfg: Config, resume_from: str = None) -> dict:
    from mmengine.runner import Runner
    cfg = copy.deepcopy(cfg)
    if resume_from:
        cfg.resume, cfg.load_from = True, resume_from
    runner = Runner.from_cfg(cfg)
    runner.train()
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


@pytest.mark.parametrize('rng_hook', [True, False])
def test_resume_is_exact_with_rng_state_hook(tmp_path, rng_hook):
    data = str(tmp_path / 'data')
    make_demo_data('ade20k', data, num_train=6, num_val=1, seed=0)
    full = train(seg_config(data, str(tmp_path / 'full'), 4, rng_hook))
    train(seg_config(data, str(tmp_path / 'part'), 2, rng_hook))
    resumed = train(seg_config(data, str(tmp_path / 'part'), 4, rng_hook),
                    resume_from=osp.join(str(tmp_path / 'part'), 'iter_2.pth'))
    differ = [k for k in full if not torch.equal(full[k], resumed[k])]
    if rng_hook:
        assert not differ, f'resumed run differs in {differ}'
    else:  # the reason the hook exists: mmengine reseeds torch's RNG, so dropout masks repeat
        assert differ


def test_checkpoint_with_rng_state_loads_weights_only(tmp_path):
    from mmevit.engine.hooks.rng_state import RNGStateHook
    ckpt = {}
    RNGStateHook().before_save_checkpoint(None, ckpt)
    path = str(tmp_path / 'c.pth')
    torch.save(ckpt, path)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded['rng_state']['torch'], ckpt['rng_state']['torch'])
