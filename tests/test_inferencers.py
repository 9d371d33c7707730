"""The toolboxes' inferencers run our configs with a checkpoint saved from the config's own model."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmevit  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.e2e


def save_checkpoint(cfg: Config, scope: str, path, dataset_meta: dict) -> Config:
    """Build ``cfg.model`` (no pretrained weights), save its weights with ``dataset_meta``; returns ``cfg``."""
    from mmengine.registry import MODELS
    cfg.model.backbone.init_cfg = None
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dataset_meta)), str(path))
    return cfg


def write_image(path, h: int, w: int) -> str:
    import cv2
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return str(path)


def test_mmseg_inferencer(tmp_path):
    from mmseg.apis import MMSegInferencer
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ade20k', 'skipat_t_upernet.py'))
    # Small enough for a CPU: 64-pixel short side, narrow UPerNet.
    cfg.model.decode_head.channels = 32
    cfg.model.auxiliary_head.channels = 16
    cfg.test_dataloader.dataset.pipeline[1].scale = (256, 64)
    classes = tuple(f'c{i}' for i in range(150))
    palette = [[i, 255 - i, (7 * i) % 256] for i in range(150)]
    save_checkpoint(cfg, 'mmseg', tmp_path / 'seg.pth', dict(classes=classes, palette=palette))
    inferencer = MMSegInferencer(model=cfg, weights=str(tmp_path / 'seg.pth'), device='cpu')
    img = write_image(tmp_path / 'img.jpg', 60, 80)
    result = inferencer(img, return_datasamples=False)
    assert result['predictions'].shape == (60, 80)
    assert 0 <= result['predictions'].min() and result['predictions'].max() < 150
    assert inferencer.model.dataset_meta['classes'] == classes


def test_mmpretrain_inferencer(tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'imagenet', 'skipat_t.py'))
    classes = tuple(f'c{i}' for i in range(1000))
    save_checkpoint(cfg, 'mmpretrain', tmp_path / 'cls.pth', dict(classes=classes))
    # Unlike MMSegInferencer and DetInferencer, ImageClassificationInferencer builds its pipeline in whatever
    # default scope is current (mmseg's, after an MMSegInferencer in the same process) and then misses
    # mmpretrain's transforms (`ResizeEdge is not in the mmseg::transform registry`): set the scope for it.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(model=cfg, pretrained=str(tmp_path / 'cls.pth'), device='cpu')
        img = write_image(tmp_path / 'img.jpg', 180, 300)
        (result,) = inferencer(img)
    resize, crop = inferencer.pipeline.transforms[:2]  # the config's: short side to 248, centre crop 224
    assert (type(resize).__name__, resize.scale, type(crop).__name__, crop.crop_size) == \
        ('ResizeEdge', 248, 'CenterCrop', (224, 224))
    assert result['pred_scores'].shape == (1000,)
    assert result['pred_class'] == classes[result['pred_label']]


def test_mmdet_inferencer(tmp_path, tiny_retinanet_config):
    from mmdet.apis import DetInferencer
    cfg = Config.fromfile(tiny_retinanet_config)
    save_checkpoint(cfg, 'mmdet', tmp_path / 'det.pth', dict(classes=('cat', 'dog'),
                                                             palette=[(220, 20, 60), (0, 0, 142)]))
    inferencer = DetInferencer(model=tiny_retinanet_config, weights=str(tmp_path / 'det.pth'), device='cpu')
    img = write_image(tmp_path / 'img.jpg', 96, 160)
    result = inferencer(img, return_datasamples=False)
    (pred,) = result['predictions']
    assert set(pred) >= {'labels', 'scores', 'bboxes'}
    assert len(pred['labels']) == len(pred['scores']) == len(pred['bboxes'])
    assert all(label in (0, 1) for label in pred['labels'])
