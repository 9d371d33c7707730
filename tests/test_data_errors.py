"""Bad data is refused with an error that names the file or sample (issue 12):

- NaN/Inf in a *training* batch: refused by the data preprocessor, once per batch, naming the samples
  (``mmevit/models/data_preprocessors.py``; evaluation passes it through);
- a missing, truncated or garbage image / annotation / list file names the file;
- segmentation labels outside the classes (other than ignore_index 255, after mmseg's reduce_zero_label) are
  refused, naming the file (``LoadSegAnnotations``); 16-bit and colour-coded label maps too;
- COCO json that is not json, or annotations of undeclared categories, name the file (``CheckedCocoDataset``).
"""
import copy
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement
from PIL import Image

import mmevit  # noqa: F401
from mmevit.datasets import make_demo_data
from mmevit.datasets.file_io import UnreadableFileError
from mmevit.models.data_preprocessors import NonFiniteInputError
from mmevit.registry import DATASETS, MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NAN, INF = float('nan'), float('inf')


# ============================================================================ NaN/Inf in training batches
def restoration_batch(n=3, float_inputs=True, float_gt=False, shape=(3, 8, 8), paths=True):
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for i in range(n):
        x = torch.rand(shape, generator=gen) * 255
        g = torch.rand(shape, generator=gen) * 255
        meta = dict(img_path=f'noisy/{i:03d}.png', gt_path=f'clean/{i:03d}.png') if paths else {}
        s = BaseDataElement(metainfo=meta)
        s.gt_img = g if float_gt else g.to(torch.uint8)
        inputs.append(x if float_inputs else x.to(torch.uint8))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def build_restoration_preprocessor(**kwargs):
    return MODELS.build(dict(type='RestorationDataPreprocessor', **kwargs))


def test_restoration_preprocessor_names_the_non_finite_training_sample():
    pre = build_restoration_preprocessor()
    data = restoration_batch()
    data['inputs'][1][0, 2, 3] = NAN
    data['inputs'][1][1, 0, 0] = INF
    with pytest.raises(NonFiniteInputError, match=r'inputs of 1 of 3 samples.*sample 1 \(img_path=noisy/001\.png\): '
                                                  r'2 non-finite'):
        pre(copy.deepcopy(data), training=True)
    # Evaluation: NaN in gives NaN out for that image only; nothing accumulates, nothing is refused.
    out = pre(copy.deepcopy(data), training=False)
    assert torch.isnan(out['inputs'][1]).any() and torch.isfinite(out['inputs'][[0, 2]]).all()


def test_restoration_preprocessor_checks_float_ground_truths():
    pre = build_restoration_preprocessor()
    data = restoration_batch(float_gt=True)
    data['data_samples'][2].gt_img[0, 0, 0] = -INF
    with pytest.raises(NonFiniteInputError, match=r'ground truths.*sample 2 \(img_path=noisy/002\.png\): 1 '):
        pre(data, training=True)


def test_restoration_check_runs_before_mixup():
    """Mixup would spread the bad sample into another one: the sample is named before mixing."""
    pre = build_restoration_preprocessor(mixup=dict(alpha=1.2, start_iter=0))  # mixup from iteration 0
    data = restoration_batch(n=8)
    data['inputs'][2][:, 0, 0] = NAN
    with pytest.raises(NonFiniteInputError, match=r'of 1 of 8 samples.*sample 2 \(img_path=noisy/002\.png\): 3 '):
        pre(data, training=True)


def test_integer_images_are_not_scanned(monkeypatch):
    """8-bit images cannot hold NaN/Inf: no pass over them (and no device synchronisation)."""
    calls = []
    isfinite = torch.isfinite
    monkeypatch.setattr(torch, 'isfinite', lambda x: calls.append(x.shape) or isfinite(x))
    pre = build_restoration_preprocessor()
    out = pre(restoration_batch(float_inputs=False), training=True)
    assert calls == [] and out['inputs'].dtype == torch.float32
    pre(restoration_batch(float_inputs=True), training=True)
    assert calls == [(3, 3, 8, 8)]  # float inputs: one check of the stacked batch


def test_video_clips_are_named_by_their_frames():
    pre = build_restoration_preprocessor()
    data = restoration_batch(n=2, shape=(3, 3, 8, 8), paths=False)  # (T, C, H, W) clips, as PackVideoInputs
    data['data_samples'][1].set_metainfo(dict(frame_paths=['seq/00000.jpg', 'seq/00001.jpg', 'seq/00002.jpg']))
    data['inputs'][1][2] = INF
    with pytest.raises(NonFiniteInputError, match=r'sample 1 \(frame_paths=seq/00000\.jpg \.\.\. \(3 frames\)\): '
                                                  r'192 non-finite'):
        pre(data, training=True)


def toolbox_batch(toolbox: str, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    inputs = [(torch.rand(3, 16, 16, generator=gen) * 255).to(dtype) for _ in range(2)]
    if toolbox == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for i in range(2):
            s = SegDataSample(metainfo=dict(img_path=f'img/{i}.jpg', seg_map_path=f'ann/{i}.png'))
            s.gt_sem_seg = PixelData(data=torch.zeros(1, 16, 16, dtype=torch.long))
            samples.append(s)
    elif toolbox == 'mmdet':
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        samples = []
        for i in range(2):
            s = DetDataSample(metainfo=dict(img_path=f'img/{i}.jpg', img_shape=(16, 16)))
            s.gt_instances = InstanceData(bboxes=torch.tensor([[1., 1., 8., 8.]]), labels=torch.tensor([0]))
            samples.append(s)
    else:
        from mmpretrain.structures import DataSample
        samples = [DataSample(metainfo=dict(img_path=f'img/{i}.jpg')).set_gt_label(i) for i in range(2)]
    return dict(inputs=inputs, data_samples=samples)


FINITE = {'mmseg': 'FiniteSegDataPreProcessor', 'mmdet': 'FiniteDetDataPreprocessor',
          'mmpretrain': 'FiniteClsDataPreprocessor'}


def build_toolbox_preprocessor(toolbox, **kwargs):
    from mmengine.registry import MODELS as ROOT
    if toolbox == 'mmseg':
        kwargs.setdefault('size', (16, 16))  # mmseg pads training batches to a size
    with DefaultScope.overwrite_default_scope(toolbox):
        return ROOT.build(dict(type=FINITE[toolbox], mean=[127.5] * 3, std=[127.5] * 3, **kwargs))


@pytest.mark.parametrize('toolbox', sorted(FINITE))
def test_toolbox_preprocessors_refuse_non_finite_training_batches(toolbox):
    pre = build_toolbox_preprocessor(toolbox)
    data = toolbox_batch(toolbox)
    data['inputs'][1][0, 5, 5] = NAN
    with pytest.raises(NonFiniteInputError, match=rf'{FINITE[toolbox]}: NaN/Inf in the training inputs of 1 of 2 '
                                                  r'samples.*sample 1 \(img_path=img/1\.jpg\): 1 non-finite'):
        pre(copy.deepcopy(data), training=True)
    out = pre(copy.deepcopy(data), training=False)  # evaluation: passed through
    assert torch.isnan(out['inputs']).any()
    # finite batches, float or 8-bit, train as with the toolbox's own class
    good = toolbox_batch(toolbox)
    assert torch.isfinite(pre(good, training=True)['inputs']).all()
    assert torch.isfinite(pre(toolbox_batch(toolbox, torch.uint8), training=True)['inputs']).all()


@pytest.mark.parametrize('toolbox', sorted(FINITE))
def test_toolbox_preprocessors_refuse_a_zero_std(toolbox):
    """Normalising with std 0 would create Inf from finite pixels: refused once, at construction."""
    from mmengine.registry import MODELS as ROOT
    with DefaultScope.overwrite_default_scope(toolbox), pytest.raises(ValueError, match='std must be finite and '
                                                                                         'non-zero'):
        ROOT.build(dict(type=FINITE[toolbox], mean=[127.5] * 3, std=[127.5, 0., 127.5]))


# ============================================================================ restoration files
@pytest.fixture(scope='module')
def sidd_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('sidd') / 'data')
    make_demo_data('sidd', root, num_train=3, num_val=2, seed=0)
    return root


def copy_of(src: str, dst) -> str:
    dst = str(dst)
    shutil.copytree(src, dst)
    return dst


def paired_dataset(root: str):
    return DATASETS.build(dict(type='PairedImageDataset', data_root=root,
                               data_prefix=dict(img='train/input', gt='train/groundtruth'),
                               pipeline=[dict(type='LoadImagePair'), dict(type='PackRestorationInputs')]))


def truncate(path: str) -> None:
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


def test_restoration_images_name_the_file(sidd_data, tmp_path):
    root = copy_of(sidd_data, tmp_path / 'd')
    ds = paired_dataset(root)
    noisy0, clean1, noisy2 = ds.get_data_info(0)['img_path'], ds.get_data_info(1)['gt_path'], \
        ds.get_data_info(2)['img_path']
    with open(noisy0, 'wb') as f:
        f.write(b'not an image')
    truncate(clean1)
    os.remove(noisy2)
    with pytest.raises(UnreadableFileError, match=rf'LoadImagePair: cannot decode {noisy0} \(12 bytes\)'):
        ds[0]
    with pytest.raises(UnreadableFileError, match=rf'cannot decode {clean1}'):
        ds[1]
    with pytest.raises(FileNotFoundError, match=noisy2):
        ds[2]


def test_sidd_mat_files_name_the_file(sidd_data, tmp_path):
    root = copy_of(sidd_data, tmp_path / 'd')
    noisy = osp.join(root, 'val', 'ValidationNoisyBlocksSrgb.mat')
    truncate(noisy)
    with pytest.raises(UnreadableFileError, match=rf'cannot read {noisy} .* as a MATLAB file'):
        DATASETS.build(dict(type='SIDDValidationBlocks', data_root=osp.join(root, 'val')))
    with pytest.raises(FileNotFoundError, match='nope.mat'):
        DATASETS.build(dict(type='SIDDValidationBlocks', data_root=osp.join(root, 'val'), noisy_file='nope.mat'))


@pytest.fixture(scope='module')
def davis_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('davis') / 'data')
    make_demo_data('davis', root, num_train=2, num_val=1, seed=0)
    return root


def video_dataset(root: str, ann_file='ImageSets/2017/train.txt'):
    return DATASETS.build(dict(type='VideoFramesDataset', data_root=root, ann_file=ann_file,
                               data_prefix=dict(img='JPEGImages/480p'),
                               pipeline=[dict(type='LoadVideoFrames'), dict(type='AddGaussianNoise', seed=0),
                                         dict(type='PackVideoInputs')]))


def test_video_lists_and_frames_name_the_file(davis_data, tmp_path):
    root = copy_of(davis_data, tmp_path / 'd')
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        video_dataset(root, 'ImageSets/2017/nope.txt')
    binary = osp.join(root, 'ImageSets', '2017', 'binary.txt')
    with open(binary, 'wb') as f:
        f.write(bytes(range(256)))
    with pytest.raises(ValueError, match=rf'sequence list .*binary\.txt.* is not a text file'):
        video_dataset(root, 'ImageSets/2017/binary.txt')
    listed = osp.join(root, 'ImageSets', '2017', 'listed.txt')
    with open(listed, 'w') as f:
        f.write('no_such_sequence\n')
    with pytest.raises(FileNotFoundError, match='no_such_sequence'):
        video_dataset(root, 'ImageSets/2017/listed.txt')
    ds = video_dataset(root)
    frame = ds.get_data_info(0)['frame_paths'][1]
    with open(frame, 'wb') as f:
        f.write(b'garbage')
    with pytest.raises(UnreadableFileError, match=rf'LoadVideoFrames: cannot decode {frame}'):
        ds[0]


# ============================================================================ segmentation (mmseg) files and labels
SEG_CONFIG = osp.join(REPO, 'configs', 'demo', 'skipat_t_upernet_demo.py')


@pytest.fixture(scope='module')
def ade_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade') / 'data')
    make_demo_data('ade20k', root, num_train=4, num_val=1, seed=0)
    return root


def seg_dataset(root: str, **overrides):
    """The shipped demo config's training dataset (LoadSegAnnotations, reduce_zero_label, 5 classes) without its
    random transforms, on ``root``."""
    from mmseg.registry import DATASETS as SEG_DATASETS
    cfg = Config.fromfile(SEG_CONFIG)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.data_root = root
    ds_cfg.pipeline = [t for t in ds_cfg.pipeline
                       if t.type in ('LoadImageFromFile', 'LoadSegAnnotations', 'PackSegInputs')]
    ds_cfg.update(overrides)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return SEG_DATASETS.build(ds_cfg)


def write_label_map(path: str, label: np.ndarray) -> None:
    Image.fromarray(label).save(path)


def test_seg_annotation_files_name_the_file(ade_data, tmp_path):
    root = copy_of(ade_data, tmp_path / 'd')
    ds = seg_dataset(root)
    ann0, ann1 = ds.get_data_info(0)['seg_map_path'], ds.get_data_info(1)['seg_map_path']
    img2, img3 = ds.get_data_info(2)['img_path'], ds.get_data_info(3)['img_path']
    with open(ann0, 'wb') as f:
        f.write(b'garbage')  # mmseg's LoadAnnotations: "UnidentifiedImageError: cannot identify image file <BytesIO>"
    truncate(ann1)          # mmseg's LoadAnnotations: "OSError: image file is truncated"
    os.remove(img2)
    with open(img3, 'wb') as f:
        f.write(b'garbage')
    with pytest.raises(UnreadableFileError, match=rf'LoadSegAnnotations: cannot decode {ann0} \(7 bytes\)'):
        ds[0]
    with pytest.raises(UnreadableFileError, match=rf'cannot decode {ann1}'):
        ds[1]
    with pytest.raises(FileNotFoundError, match=img2):  # mmcv's LoadImageFromFile names it
        ds[2]
    with pytest.raises(AssertionError, match=rf'failed to load image: {img3}'):  # mmcv's too
        ds[3]
    os.remove(ann0)
    with pytest.raises(FileNotFoundError, match=ann0):
        ds[0]


def test_seg_missing_ann_file_is_named(ade_data):
    with pytest.raises(AssertionError, match='nope.txt'):  # mmseg's own check
        seg_dataset(ade_data, ann_file='nope.txt')


def test_empty_image_folder_is_named(ade_data, tmp_path):
    """Without the compat shim mmengine fails in np.concatenate ("need at least one array to concatenate")."""
    from mmevit.compat import EmptyDatasetError
    root = copy_of(ade_data, tmp_path / 'd')
    folder = osp.join(root, 'images', 'training')
    for name in os.listdir(folder):
        os.remove(osp.join(folder, name))
    with pytest.raises(EmptyDatasetError, match=rf"SegDataset found no samples \(data_root='{root}', "
                                                r"data_prefix=\{'img_path': '.*images/training'"):
        seg_dataset(root)


def test_seg_labels_outside_the_classes_are_refused(ade_data, tmp_path):
    """reduce_zero_label=True (the demo's and ADE20K's): stored 0 -> 255 (ignored), v -> v - 1, stored 255 stays
    255. With 5 classes the stored labels are 1..5; a stored 7 becomes 6: refused, named."""
    root = copy_of(ade_data, tmp_path / 'd')
    ds = seg_dataset(root)
    path = ds.get_data_info(0)['seg_map_path']
    label = np.array(Image.open(path))
    assert label.max() <= 5
    label[:4, :4] = 0
    label[4:8, :4] = 255
    write_label_map(path, label)
    gt = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    assert (gt[:8, :4] == 255).all() and gt.max() == 255 and gt[gt != 255].max() <= 4  # ignored, in range
    label[0, 0] = 7
    write_label_map(path, label)
    with pytest.raises(ValueError, match=rf'{path} holds label values 6 \(stored as 7\) outside 0\.\.4 and not '
                                         r'ignore_index=255 \(1 pixels\); with reduce_zero_label=True'):
        ds[0]


def test_seg_labels_without_reduce_zero_label(ade_data, tmp_path):
    """reduce_zero_label=False on ADE20K-style data (0 = other, classes 1..5): label 5 is out of range for 5
    classes; the error says so and suggests reduce_zero_label."""
    root = copy_of(ade_data, tmp_path / 'd')
    ds = seg_dataset(root, reduce_zero_label=False)
    path = ds.get_data_info(0)['seg_map_path']
    label = np.array(Image.open(path))
    label[:2, :2], label[2:4, :2] = 0, 5
    write_label_map(path, label)
    with pytest.raises(ValueError, match=r'holds label values 5 \(stored as 5\) .* reduce_zero_label=False: stored '
                                         r'values are the labels, 0\.\.4 \(0 and 1\.\.num_classes stored.*should the '
                                         r'dataset set reduce_zero_label=True'):
        ds[0]


def test_seg_label_maps_of_the_wrong_kind_are_refused(ade_data, tmp_path):
    root = copy_of(ade_data, tmp_path / 'd')
    ds = seg_dataset(root)
    rgb, wide = ds.get_data_info(0)['seg_map_path'], ds.get_data_info(1)['seg_map_path']
    label = np.array(Image.open(rgb))
    write_label_map(rgb, np.stack([label] * 3, -1))  # colour-coded: mmseg loads (H, W, 3) and fails later
    with pytest.raises(ValueError, match=rf'{rgb} is a \(128, 128, 3\) image, not a single-channel label map'):
        ds[0]
    wide_label = np.array(Image.open(wide)).astype(np.uint16)
    wide_label[0, 0] = 300  # mmseg casts to uint8: 300 would silently become 44
    write_label_map(wide, wide_label)
    with pytest.raises(ValueError, match=rf'{wide} holds label values up to 300 .* would wrap them silently'):
        ds[1]


def test_seg_loader_passes_images_without_annotation():
    """No seg_map_path (mmseg's inferencers drop only a transform named LoadAnnotations): passed through."""
    from mmevit.registry import TRANSFORMS
    load = TRANSFORMS.build(dict(type='LoadSegAnnotations', num_classes=5))
    out = load(dict(img=np.zeros((4, 4, 3), np.uint8), seg_fields=[]))
    assert 'gt_seg_map' not in out and out['seg_fields'] == []
    with pytest.raises(ValueError, match='num_classes must be a positive int'):
        TRANSFORMS.build(dict(type='LoadSegAnnotations', num_classes=0))


def test_seg_loader_without_num_classes_keeps_mmseg_behaviour(tmp_path):
    from mmevit.registry import TRANSFORMS
    path = str(tmp_path / 'ann.png')
    write_label_map(path, np.array([[0, 1], [9, 255]], np.uint8))
    results = dict(seg_map_path=path, reduce_zero_label=True, seg_fields=[])
    out = TRANSFORMS.build(dict(type='LoadSegAnnotations'))(copy.deepcopy(results))
    np.testing.assert_array_equal(out['gt_seg_map'], [[255, 0], [8, 255]])  # mmseg's reduce_zero_label rule
    with pytest.raises(ValueError, match='holds label values 8 \\(stored as 9\\)'):
        TRANSFORMS.build(dict(type='LoadSegAnnotations', num_classes=8))(copy.deepcopy(results))


# ============================================================================ COCO json
@pytest.fixture(scope='module')
def coco_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco') / 'data')
    make_demo_data('coco', root, num_train=2, num_val=1, seed=0)
    return root


def coco_dataset(root: str, ann_file: str, classes=('sports ball', 'kite', 'surfboard', 'book')):
    from mmdet.registry import DATASETS as DET_DATASETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DET_DATASETS.build(dict(
            type='CheckedCocoDataset', data_root=root, ann_file=ann_file, data_prefix=dict(img='train2017/'),
            metainfo=dict(classes=classes),
            pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                      dict(type='PackDetInputs')]))


def test_coco_json_errors_name_the_file(coco_data, tmp_path):
    root = copy_of(coco_data, tmp_path / 'd')
    ann = osp.join(root, 'annotations', 'instances_train2017.json')
    with open(ann) as f:
        content = json.load(f)
    assert len(coco_dataset(root, ann)) == 2 and len(coco_dataset(root, ann, classes=('kite', ))) >= 1
    with pytest.raises(FileNotFoundError, match='nope.json'):
        coco_dataset(root, osp.join(root, 'annotations', 'nope.json'))
    broken = osp.join(root, 'annotations', 'broken.json')
    with open(broken, 'w') as f:
        f.write(json.dumps(content)[:100])  # mmdet: "JSONDecodeError: Expecting ..." without the file
    with pytest.raises(ValueError, match=rf'cannot read COCO annotations {broken}: not a valid json file'):
        coco_dataset(root, broken)
    content['annotations'][0]['category_id'] = 999  # mmdet drops it silently
    undeclared = osp.join(root, 'annotations', 'undeclared.json')
    with open(undeclared, 'w') as f:
        json.dump(content, f)
    with pytest.raises(ValueError, match=rf'{undeclared}: 1 annotation\(s\) have a category_id that is not among '
                                         r"the file's categories \[37, 38, 42, 84\], e.g. annotation .* of image "
                                         r'.*\.jpg \(category_id 999\)'):
        coco_dataset(root, undeclared)
