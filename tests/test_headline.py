"""The design card's headline command, `tools/train.py configs/ade20k/skipat_s_upernet.py`, on a tiny
dataset in the real ADE20K layout: the config trains as written (SkipAt-S, 512x512 crops, UPerNet, the
AdamW/poly recipe), only the data root, iteration count and the weight download are overridden."""
import glob
import os.path as osp

import pytest

from tools_helpers import make_ade_like, run_tool

pytestmark = pytest.mark.slow


def test_headline_config_trains_as_written(tmp_path):
    root = tmp_path / 'ade' / 'ADEChallengeData2016'
    make_ade_like(str(root), num_train=2, num_val=1, size=96)
    work = tmp_path / 'work'
    run_tool(['train.py', 'configs/ade20k/skipat_s_upernet.py', '--work-dir', str(work), '--cfg-options',
              f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
              f'test_dataloader.dataset.data_root={root}', 'train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
              'val_dataloader.persistent_workers=False', 'train_dataloader.batch_size=2',
              'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
              'model.backbone.init_cfg=None'], timeout=1200)
    log = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    assert 'SkipAtViT' in log and "arch='s'" in log
    assert 'Iter(train) [1/2]' in log and 'Iter(val) [1/1]' in log and 'mIoU' in log
    # auto_scale_lr: 1 process x 2 images instead of the configured 8 x 2 -> lr x 0.125
    assert 'LR is set based on batch size of 16 and the current batch size is 2' in log
    assert 'base_lr: 6.0000e-11' in log  # LinearLR warm-up from 6e-5 x 1e-6
    assert osp.isfile(work / 'iter_2.pth')
