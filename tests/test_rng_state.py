"""Interrupted training resumes exactly: a run stopped after N iterations and resumed (``resume=True``, the
Runner's ``--resume``) reaches the same weights and logs the same values as an uninterrupted run of N + M
iterations (CPU, ``deterministic=True``, ``num_workers=0``), for the shipped segmentation and denoising demo
configs (shrunk: a few iterations of small crops, checkpoints with the optimizer/scheduler state), with dropout,
drop path and (denoising) mixup drawing from the RNGs. Their ``RNGStateHook`` comes from the configs
themselves (``configs/_base_/rng_state.py``). Without the hook the resumed run differs (tiny config below).

The checkpoints these runs write (message hub, optimizer, parameter schedulers, RNG states) load with
``torch.load(weights_only=True)`` once mmevit is imported (issue 12 (d)).
"""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

import mmevit  # noqa: F401
from mmevit.datasets import make_demo_data
from mmevit.engine.demo import set_data_root
from mmevit.engine.runner_setup import use_safe_checkpoint_hook

pytestmark = pytest.mark.e2e

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
N, M = 2, 2  # interrupted after N iterations, resumed for M more
NOT_LOGGED_VALUES = ('time', 'data_time', 'eta', 'memory')  # wall-clock values: differ between any two runs


def shrink(cfg: Config, data_root: str, work_dir: str, max_iters: int) -> Config:
    """The shipped config, made small: ``max_iters``, no validation, a checkpoint (with optimizer and
    scheduler state) every N iterations, every iteration logged, deterministic."""
    cfg = copy.deepcopy(cfg)
    set_data_root(cfg, data_root)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.num_workers = 0
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 ** 9)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=N, max_keep_ckpts=-1,
                                        save_optimizer=True, save_param_scheduler=True)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch=False)
    use_safe_checkpoint_hook(cfg)  # as tools/train.py does (its record of written files is in the checkpoints)
    cfg.log_level = 'WARNING'
    if cfg.get('visualizer') is not None:  # a fixed name would make later runs of this process log into the first's
        cfg.visualizer.pop('name', None)
    return cfg


def seg_config(data_root: str, work_dir: str, max_iters: int) -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'skipat_t_upernet_demo.py'))
    crop = (64, 64)  # an 8x8 token grid; the UPerHead's pooled branches still see batch 2
    [c for c in cfg.train_dataloader.dataset.pipeline if c.type == 'RandomCrop'][0].crop_size = crop
    cfg.model.data_preprocessor.size = crop
    cfg.model.backbone.drop_path_rate = 0.1  # the demo trains without; drop path is what the torch RNG feeds
    cfg.default_hooks.pop('visualization', None)
    return shrink(cfg, data_root, work_dir, max_iters)


def sidd_config(data_root: str, work_dir: str, max_iters: int) -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'skipat_uformer_t_sidd_demo.py'))
    # The demo has neither drop path nor mixup; the full recipe (configs/sidd) has both: turn them on, mixup from
    # the second iteration, so that Beta weights and permutations are drawn on both sides of the interruption.
    cfg.model.generator.drop_path_rate = 0.1
    cfg.model.data_preprocessor.mixup = dict(alpha=1.2, start_iter=1)
    return shrink(cfg, data_root, work_dir, max_iters)


def train(cfg: Config, resume_from: str = None):
    """Train; returns (state dict, message hub scalars as {key: values}, logged scalars as {iter: {key: value}})."""
    from mmengine.runner import Runner
    cfg = copy.deepcopy(cfg)
    if resume_from:
        cfg.resume, cfg.load_from = True, resume_from
    runner = Runner.from_cfg(cfg)
    runner.train()
    state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
    hub = {k: buf.data[0].copy() for k, buf in runner.message_hub.log_scalars.items()
           if k.startswith('train/') and k.split('/', 1)[1] not in NOT_LOGGED_VALUES}
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    logged = {row['iter']: {k: v for k, v in row.items() if k not in NOT_LOGGED_VALUES} for row in rows}
    return state, hub, logged


def check_resume_is_exact(make_config, data_root: str, tmp_path) -> None:
    full_dir, part_dir = str(tmp_path / 'full'), str(tmp_path / 'part')
    full, full_hub, full_log = train(make_config(data_root, full_dir, N + M))
    train(make_config(data_root, part_dir, N))
    checkpoint = osp.join(part_dir, f'iter_{N}.pth')
    resumed, resumed_hub, resumed_log = train(make_config(data_root, part_dir, N + M), resume_from=checkpoint)

    differ = [k for k in full if not torch.equal(full[k], resumed[k])]
    assert not differ, f'the resumed run differs in {len(differ)} tensors, e.g. {differ[:5]}'
    # The message hub carries the whole history (restored from the checkpoint, then continued).
    assert full_hub.keys() == resumed_hub.keys() and 'train/loss' in full_hub
    for key in full_hub:
        np.testing.assert_array_equal(resumed_hub[key], full_hub[key], err_msg=key)
    assert len(full_hub['train/loss']) == N + M
    # The json log of the resumed run: iterations N+1..N+M, each value as the uninterrupted run logged it.
    assert sorted(resumed_log) == list(range(N + 1, N + M + 1)) and sorted(full_log) == list(range(1, N + M + 1))
    for it in resumed_log:
        assert resumed_log[it] == full_log[it], it

    # (d) A Runner checkpoint of a shipped config, with everything a training checkpoint holds, loads with
    # weights_only=True.
    ckpt = torch.load(checkpoint, weights_only=True)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers', 'rng_state'} <= set(ckpt)
    assert ckpt['meta']['iter'] == N and len(ckpt['message_hub']['log_scalars']['train/loss'].data[0]) == N
    assert ckpt['message_hub']['runtime_info']['mmevit_checkpoints_written']  # SafeCheckpointHook's record
    # The same checkpoint with one object that only full unpickling rebuilds: the Runner's loader (what
    # `resume`/`load_from` call) refuses it and says how to opt in; the opt-in loads it.
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmevit.compat import trust_checkpoints
    from mmevit.models.checkpoint import UnsafeCheckpointError
    ckpt['meta']['note'] = NeedsFullUnpickling()
    untrusted = str(tmp_path / 'untrusted.pth')
    torch.save(ckpt, untrusted)
    with pytest.raises(UnsafeCheckpointError, match='trust_checkpoints.*arbitrary code'):
        _load_checkpoint(untrusted, map_location='cpu')
    with pytest.warns(UserWarning, match='full unpickling'), trust_checkpoints():
        assert isinstance(_load_checkpoint(untrusted, map_location='cpu')['meta']['note'], NeedsFullUnpickling)


class NeedsFullUnpickling:
    """An object a weights-only load refuses (not an allow-listed type)."""


def test_shipped_seg_demo_config_resumes_exactly(tmp_path):
    data = str(tmp_path / 'data')
    make_demo_data('ade20k', data, num_train=8, num_val=1, seed=0)
    check_resume_is_exact(seg_config, data, tmp_path)


def test_shipped_sidd_demo_config_resumes_exactly(tmp_path):
    data = str(tmp_path / 'data')
    make_demo_data('sidd', data, num_train=8, num_val=2, seed=0)
    check_resume_is_exact(sidd_config, data, tmp_path)


# ----------------------------------------------------------------------------- without the hook
def tiny_seg_config(data_root: str, work_dir: str, max_iters: int) -> Config:
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
        custom_hooks=[],  # no RNGStateHook
        log_level='WARNING',
    ))


def test_without_the_hook_the_resumed_run_differs(tmp_path):
    """The reason the hook exists: mmengine reseeds torch's RNG on resume, so dropout/drop-path masks repeat."""
    data = str(tmp_path / 'data')
    make_demo_data('ade20k', data, num_train=6, num_val=1, seed=0)
    full = train(tiny_seg_config(data, str(tmp_path / 'full'), 4))[0]
    train(tiny_seg_config(data, str(tmp_path / 'part'), 2))
    resumed = train(tiny_seg_config(data, str(tmp_path / 'part'), 4),
                    resume_from=osp.join(str(tmp_path / 'part'), 'iter_2.pth'))[0]
    assert [k for k in full if not torch.equal(full[k], resumed[k])]


def test_checkpoint_with_rng_state_loads_weights_only(tmp_path):
    from mmevit.engine.hooks.rng_state import RNGStateHook
    ckpt = {}
    RNGStateHook().before_save_checkpoint(None, ckpt)
    path = str(tmp_path / 'c.pth')
    torch.save(ckpt, path)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded['rng_state']['torch'], ckpt['rng_state']['torch'])
