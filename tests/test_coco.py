"""SkipAt-ViT in mmdet: the COCO demo data (``mmevit.datasets.demo_coco``), the ViTDet simple feature
pyramid (``SimpleFeaturePyramid``), the Mask R-CNN configs of ``configs/coco`` and, end to end, a tiny SkipAt
Mask R-CNN trained by ``tools/train.py`` on the demo set and evaluated by ``tools/test.py``."""
import glob
import json
import os
import os.path as osp
import pickle
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import mmevit  # noqa: F401  (registers SkipAtViT and SimpleFeaturePyramid into mmdet)
from mmevit.datasets import demo_coco, make_demo_data
from mmevit.models.necks import LayerNorm2d, SimpleFeaturePyramid
from demo_overrides import coco_demo_config
from tools_helpers import REPO, run_tool

CONFIGS = {name: osp.join(REPO, 'configs', 'coco', f'{name}_mask-rcnn_1x.py')
           for name in ('skipat_t', 'skipat_s', 'vit_t', 'vit_s')}
RELEASE = 'https://github.com/Qualcomm-AI-research/skip-attention/releases/download/v1.0/'
CHECKPOINTS = {'skipat_t': 'skipat-tiny.t7', 'skipat_s': 'skipat-small.t7', 'vit_t': 'vit-tiny.t7',
               'vit_s': 'vit-small.t7'}


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('coco') / 'data')
    make_demo_data('coco', root, num_train=6, num_val=3, seed=0)
    return root


def _load(root: str, split: str) -> dict:
    with open(osp.join(root, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- demo data
def test_demo_coco_layout_and_json(demo):
    assert sorted(os.listdir(demo)) == ['annotations', 'mmevit_demo.json', 'train2017', 'val2017']
    image_ids = set()
    for split, num in (('train2017', 6), ('val2017', 3)):
        coco = _load(demo, split)
        assert set(coco) == {'info', 'licenses', 'images', 'annotations', 'categories'}
        assert coco['categories'] == [dict(c) for c in demo_coco.CATEGORIES]
        assert [c['id'] for c in coco['categories']] == [37, 38, 42, 84]  # COCO's ids: not 0-based, gaps
        assert len(coco['images']) == num
        assert sorted(os.listdir(osp.join(demo, split))) == sorted(i['file_name'] for i in coco['images'])
        for info in coco['images']:
            assert info['file_name'] == f"{info['id']:012d}.jpg"
            with Image.open(osp.join(demo, split, info['file_name'])) as img:
                assert img.format == 'JPEG' and img.mode == 'RGB'
                assert img.size == (info['width'], info['height']) == (demo_coco.SIZE, demo_coco.SIZE)
        ids = {i['id'] for i in coco['images']}
        assert not ids & image_ids  # image ids are unique across the splits
        image_ids |= ids
        anns = coco['annotations']
        assert len({a['id'] for a in anns}) == len(anns)
        assert {a['image_id'] for a in anns} == ids  # every image has objects
        assert len(anns) >= 2 * num
        for a in anns:
            assert a['category_id'] in (37, 38, 42, 84) and a['iscrowd'] == 0
            x, y, w, h = a['bbox']
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= demo_coco.SIZE and y + h <= demo_coco.SIZE
            assert a['segmentation'] and all(len(p) >= 6 and len(p) % 2 == 0 for p in a['segmentation'])
            pts = np.concatenate([np.reshape(p, (-1, 2)) for p in a['segmentation']])
            assert (pts >= [x, y]).all() and (pts <= [x + w, y + h]).all()
            assert a['area'] >= demo_coco.MIN_AREA
    train = _load(demo, 'train2017')['annotations']
    assert {a['category_id'] for a in train} == {37, 38, 42, 84}
    sides = np.sqrt([a['area'] for a in train])
    assert sides.max() > 2 * sides.min()  # varied object sizes


def test_demo_coco_polygons_match_the_drawn_objects(demo):
    """pycocotools' masks of the polygons are the visible pixels of each drawn object: areas and boxes agree."""
    from pycocotools.coco import COCO
    for split in ('train2017', 'val2017'):
        api = COCO(osp.join(demo, 'annotations', f'instances_{split}.json'))
        for index, info in enumerate(sorted(api.dataset['images'], key=lambda i: i['id'])):
            _, objects = demo_coco.render_scene(demo_coco.sample_rng(0, split, index))
            anns = api.loadAnns(api.getAnnIds(imgIds=info['id']))
            assert [a['category_id'] for a in anns] == [o['category_id'] for o in objects]
            for a, o in zip(anns, objects):
                mask = api.annToMask(a).astype(bool)
                assert mask.sum() == a['area'] == o['mask'].sum()
                assert (mask == o['mask']).mean() > 0.999
                ys, xs = np.nonzero(mask)
                assert a['bbox'] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]


def test_demo_coco_objects_differ_from_background(demo):
    """Objects are drawn into the image: inside each visible mask the pixels differ from the background
    right outside it (a detector has something to learn)."""
    coco = _load(demo, 'train2017')
    img = np.asarray(Image.open(osp.join(demo, 'train2017', coco['images'][0]['file_name'])), np.float64)
    _, objects = demo_coco.render_scene(demo_coco.sample_rng(0, 'train2017', 0))
    for o in objects:
        ring = cv2.dilate(o['mask'].astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~o['mask']
        ring &= ~np.any([p['mask'] for p in objects], axis=0)
        if ring.sum() > 20:
            inside, outside = img[o['mask']], img[ring]
            assert np.abs(inside.mean(0) - outside.mean(0)).max() > 10 or \
                abs(inside.std() - outside.std()) > 10


def test_demo_coco_is_deterministic_and_prefix_stable(tmp_path, demo):
    small = str(tmp_path / 'small')
    make_demo_data('coco', small, num_train=2, num_val=1, seed=0)
    big, small_train = _load(demo, 'train2017'), _load(small, 'train2017')
    assert small_train['images'] == big['images'][:2]
    first_two = {i['id'] for i in small_train['images']}
    assert small_train['annotations'] == [a for a in big['annotations'] if a['image_id'] in first_two]
    for info in small_train['images']:
        with open(osp.join(small, 'train2017', info['file_name']), 'rb') as f1, \
                open(osp.join(demo, 'train2017', info['file_name']), 'rb') as f2:
            assert f1.read() == f2.read()
    other = str(tmp_path / 'other')
    make_demo_data('coco', other, num_train=1, num_val=1, seed=1)
    assert _load(other, 'train2017')['annotations'] != [a for a in big['annotations'] if a['image_id'] == 1]


def test_demo_coco_refuses_a_users_folder(tmp_path):
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not empty'):
        make_demo_data('coco', str(tmp_path / 'mine'), num_train=1, num_val=1)
    assert os.listdir(tmp_path / 'mine') == ['notes.txt']


def test_demo_coco_loads_in_mmdet_and_scores_perfect_gt(demo):
    """mmdet's CocoDataset reads the set (labels numbered by category id), and CocoMetric gives the ground
    truth as predictions bbox and segm mAP 1."""
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmengine.registry import DefaultScope
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='PackDetInputs')]
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = CocoDataset(data_root=demo, ann_file='annotations/instances_val2017.json',
                         data_prefix=dict(img='val2017/'), metainfo=dict(classes=demo_coco.CLASSES),
                         pipeline=pipeline, test_mode=True)
    coco = _load(demo, 'val2017')
    assert len(ds) == 3 and ds.cat_ids == [37, 38, 42, 84]
    metric = CocoMetric(ann_file=osp.join(demo, 'annotations', 'instances_val2017.json'),
                        metric=['bbox', 'segm'])
    metric.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = sample.gt_instances
        anns = [a for a in coco['annotations'] if a['image_id'] == sample.img_id]
        assert gt.labels.tolist() == [ds.cat2label[a['category_id']] for a in anns]
        expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)])
        assert torch.equal(gt.bboxes.tensor, expected.float())
        assert gt.masks.masks.shape == (len(anns), demo_coco.SIZE, demo_coco.SIZE)
        pred = dict(bboxes=gt.bboxes.tensor, labels=gt.labels, scores=torch.ones(len(anns)),
                    masks=torch.from_numpy(gt.masks.masks.astype(bool)))
        metric.process({}, [dict(img_id=sample.img_id, ori_shape=sample.ori_shape, pred_instances=pred)])
    results = metric.compute_metrics(metric.results)
    assert results['bbox_mAP'] == pytest.approx(1.0) and results['segm_mAP'] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the neck
@pytest.mark.parametrize('scales,num_outs,size', [((4.0, 2.0, 1.0, 0.5), 5, (64, 128)),
                                                   ((2.0, 1.0, 0.5, 0.25), 4, (128, 64)),
                                                   ((8.0, 1.0), 3, (32, 96))])
def test_simple_fpn_strides_and_channels(scales, num_outs, size):
    """Declared strides and channels are those of the outputs, for a ViT with 16-px patches in front."""
    from mmevit.models.backbones import SkipAtViT
    vit = SkipAtViT(arch=dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64), img_size=64,
                    skip_indices=(1, ), out_indices=(2, ), final_norm=False)
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=24, scale_factors=scales, num_outs=num_outs)
    x = torch.randn(2, 3, *size)
    outs = neck(vit(x))
    strides = neck.out_strides(vit.patch_size)
    assert len(outs) == len(strides) == num_outs
    for out, s in zip(outs, strides):
        assert out.shape == (2, 24, size[0] // s, size[1] // s), (s, out.shape)
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in [*neck.named_parameters(), *vit.named_parameters()] if p.grad is None]
    assert not missing


def test_simple_fpn_is_vitdets():
    """x4: deconv, LN, GELU, deconv (channels /4); x2: one deconv; x1: nothing; x0.5: 2x2 max pooling; a
    1x1 and a 3x3 convolution without bias, each followed by a channel LayerNorm."""
    neck = SimpleFeaturePyramid(in_channels=64, out_channels=16)
    up4, up2, same, down2 = neck.resamplers
    assert [type(m) for m in up4] == [torch.nn.ConvTranspose2d, LayerNorm2d, torch.nn.GELU,
                                      torch.nn.ConvTranspose2d]
    assert up4[3].out_channels == 16 and up2[0].out_channels == 32 and len(same) == 0
    assert isinstance(down2[0], torch.nn.MaxPool2d) and down2[0].kernel_size == 2
    for conv, k in [(c, 1) for c in neck.lateral_convs] + [(c, 3) for c in neck.fpn_convs]:
        assert conv.conv.kernel_size == (k, k) and conv.conv.bias is None and isinstance(conv.norm, LayerNorm2d)
    assert neck.out_strides(16) == (4, 8, 16, 32, 64)
    # the stride-64 level is the stride-32 one subsampled (mmdet FPN's extra level without convs)
    outs = neck((torch.randn(1, 64, 6, 10), ))
    assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])


def test_layer_norm_2d_normalises_channels():
    ln = LayerNorm2d(8, eps=1e-6)
    torch.nn.init.normal_(ln.weight)
    torch.nn.init.normal_(ln.bias)
    x = torch.randn(2, 8, 5, 7)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8, ), ln.weight, ln.bias, 1e-6)
    torch.testing.assert_close(ln(x), ref.permute(0, 3, 1, 2))


@pytest.mark.parametrize('norm_cfg', [None, dict(type='GN', num_groups=4), dict(type='BN')])
def test_simple_fpn_other_norms(norm_cfg):
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16, norm_cfg=norm_cfg)
    outs = neck((torch.randn(2, 32, 4, 4), ))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(scale_factors=(4.0, 3.0)), ValueError, 'powers of two'),
    (dict(scale_factors=(1.0, 2.0)), ValueError, 'strictly decreasing'),
    (dict(scale_factors=()), ValueError, 'non-empty'),
    (dict(num_outs=3), ValueError, 'num_outs'),
    (dict(in_channels=30, scale_factors=(8.0, )), ValueError, 'not divisible by 8'),
    (dict(in_channels=[32]), TypeError, 'in_channels'),
    (dict(norm_cfg='LN2d'), TypeError, 'norm_cfg'),
])
def test_simple_fpn_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SimpleFeaturePyramid(**{'in_channels': 32, **kwargs})


def test_simple_fpn_bad_input():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    with pytest.raises(ValueError, match=r'\(N, 32, H, W\).*got shape \(1, 16, 4, 4\)'):
        neck((torch.randn(1, 16, 4, 4), ))
    with pytest.raises(TypeError, match='tuple of maps'):
        neck(torch.randn(1, 32, 4, 4))


def test_simple_fpn_is_exported_to_mmdet_only():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS
    assert MMDET_MODELS.get('SimpleFeaturePyramid') is SimpleFeaturePyramid
    assert MMSEG_MODELS.get('SimpleFeaturePyramid') is None
    assert MMPRETRAIN_MODELS.get('SimpleFeaturePyramid') is None


# ----------------------------------------------------------------------------- the configs
def _cfg(name: str):
    from mmengine.config import Config
    return Config.fromfile(CONFIGS[name])


def _build_detector(cfg, device: str = 'cpu'):
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'), torch.device(device):
        return MODELS.build(cfg.model)


def test_every_skipat_coco_config_is_tested():
    found = {p for pattern in ('skipat_*.py', 'vit_*.py')
             for p in glob.glob(osp.join(REPO, 'configs', 'coco', pattern))}
    assert found == set(CONFIGS.values())


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_coco_config_builds_and_fits_together(name):
    """Each config builds in mmdet (on the meta device), and its parts agree: the neck's strides are the RPN
    anchors' and the RoI extractors', its channels the heads', the backbone is the named SkipAt/ViT with its
    official checkpoint, the normalisation is the checkpoints' (mean = std = 127.5)."""
    cfg = _cfg(name)
    assert cfg.default_scope == 'mmdet' and 'mmevit' in cfg.custom_imports['imports']
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_cfg.max_epochs == 12
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    model = _build_detector(cfg, 'meta')
    backbone, neck = model.backbone, model.neck
    assert type(backbone).__name__ == 'SkipAtViT' and isinstance(neck, SimpleFeaturePyramid)
    assert backbone.embed_dims == {'t': 192, 's': 384}[name[-1]] == neck.in_channels
    assert backbone.skip_indices == ((3, 4, 5, 6, 7, 8) if name.startswith('skipat') else ())
    assert backbone.out_indices == (11, ) and backbone.norm is None
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=RELEASE + CHECKPOINTS[name])
    strides = neck.out_strides(backbone.patch_size)
    assert strides == (4, 8, 16, 32, 64)
    assert list(model.rpn_head.prior_generator.strides) == [(s, s) for s in strides]
    assert model.roi_head.bbox_roi_extractor.featmap_strides == list(strides[:4])
    assert model.roi_head.mask_roi_extractor.featmap_strides == list(strides[:4])
    assert neck.out_channels == model.rpn_head.in_channels == model.roi_head.bbox_roi_extractor.out_channels
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.mean == preprocessor.std == [127.5] * 3 and preprocessor.bgr_to_rgb
    # shapes at a real COCO input size (1333x800 padded to 1344x800), without computing anything
    feats = neck(backbone(torch.empty(1, 3, 800, 1344, device='meta')))
    assert [tuple(f.shape[-2:]) for f in feats] == [(800 // s, 1344 // s) for s in strides[:4]] + [(13, 21)]


def test_coco_config_layer_decay():
    """ViTDet's layer-wise lr decay: lr * 0.7 ** (13 - layer) in the backbone, the full lr for neck and
    heads; no weight decay on norms (the neck's LayerNorm2d included), pos_embed and cls_token."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg = _cfg('skipat_s')
    model = _build_detector(cfg)
    with DefaultScope.overwrite_default_scope('mmdet'):
        groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    by_name = {g['param_name']: g for g in groups}
    assert set(by_name) == {n for n, p in model.named_parameters() if p.requires_grad}
    lr, wd = 1e-4, 0.1
    expected_lr = {'backbone.pos_embed': lr * 0.7 ** 13, 'backbone.patch_embed.proj.weight': lr * 0.7 ** 13,
                   'backbone.blocks.0.mlp.fc1.weight': lr * 0.7 ** 12,
                   'backbone.blocks.4.phi.fc1.weight': lr * 0.7 ** 8,
                   'backbone.blocks.11.attn.qkv.weight': lr * 0.7,
                   'neck.lateral_convs.0.conv.weight': lr, 'roi_head.mask_head.conv_logits.weight': lr}
    for n, value in expected_lr.items():
        assert by_name[n]['lr'] == pytest.approx(value), n
    no_decay = ['backbone.pos_embed', 'backbone.cls_token', 'backbone.blocks.0.norm1.weight',
                'backbone.blocks.5.norm2.bias', 'neck.fpn_convs.2.ln.weight', 'neck.resamplers.0.1.bias']
    decay = ['backbone.blocks.3.mlp.fc2.weight', 'neck.lateral_convs.1.conv.weight', 'rpn_head.rpn_conv.weight']
    assert all(by_name[n]['weight_decay'] == 0 for n in no_decay)
    assert all(by_name[n]['weight_decay'] == pytest.approx(wd) for n in decay)


@pytest.mark.parametrize('name', ['skipat_t', 'vit_t'])
def test_coco_config_backbone_loads_official_format(tmp_path, fixtures_dir, name):
    """The configs' backbone (no final norm, one output) takes every weight from an official-format
    checkpoint through init_cfg: SkipAt's (param_k Phis) or a plain timm ViT's (the same without Phis)."""
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from mmevit.models.backbones.skipat_vit import convert_skipat_state_dict
    official = torch.load(osp.join(fixtures_dir, 'skipat', 'skipat_tiny_224.pt'), weights_only=False)
    state = {k: v for k, v in official['state_dict'].items()
             if name.startswith('skipat') or not k.startswith('param_')}
    path = str(tmp_path / 'official.pth')
    torch.save({'model': state}, path)
    cfg = _cfg(name).model.backbone
    cfg.arch = dict(embed_dims=36, num_layers=12, num_heads=3, feedforward_channels=144)  # the fixture's width
    cfg.init_cfg.checkpoint = path
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = MODELS.build(cfg)
    backbone.init_weights()
    expected, _ = convert_skipat_state_dict({k: v for k, v in state.items() if not k.startswith('head.')},
                                            backbone)
    loaded = backbone.state_dict()
    assert set(loaded) <= set(expected)
    for k, v in loaded.items():
        assert torch.equal(v, expected[k]), k
    assert any('.phi.' in k for k in loaded) == name.startswith('skipat')


def test_coco_metafile_lists_every_config():
    import yaml
    with open(osp.join(REPO, 'configs', 'coco', 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    models = {m['Name']: m for m in meta['Models'] if m['In Collection'] == 'SkipAt-Mask-RCNN'}
    assert sorted(models) == sorted(f'{n}_mask-rcnn_1x' for n in CONFIGS)
    for name, path in CONFIGS.items():
        m = models[f'{name}_mask-rcnn_1x']
        assert m['Config'] == osp.relpath(path, REPO)
        assert 'Weights' not in m and 'Results' not in m  # nothing has been trained with these configs
        assert m['Metadata']['Pretrained'] == _cfg(name).model.backbone.init_cfg.checkpoint
        assert m['Metadata']['Batch Size'] == 16 and m['Metadata']['Epochs'] == 12


# ----------------------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_skipat_mask_rcnn_trains_and_tests_on_demo_coco(tmp_path):
    data_root = str(tmp_path / 'coco')
    run_tool(['misc/make_demo_data.py', 'coco', data_root, '--num-train', '4', '--num-val', '2'])
    assert len(os.listdir(osp.join(data_root, 'train2017'))) == 4
    cfg = tmp_path / 'skipat_t_mask-rcnn_demo.py'
    cfg.write_text(coco_demo_config('skipat_t_mask-rcnn_1x', data_root, 'mask-rcnn'))
    work = tmp_path / 'work'
    proc = run_tool(['train.py', str(cfg), '--work-dir', str(work), '--no-validate'], timeout=240)
    log = proc.stdout + proc.stderr
    losses = [float(v) for v in re.findall(r'Epoch\(train\) \[1\]\[\d/2\].*?\bloss: ([0-9.]+)', log)]
    assert len(losses) == 2 and all(np.isfinite(losses)), log[-3000:]
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key + ':' in log
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()

    out = tmp_path / 'preds.pkl'
    proc = run_tool(['test.py', str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'test'), '--out', str(out)],
                    timeout=240)
    log = proc.stdout + proc.stderr
    line = [ln for ln in log.splitlines() if 'Epoch(test) [2/2]' in ln and 'coco/bbox_mAP:' in ln]
    assert line, log[-3000:]
    metrics = dict((k, float(v)) for k, v in re.findall(r'(coco/\w+): (-?[0-9.]+)', line[-1]))
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert sorted(p['img_id'] for p in preds) == [1_000_001, 1_000_002]
    for p in preds:
        inst = p['pred_instances']
        assert len(inst['labels']) == len(inst['scores']) == len(inst['bboxes']) == len(inst['masks'])
        assert all(0 <= int(label) < len(demo_coco.CLASSES) for label in inst['labels'])
