"""The restoration stack: Charbonnier loss, PSNR/SSIM against scikit-image on real photographs, SIDD datasets
and transforms, the Denoiser model (preprocessing, mixup, tiling), the SIDD demo data and the crop tool."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.structures import BaseDataElement
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import mmevit  # noqa: F401
from mmevit.datasets.demo_sidd import add_camera_noise, load_photo
from mmevit.datasets.sidd import PairedImageDataset, SIDDValidationBlocks
from mmevit.datasets.transforms import (LoadImagePair, PackRestorationInputs, PairedRandomCrop,
                                        RandomDihedral)
from mmevit.evaluation import PSNR, SSIM, psnr, ssim
from mmevit.models.denoisers.denoiser import Denoiser, RestorationDataPreprocessor, _tile_starts
from mmevit.models.denoisers.losses import CharbonnierLoss
from mmevit.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from demo_overrides import restoration_demo_options
from tools_helpers import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PHOTOS = ('astronaut', 'coffee', 'chelsea')
TINY_UFORMER = dict(type='Uformer', arch=dict(embed_dims=4, depths=[1] * 9, num_heads=[1, 1, 2, 2, 4, 4, 2, 2, 1]),
                    img_size=64, drop_path_rate=0.)


def photo_pair(name: str, sigma: float = 10., seed: int = 0):
    """A photograph and a noisy float version of it (not rounded, values outside [0, 255] included)."""
    clean = getattr(skdata, name)()
    noisy = clean.astype(np.float64) + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return clean, noisy


def as_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 255)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- loss
def test_charbonnier_loss_values():
    pred, target = torch.tensor([0.5, 0.2, 0.2]), torch.tensor([0.5, 0.0, 0.3])
    loss = CharbonnierLoss()
    expected = np.mean(np.sqrt(np.array([0., 0.2, 0.1]) ** 2 + 1e-6))
    assert loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    assert CharbonnierLoss(loss_weight=2., reduction='sum')(pred, target).item() == \
        pytest.approx(2 * expected * 3, rel=1e-6)
    assert CharbonnierLoss(reduction='none')(pred, target).shape == (3,)
    assert loss(pred, pred).item() == pytest.approx(1e-3)  # sqrt(eps²) at zero error
    x = torch.zeros(4, requires_grad=True)
    loss(x, torch.zeros(4)).backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match='reduction'):
        CharbonnierLoss(reduction='avg')
    with pytest.raises(ValueError, match='differ'):
        loss(pred, target[:2])
    assert MODELS.get('CharbonnierLoss') is CharbonnierLoss


# ---------------------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize('name', PHOTOS)
def test_psnr_ssim_match_scikit_image_on_photographs(name):
    """Our definitions (8-bit rounding, Wang et al.'s Gaussian SSIM) equal scikit-image's with those settings."""
    clean, noisy = photo_pair(name)
    stored = as_uint8(noisy)
    expected_psnr = peak_signal_noise_ratio(clean, stored, data_range=255)
    expected_ssim = structural_similarity(clean, stored, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert psnr(noisy, clean) == pytest.approx(expected_psnr, abs=1e-9)
    assert ssim(noisy, clean) == pytest.approx(expected_ssim, abs=1e-9)
    chw = torch.from_numpy(noisy.transpose(2, 0, 1))
    assert psnr(chw, torch.from_numpy(clean).permute(2, 0, 1), input_order='CHW') == pytest.approx(expected_psnr,
                                                                                                    abs=1e-9)
    # crop_border removes the same border from both images before measuring
    c = 8
    expected = structural_similarity(clean[c:-c, c:-c], stored[c:-c, c:-c], gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert ssim(noisy, clean, crop_border=c) == pytest.approx(expected, abs=1e-9)
    # not rounding would change the value: the convention matters at SkipAt's +0.03-0.07 dB scale
    unrounded = 10 * np.log10(255 ** 2 / np.mean((np.clip(noisy, 0, 255) - clean) ** 2))
    assert abs(unrounded - expected_psnr) > 1e-3


def test_psnr_y_channel_and_edge_cases():
    clean, noisy = photo_pair('astronaut', sigma=5.)
    luma = lambda im: as_uint8(im).astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255 + 16  # noqa
    expected = peak_signal_noise_ratio(luma(clean), luma(noisy), data_range=255)
    assert psnr(noisy, clean, convert_to='Y') == pytest.approx(expected, abs=1e-9)
    assert psnr(clean, clean) == float('inf')
    assert ssim(clean, clean) == pytest.approx(1.0)
    with pytest.raises(ValueError, match='shapes differ'):
        psnr(clean, clean[:10])
    with pytest.raises(ValueError, match='input_order'):
        psnr(clean, clean, input_order='NCHW')
    with pytest.raises(ValueError, match='at least 11x11'):
        ssim(clean[:8, :8], clean[:8, :8])
    with pytest.raises(ValueError, match='crop_border'):
        psnr(clean[:10, :10], clean[:10, :10], crop_border=5)


def test_metric_classes_average_per_image():
    samples = []
    for name in PHOTOS:
        clean, noisy = photo_pair(name)
        samples.append(dict(pred_img=torch.from_numpy(noisy).permute(2, 0, 1),
                            gt_img=torch.from_numpy(clean).permute(2, 0, 1).float()))
    for cls, fn in ((PSNR, psnr), (SSIM, ssim)):
        metric = METRICS.build(dict(type=cls.__name__))
        metric.process({}, samples)
        expected = np.mean([fn(s['pred_img'], s['gt_img'], input_order='CHW') for s in samples])
        assert metric.evaluate(len(samples)) == {cls.__name__: pytest.approx(expected)}
    metric = PSNR(pred_key='input_img', prefix='noisy')
    with pytest.raises(KeyError, match='input_img'):
        metric.process({}, samples)


# ---------------------------------------------------------------------------------------------- transforms
def test_paired_transforms_keep_the_pair_aligned():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    img = (gt.astype(np.int16) + 1).clip(0, 255).astype(np.uint8)
    np.random.seed(0)
    out = PairedRandomCrop(16)(dict(img=img, gt=gt))
    t, left, _, _ = out['crop_bbox']
    assert out['img'].shape == (16, 16, 3)
    np.testing.assert_array_equal(out['gt'], gt[t:t + 16, left:left + 16])
    np.testing.assert_array_equal(out['img'], img[t:t + 16, left:left + 16])
    square = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    variants = {RandomDihedral.apply(square, i).tobytes() for i in range(8)}
    assert len(variants) == 8  # the 8 symmetries of the square are distinct
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        out = RandomDihedral()(dict(img=square + 1, gt=square))
        np.testing.assert_array_equal(out['img'], out['gt'] + 1)
        seen.add(out['dihedral'])
    assert seen == set(range(8))
    packed = PackRestorationInputs()(dict(img=img, gt=gt, img_path='a.png'))
    assert packed['inputs'].shape == (3, 40, 50) and packed['inputs'].dtype == torch.uint8
    assert packed['data_samples'].gt_img.shape == (3, 40, 50) and packed['data_samples'].img_path == 'a.png'
    with pytest.raises(ValueError, match='smaller than the crop'):
        PairedRandomCrop(64)(dict(img=img, gt=gt))
    with pytest.raises(ValueError, match='differ in size'):
        PairedRandomCrop(8)(dict(img=img, gt=gt[:30]))
    for name in ('LoadImagePair', 'PairedRandomCrop', 'RandomDihedral', 'PackRestorationInputs'):
        assert TRANSFORMS.get(name) is not None


# ---------------------------------------------------------------------------------------------- datasets
def _write_folder_pair(root, names, size=(24, 32)):
    rng = np.random.default_rng(0)
    for sub in ('input', 'groundtruth'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for n in names:
        for sub in ('input', 'groundtruth'):
            cv2.imwrite(osp.join(root, sub, n), rng.integers(0, 255, (*size, 3), dtype=np.uint8))


def test_paired_image_dataset(tmp_path):
    _write_folder_pair(str(tmp_path), ['1_1.png', '1_2.png', '2_1.png'])
    pipeline = [dict(type='LoadImagePair'), dict(type='PairedRandomCrop', crop_size=16),
                dict(type='RandomDihedral'), dict(type='PackRestorationInputs')]
    ds = DATASETS.build(dict(type='PairedImageDataset', data_root=str(tmp_path), pipeline=pipeline))
    assert len(ds) == 3
    item = ds[0]
    assert item['inputs'].shape == (3, 16, 16) and item['data_samples'].gt_img.shape == (3, 16, 16)
    raw = LoadImagePair()(dict(ds.get_data_info(2)))
    np.testing.assert_array_equal(raw['gt'], cv2.imread(str(tmp_path / 'groundtruth' / '2_1.png'))[..., ::-1])
    os.remove(tmp_path / 'groundtruth' / '1_2.png')
    with pytest.raises(ValueError, match='do not pair up'):
        PairedImageDataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='folder'):
        PairedImageDataset(str(tmp_path / 'missing'))


def test_sidd_validation_blocks(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (3, 2, 16, 16, 3), dtype=np.uint8)
    gt = rng.integers(0, 255, (3, 2, 16, 16, 3), dtype=np.uint8)
    savemat(tmp_path / 'ValidationNoisyBlocksSrgb.mat', {'ValidationNoisyBlocksSrgb': noisy})
    savemat(tmp_path / 'ValidationGtBlocksSrgb.mat', {'ValidationGtBlocksSrgb': gt})
    ds = SIDDValidationBlocks(str(tmp_path), pipeline=[dict(type='PackRestorationInputs')])
    assert len(ds) == 6
    item = ds[3]  # image 1, block 1
    np.testing.assert_array_equal(item['inputs'].permute(1, 2, 0).numpy(), noisy[1, 1])
    np.testing.assert_array_equal(item['data_samples'].gt_img.permute(1, 2, 0).numpy(), gt[1, 1])
    assert item['data_samples'].block == (1, 1)
    savemat(tmp_path / 'bad.mat', {'x': gt[0]})
    with pytest.raises(ValueError, match=r'uint8 \(images, blocks, H, W, 3\)'):
        SIDDValidationBlocks(str(tmp_path), gt_file='bad.mat')
    with pytest.raises(KeyError, match='no variable'):
        SIDDValidationBlocks(str(tmp_path), noisy_key='Noisy')


# ---------------------------------------------------------------------------------------------- model
def _batch(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    gts = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(n)]
    inputs = [(gt.int() + torch.randint(-20, 21, gt.shape, generator=g)).clamp(0, 255).to(torch.uint8) for gt in gts]
    return dict(inputs=inputs, data_samples=[BaseDataElement(gt_img=gt) for gt in gts])


def test_denoiser_loss_predict_tensor():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='Denoiser', generator=TINY_UFORMER))
    assert isinstance(model.data_preprocessor, RestorationDataPreprocessor)
    batch = _batch()
    data = model.data_preprocessor(batch, True)
    assert data['inputs'].shape == (2, 3, 64, 64) and 0 <= data['inputs'].min() and data['inputs'].max() <= 1
    torch.testing.assert_close(data['inputs'][0] * 255, batch['inputs'][0].float())
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_pix'} and losses['loss_pix'].requires_grad
    losses['loss_pix'].backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    preds = model.val_step(_batch())
    assert len(preds) == 2
    assert preds[0].pred_img.shape == (3, 64, 64) and 0 <= preds[0].pred_img.min() <= preds[0].pred_img.max() <= 255
    torch.testing.assert_close(preds[0].gt_img, _batch()['data_samples'][0].gt_img.float())
    torch.testing.assert_close(preds[0].input_img, _batch()['inputs'][0].float())
    x = torch.rand(1, 3, 40, 50)
    torch.testing.assert_close(model(x), model.generator(x))
    with pytest.raises(ValueError, match='mode'):
        model(x, mode='bogus')
    with pytest.raises(KeyError, match='unknown keys'):
        Denoiser(TINY_UFORMER, test_cfg=dict(tiles=256))


def test_mixup_starts_at_its_iteration():
    torch.manual_seed(0)
    pre = RestorationDataPreprocessor(mixup=dict(alpha=1.2, start_iter=10))
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 9)
    plain = pre(_batch(4), True)
    torch.testing.assert_close(plain['inputs'] * 255, torch.stack(_batch(4)['inputs']).float())
    hub.update_info('iter', 10)
    mixed = pre(_batch(4), True)
    assert not torch.allclose(mixed['inputs'], plain['inputs'])
    # input and ground truth are mixed with the same weights and partners: their difference mixes linearly
    diff = mixed['inputs'] - torch.stack([s.gt_img for s in mixed['data_samples']])
    plain_diff = plain['inputs'] - torch.stack([s.gt_img for s in plain['data_samples']])
    assert diff.abs().max() <= plain_diff.abs().max() + 1e-6
    hub.update_info('iter', 0)
    with pytest.raises(ValueError, match='mixup'):
        RestorationDataPreprocessor(mixup=dict(alpha=0))


def test_tiled_restoration():
    assert _tile_starts(100, 40, 8) == [0, 32, 60] and _tile_starts(30, 40, 8) == [0]
    conv = torch.nn.Conv2d(3, 3, 1)  # local: tiles must reproduce the whole-image result exactly
    model = Denoiser(conv, test_cfg=dict(tile=32, tile_overlap=8))
    x = torch.rand(1, 3, 70, 45)
    with torch.no_grad():
        torch.testing.assert_close(model.restore(x), conv(x))
    with pytest.raises(ValueError, match='tile'):
        Denoiser(conv, test_cfg=dict(tile=16, tile_overlap=16))
    uformer = Denoiser(TINY_UFORMER, test_cfg=dict(tile=64, tile_overlap=16)).eval()
    with torch.no_grad():
        out = uformer.restore(torch.rand(1, 3, 100, 90))
    assert out.shape == (1, 3, 100, 90) and torch.isfinite(out).all()


def test_denoiser_checkpoint_through_generator(tmp_path):
    """convert_for_model finds the Uformer under ``generator``: an official network checkpoint loads."""
    from mmevit.engine.convert import check_state_dict, convert_for_model
    from mmevit.analysis.official import to_official_state_dict
    model = Denoiser(TINY_UFORMER)
    state, _ = convert_for_model({'state_dict': to_official_state_dict(model.generator)}, model)
    check_state_dict(state, model)
    assert all(k.startswith('generator.') for k in state)


# ---------------------------------------------------------------------------------------------- demo data
def test_demo_sidd_data(tmp_path):
    from mmevit.datasets import make_demo_data
    marker, made = make_demo_data('sidd', str(tmp_path / 'sidd'), num_train=6, num_val=3, seed=1)
    assert made
    root = tmp_path / 'sidd'
    assert sorted(os.listdir(root / 'train' / 'input')) == [f'{i:05d}.png' for i in range(6)]
    train = PairedImageDataset(str(root), data_prefix=dict(img='train/input', gt='train/groundtruth'))
    val = SIDDValidationBlocks(str(root / 'val'), pipeline=[dict(type='PackRestorationInputs')])
    folder_val = PairedImageDataset(str(root / 'val'))
    assert len(train) == 6 and len(val) == 3 and len(folder_val) == 3
    values = [psnr(val[i]['inputs'], val[i]['data_samples'].gt_img, input_order='CHW') for i in range(3)]
    assert marker['meta']['noisy_val_psnr'] == pytest.approx(np.mean(values), abs=1e-3)
    assert 18 < np.mean(values) < 35  # visible, realistic noise
    noisy = cv2.imread(str(root / 'val' / 'input' / '00001.png'))[..., ::-1]
    np.testing.assert_array_equal(noisy, val[1]['inputs'].permute(1, 2, 0).numpy())


def test_camera_noise_is_signal_dependent():
    """Poisson-Gaussian in linear intensity: the linear variance grows as a * x + b²; after gamma encoding the
    noise is relatively stronger in dark regions."""
    from mmevit.datasets.demo_sidd import srgb_to_linear
    rng = np.random.default_rng(0)
    a, b = 0.01, 0.005
    for value in (60, 200):
        clean = np.full((128, 128, 3), value, np.uint8)
        noisy = add_camera_noise(clean, rng, a, b)
        x = srgb_to_linear(value / 255.)
        var = srgb_to_linear(noisy / 255.).var()
        assert var == pytest.approx(a * x + b * b, rel=0.1)
    dark, bright = (add_camera_noise(np.full((128, 128, 3), v, np.uint8), rng, a, b).std() / v for v in (30, 200))
    assert dark > bright
    assert load_photo('chelsea').shape == (150, 225, 3)


# ---------------------------------------------------------------------------------------------- tools
def test_sidd_crops_tool(tmp_path):
    src = tmp_path / 'Data'
    rng = np.random.default_rng(0)
    for scene in ('0001_001_S6', '0002_001_S6'):
        os.makedirs(src / scene)
        for n in ('010', '011'):
            gt = rng.integers(0, 250, (40, 50, 3), dtype=np.uint8)
            cv2.imwrite(str(src / scene / f'GT_SRGB_{n}.PNG'), gt)
            cv2.imwrite(str(src / scene / f'NOISY_SRGB_{n}.PNG'), gt + 5)
    tool = osp.join(REPO, 'tools', 'dataset_converters', 'sidd_crops.py')
    out = tmp_path / 'train'
    run = subprocess.run([sys.executable, tool, str(src), str(out), '--patch-size', '16', '--num-patches', '3'],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    names = sorted(os.listdir(out / 'input'))
    assert names == sorted(f'{i}_{j}.png' for i in range(1, 5) for j in range(1, 4))
    for n in names:
        noisy, gt = cv2.imread(str(out / 'input' / n)), cv2.imread(str(out / 'groundtruth' / n))
        assert noisy.shape == (16, 16, 3)
        np.testing.assert_array_equal(noisy, gt + 5)  # cut at the same place
    again = subprocess.run([sys.executable, tool, str(src), str(out)], capture_output=True, text=True)
    assert again.returncode == 1 and 'not an empty folder' in again.stderr


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.e2e
def test_demo_config_trains_tests_and_denoises(tmp_path):
    """The SIDD demo config through tools/train.py, tools/test.py and tools/denoise.py (in process, 4 iterations)."""
    from mmevit.datasets import make_demo_data
    data = tmp_path / 'demo_sidd'
    make_demo_data('sidd', str(data), num_train=8, num_val=2)
    config = osp.join(REPO, 'configs', 'demo', 'skipat_uformer_t_sidd_demo.py')
    work = tmp_path / 'work'
    options = restoration_demo_options(str(data), 2, 4)
    load_tool('train').main([config, '--work-dir', str(work), *options])
    ckpt = str(work / 'iter_4.pth')
    metrics = load_tool('test').main([config, ckpt, '--work-dir', str(tmp_path / 'test'), *options])
    assert set(metrics) == {'PSNR', 'SSIM', 'noisy/PSNR', 'noisy/SSIM'}
    noisy = [psnr(cv2.imread(str(data / 'val' / 'input' / f)), cv2.imread(str(data / 'val' / 'groundtruth' / f)))
             for f in ('00000.png', '00001.png')]
    assert metrics['noisy/PSNR'] == pytest.approx(np.mean(noisy), abs=1e-6)
    out = tmp_path / 'denoised'
    results = load_tool('denoise').main([config, ckpt, str(data / 'val' / 'input'), '--gt',
                                              str(data / 'val' / 'groundtruth'), '--out-dir', str(out)])
    assert len(results) == 2
    first = results[str(data / 'val' / 'input' / '00000.png')]
    assert first['psnr_in'] == pytest.approx(noisy[0], abs=1e-9)
    compare = cv2.imread(str(out / '00000_compare.png'))
    assert compare.shape == (64, 3 * 64, 3) and cv2.imread(first['output']).shape == (64, 64, 3)
    assert np.mean([r['psnr_out'] for r in results.values()]) == pytest.approx(metrics['PSNR'], abs=1e-4)
    fast = load_tool('denoise').main([config, ckpt, str(data / 'val' / 'input' / '00000.png'), '--compile',
                                      '--out-dir', str(tmp_path / 'compiled')])
    compiled = cv2.imread(fast[str(data / 'val' / 'input' / '00000.png')]['output']).astype(int)
    assert np.abs(compiled - cv2.imread(first['output'])).max() <= 1  # float rounding may flip a uint8 step


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize('name', ['uformer_t', 'uformer_s', 'uformer_b', 'skipat_uformer_t', 'skipat_uformer_s',
                                  'skipat_uformer_b'])
def test_sidd_configs_follow_the_uformer_recipe(name):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'sidd', f'{name}.py'))
    assert cfg.default_scope == 'mmevit'
    gen = cfg.model.generator
    assert gen.type == 'Uformer' and gen.arch == name[-1] and gen.img_size == 128 and gen.drop_path_rate == 0.1
    assert gen.get('skipat') == ('attention' if name.startswith('skipat') else None)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay, tuple(opt.betas)) == ('AdamW', 2e-4, 0.02, (0.9, 0.999))
    assert cfg.train_dataloader.batch_size == 32 and cfg.auto_scale_lr.base_batch_size == 32
    crop = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'PairedRandomCrop'][0]
    assert crop.crop_size == 128 and any(t.type == 'RandomDihedral' for t in cfg.train_dataloader.dataset.pipeline)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 250 * 3000
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 3 * 3000 == cosine.begin
    assert cosine.type == 'CosineAnnealingLR' and cosine.end == cfg.train_cfg.max_iters and cosine.eta_min == 1e-6
    assert cfg.model.pixel_loss == dict(type='CharbonnierLoss', eps=1e-3)
    assert cfg.model.data_preprocessor.mixup.start_iter == 5 * 3000
    assert cfg.val_dataloader.dataset.type == 'SIDDValidationBlocks'
