"""UniFormer video denoiser (SkipAt attention reuse), DAVIS-layout data, sliding-window inference, tools."""
import os.path as osp

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmevit.models.denoisers.uniformer_denoiser import (UniFormerDenoiser, VideoDenoiser, temporal_sliding_restore,
                                                        temporal_windows, window_partition_3d, window_reverse_3d)

from demo_overrides import restoration_demo_options
from tools_helpers import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dims=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 4], mlp_ratio=2.)


def tiny(**kwargs):
    torch.manual_seed(0)
    return UniFormerDenoiser(dict(TINY), **kwargs)


@pytest.mark.parametrize('skip', [False, True])
def test_forward_backward_reaches_every_parameter(skip):
    model = tiny(skip_attention=skip, drop_path_rate=0.1)
    x = torch.rand(2, 3, 3, 64, 64)
    y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_skipat_decoder_has_no_query_key_projections():
    base, skip = tiny(), tiny(skip_attention=True)
    dec = [k for k in skip.state_dict() if k.startswith('decoder.') and '.attn.' in k]
    assert dec and not any('.qkv.' in k or '.q.' in k or '.k.' in k for k in dec)
    assert any(k.endswith('.attn.v.weight') for k in dec)
    assert any('.attn.qkv.' in k for k in skip.state_dict() if k.startswith('encoder.'))  # encoder keeps q/k
    base_dec = [k for k in base.state_dict() if k.startswith('decoder.') and '.attn.qkv.' in k]
    assert base_dec
    # a baseline checkpoint loads into the SkipAt model: values' rows of qkv kept, q/k dropped
    state, dropped = skip.convert_state_dict(base.state_dict())
    assert sorted(dropped) == sorted(base_dec)
    skip.load_state_dict(state, strict=True)
    w = base.state_dict()[base_dec[0]]
    assert torch.equal(skip.state_dict()[base_dec[0].replace('qkv', 'v')], w[2 * w.shape[0] // 3:])
    # own format: identity
    own, dropped = skip.convert_state_dict(skip.state_dict())
    assert not dropped and own.keys() == skip.state_dict().keys()


def _counted_macs(model, x):
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize('thw', [(7, 64, 64), (3, 64, 128)])
def test_flops_formula_matches_the_counter_and_skipat_saves(thw):
    """``flops()`` = what torch's flop counter sees on the eager path (convs, linears, attention matmuls)."""
    base, skip = tiny(fused_attn=False), tiny(fused_attn=False, skip_attention=True)
    x = torch.rand(1, thw[0], 3, *thw[1:])
    with torch.no_grad():
        counted = [_counted_macs(m, x) for m in (base, skip)]
    assert counted[0] == base.flops(thw) and counted[1] == skip.flops(thw)
    assert counted[1] < counted[0]


def test_default_archs_save_about_the_papers_17_percent():
    for arch, (lo, hi) in (('s', (0.16, 0.18)), ('t', (0.15, 0.18))):
        base, skip = UniFormerDenoiser(arch), UniFormerDenoiser(arch, skip_attention=True)
        saved = 1 - skip.flops((7, 128, 128)) / base.flops((7, 128, 128))
        assert lo < saved < hi, (arch, saved)


@pytest.mark.parametrize('shape', [(1, 1, 3, 20, 33), (1, 5, 3, 64, 64), (2, 9, 3, 70, 64), (1, 7, 3, 8, 130)])
def test_any_length_and_size(shape):
    for skip in (False, True):
        model = tiny(skip_attention=skip).eval()
        x = torch.rand(*shape)
        with torch.no_grad():
            y = model(x)
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_long_clips_are_split_into_temporal_windows():
    """A clip longer than the temporal window is padded (replicating its last frame) to a multiple of it."""
    model = tiny(window_size=(2, 8, 8)).eval()
    assert model.temporal_window(5) == 2 and model.temporal_window(1) == 1
    x = torch.rand(1, 5, 3, 64, 64)
    with torch.no_grad():
        padded = torch.cat([x, x[:, -1:]], 1)
        assert torch.allclose(model(x), model.forward_aligned(padded)[:, :5], atol=1e-6)


@pytest.mark.parametrize('skip', [False, True])
def test_fused_and_eager_attention_agree(skip):
    fused, eager = tiny(skip_attention=skip), tiny(skip_attention=skip, fused_attn=False)
    eager.load_state_dict(fused.state_dict())
    x = torch.rand(1, 7, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), eager(x), atol=1e-5, rtol=1e-4)


def test_onednn_inference_conv_matches_the_reference():
    from mmevit.models.denoisers.uniformer_denoiser import conv3d
    layer = torch.nn.Conv3d(8, 3, 3, 1, 1)
    x = torch.randn(2, 8, 5, 12, 10).transpose(2, 3).transpose(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(conv3d(x, layer), torch.nn.functional.conv3d(x, layer.weight, layer.bias, padding=1),
                                   atol=1e-5, rtol=1e-5)


def test_window_partition_roundtrip_and_layout():
    x = torch.randn(2, 4, 16, 24, 5)
    w = window_partition_3d(x, (2, 8, 8))
    assert w.shape == (2 * 2 * 2 * 3, 2 * 8 * 8, 5)
    assert torch.equal(w[0].view(2, 8, 8, 5), x[0, :2, :8, :8])
    assert torch.equal(w[1].view(2, 8, 8, 5), x[0, :2, :8, 8:16])
    assert torch.equal(window_reverse_3d(w, (2, 8, 8), (2, 4, 16, 24)), x)


def test_attention_reuse_maps_heads_explicitly():
    from mmevit.models.denoisers.uniformer_denoiser import AttentionReuse
    m = AttentionReuse(8, num_heads=4, src_heads=2)
    assert m.head_map().tolist() == [0, 0, 1, 1]
    with torch.no_grad():  # v and proj = identity: the output is A applied to the input, head by head
        for layer in (m.v, m.proj):
            layer.weight.copy_(torch.eye(8))
            layer.bias.zero_()
    x = torch.randn(3, 5, 8)
    attn = torch.rand(3, 2, 5, 5).softmax(-1)
    out = m(x, attn)
    # channels 0-3 (heads 0, 1) mix with source head 0, channels 4-7 with source head 1
    torch.testing.assert_close(out[..., :4], attn[:, 0] @ x[..., :4])
    torch.testing.assert_close(out[..., 4:], attn[:, 1] @ x[..., 4:])
    with pytest.raises(ValueError, match='does not fit'):
        m(x, torch.rand(3, 4, 5, 5))


def test_bad_input_and_arch_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r'\(B, T, 3, H, W\)'):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(TypeError, match='floating-point'):
        model(torch.zeros(1, 2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match='num_heads'):
        UniFormerDenoiser(dict(TINY, num_heads=[1, 2]))
    with pytest.raises(ValueError, match='not divisible'):
        UniFormerDenoiser(dict(TINY, num_heads=[3, 2, 4]))
    with pytest.raises(ValueError, match='default archs'):
        UniFormerDenoiser('xl')


@pytest.mark.parametrize('kwargs, err, match', [
    (dict(arch=dict(TINY, embed_dims='8')), TypeError, r"arch\['embed_dims'\] must be an int"),
    (dict(arch=dict(TINY, embed_dims=0)), ValueError, r"arch\['embed_dims'\] must be >= 1"),
    (dict(arch=dict(TINY, depths=4)), TypeError, r"arch\['depths'\] must be a list of ints"),
    (dict(arch=dict(TINY, depths='1121')), TypeError, r"arch\['depths'\] must be a list of ints"),
    (dict(arch=dict(TINY, depths=[1, 0, 2, 1])), ValueError, r"arch\['depths'\] entry must be >= 1"),
    (dict(arch=dict(TINY, num_heads=4)), TypeError, r"arch\['num_heads'\] must be a list of ints"),
    (dict(arch=dict(TINY, num_heads=[1, 0, 4])), ValueError, r"arch\['num_heads'\] entry must be >= 1"),
    (dict(arch=dict(TINY, num_heads=[3, 2, 4])), ValueError, 'not divisible by num_heads'),
    (dict(arch=dict(TINY, window=8)), ValueError, "unknown arch keys.*'window'"),
    (dict(arch=dict(TINY, mlp_ratio='2')), TypeError, r"arch\['mlp_ratio'\] must be a number"),
    (dict(conv_levels=-1), ValueError, 'conv_levels must be >= 0'),
    (dict(conv_levels=1.0), TypeError, 'conv_levels must be an int'),
    (dict(conv_levels=5), ValueError, 'conv_levels must be in 0..4'),
    (dict(conv_levels=0), ValueError, r"arch\['num_heads'\] needs one entry per attention level"),
    (dict(window_size=8), ValueError, r'window_size must be \(frames, height, width\)'),
    (dict(window_size=(7, 8)), ValueError, 'window_size must be'),
    (dict(window_size='788'), ValueError, 'window_size must be'),
    (dict(window_size=(0, 8, 8)), ValueError, 'window_size entry must be >= 1'),
    (dict(window_size=(7, 8.0, 8)), TypeError, 'window_size entry must be an int'),
    (dict(in_channels=0), ValueError, 'in_channels must be >= 1'),
    (dict(mlp_ratio=0), ValueError, 'mlp_ratio'),
    (dict(mlp_ratio='2'), TypeError, 'mlp_ratio must be a number'),
    (dict(mlp_ratio=0.01), ValueError, 'mlp_ratio.*hidden width'),
    (dict(drop_path_rate=1.5), ValueError, 'drop_path_rate'),
    (dict(drop_rate=-1.), ValueError, 'drop_rate'),
    (dict(norm_eps=0), ValueError, 'norm_eps'),
    (dict(skip_attention='no'), TypeError, 'skip_attention must be True or False'),
    (dict(num_frames=7), TypeError, 'num_frames'),  # a VideoDenoiser test_cfg key: Python names the keyword
])
def test_bad_arguments_are_named(kwargs, err, match):
    kwargs = {'arch': dict(TINY), **kwargs}
    with pytest.raises(err, match=match):
        UniFormerDenoiser(kwargs.pop('arch'), **kwargs)


def test_bad_inputs_are_named():
    model = tiny().eval()
    cases = [
        (np.zeros((1, 2, 3, 16, 16), np.float32), TypeError, r'torch.Tensor clip batch.*permute\(0, 1, 4, 2, 3\)'),
        (torch.zeros(2, 3, 16, 16), ValueError, r'clip batch \(B, T, 3, H, W\), got a 4-d tensor'),
        (torch.zeros(1, 1, 2, 3, 16, 16), ValueError, '6-d tensor'),
        (torch.zeros(1, 2, 4, 16, 16), ValueError, 'expected 3 input channels, got 4'),
        (torch.zeros(1, 2, 16, 16, 3), ValueError, 'channels last'),
        (torch.zeros(1, 0, 3, 16, 16), ValueError, 'empty clip'),
        (torch.zeros(1, 2, 3, 0, 0), ValueError, 'smaller than'),
        (torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8), TypeError, 'floating-point'),
        (torch.zeros(1, 2, 3, 16, 16, dtype=torch.int64), TypeError, 'floating-point'),
        (torch.zeros(1, 2, 3, 16, 16, dtype=torch.float16), TypeError, 'torch.autocast'),
        (torch.zeros(1, 2, 3, 16, 16, dtype=torch.bfloat16), TypeError, 'torch.autocast'),
    ]
    with torch.no_grad():
        for x, err, match in cases:
            with pytest.raises(err, match=match):
                model(x)
        # Any T >= 1, H, W (padded, cropped back) and an empty batch give the input's shape.
        for shape in ((0, 2, 3, 16, 16), (1, 1, 3, 1, 1), (1, 9, 3, 17, 33)):
            assert model(torch.rand(shape)).shape == shape


def test_wrappers_name_bad_arguments_and_inputs():
    """Denoiser / VideoDenoiser / RestorationDataPreprocessor: configs and calls that used to fail deep inside
    (or silently do the wrong thing) are refused by name."""
    from mmengine.structures import BaseDataElement

    from mmevit.models.denoisers.denoiser import Denoiser, RestorationDataPreprocessor
    gen = dict(type='UniFormerDenoiser', arch=dict(TINY))
    cases = [
        (lambda: Denoiser('Uformer'), TypeError, 'generator must be a config dict'),
        (lambda: Denoiser(None), TypeError, 'generator must be a config dict'),
        (lambda: Denoiser(gen, test_cfg=dict(tiles=64)), KeyError,
         "Denoiser test_cfg: unknown keys.*did you mean 'tile'"),
        (lambda: Denoiser(gen, test_cfg=[64]), TypeError, 'test_cfg must be a dict'),
        (lambda: Denoiser(gen, train_cfg=dict(clamp=True)), KeyError, 'train_cfg: unknown keys'),
        (lambda: Denoiser(gen, test_cfg=dict(tile=64.0)), ValueError, 'tile must be an int'),
        (lambda: VideoDenoiser(gen, test_cfg=dict(numframes=3)), KeyError,
         "VideoDenoiser test_cfg: unknown keys.*did you mean 'num_frames'"),
        (lambda: VideoDenoiser(gen, test_cfg=dict(num_frames=7.0)), TypeError, r"test_cfg\['num_frames'\]"),
        (lambda: VideoDenoiser(gen, test_cfg=dict(frame_stride=0)), ValueError, r"test_cfg\['frame_stride'\]"),
        (lambda: RestorationDataPreprocessor(scale='255'), TypeError, 'scale must be a number'),
        (lambda: RestorationDataPreprocessor(scale=0), ValueError, 'scale must be finite and > 0'),
        (lambda: RestorationDataPreprocessor(mixup=[1.2]), TypeError, 'mixup must be None or dict'),
        (lambda: RestorationDataPreprocessor(mixup=dict(alpha='x')), TypeError, r"mixup\['alpha'\]"),
        (lambda: RestorationDataPreprocessor(mixup=dict(start_iter=-1)), ValueError, r"mixup\['start_iter'\]"),
        (lambda: RestorationDataPreprocessor(mixup=dict(beta=1.)), ValueError, 'unknown keys'),
    ]
    for build, err, match in cases:
        with pytest.raises(err, match=match):
            build()

    pre = RestorationDataPreprocessor()
    u8 = torch.zeros(3, 8, 8, dtype=torch.uint8)
    for data, err, match in [
        ([u8], TypeError, "takes a dict with 'inputs'"),
        (dict(data_samples=[]), TypeError, "takes a dict with 'inputs'"),
        (dict(inputs=[]), ValueError, 'inputs must be a non-empty list'),
        (dict(inputs=[np.zeros((3, 8, 8), np.uint8)]), TypeError, 'inputs must be torch.Tensors'),
        (dict(inputs=[u8, torch.rand(3, 8, 8)]), TypeError, 'mixes integer and floating-point'),
        (dict(inputs=[u8, torch.zeros(3, 8, 9, dtype=torch.uint8)]), ValueError, 'images of different sizes'),
    ]:
        with pytest.raises(err, match=match):
            pre(data)

    model = VideoDenoiser(gen).eval()
    clip = torch.rand(2, 2, 3, 16, 16)
    with pytest.raises(TypeError, match='torch.Tensor clips'):
        model.restore(clip.numpy())
    with pytest.raises(ValueError, match=r'restores clips \(B, T, C, H, W\)'):
        model.restore(clip[0])
    with pytest.raises(ValueError, match="mode must be 'tensor', 'loss' or 'predict'"):
        model(clip, mode='predic')
    with pytest.raises(ValueError, match='needs data_samples holding gt_img'):
        model.loss(clip, None)
    with pytest.raises(ValueError, match='needs data_samples holding gt_img'):
        model.loss(clip, [BaseDataElement(), BaseDataElement()])
    with pytest.raises(TypeError, match='gt_img is torch.uint8'):  # not scaled by the preprocessor
        model.loss(clip, [BaseDataElement(gt_img=torch.zeros(2, 3, 16, 16, dtype=torch.uint8))] * 2)
    with pytest.raises(ValueError, match='1 data_samples for a batch of 2'):
        model.predict(clip, [BaseDataElement()])


# ---------------------------------------------------------------------------------------------- inference
def test_temporal_windows_cover_every_frame():
    assert temporal_windows(5, 7, 4) == [0]
    assert temporal_windows(7, 7, 4) == [0]
    assert temporal_windows(8, 7, 4) == [0, 1]
    assert temporal_windows(20, 7, 4) == [0, 4, 8, 12, 13]
    for T in range(1, 30):
        for stride in range(1, 8):
            covered = np.zeros(T, int)
            for s in temporal_windows(T, 7, stride):
                assert 0 <= s and s + min(7, T) <= T
                covered[s:s + 7] += 1
            assert covered.min() >= 1


def test_sliding_window_averages_the_overlaps():
    calls = []

    def fn(clip):  # output = input + (index of the call): each frame's value tells which windows covered it
        calls.append(clip.shape[1])
        return clip + len(calls) - 1

    x = torch.zeros(1, 11, 1, 2, 2)
    y = temporal_sliding_restore(fn, x, window=7, stride=4)
    # windows start at 0 and 4: frames 0-3 only in window 0, 4-6 in both, 7-10 only in window 1
    assert calls == [7, 7]
    assert torch.equal(y[0, :, 0, 0, 0], torch.tensor([0, 0, 0, 0, .5, .5, .5, 1, 1, 1, 1.]))
    calls.clear()
    y = temporal_sliding_restore(fn, torch.zeros(1, 12, 1, 2, 2), window=7, stride=4)
    # windows at 0, 4 and 5 (the last flush with the end)
    expected = torch.tensor([0, 0, 0, 0, .5, 1, 1, 1.5, 1.5, 1.5, 1.5, 2.])
    assert calls == [7, 7, 7] and torch.equal(y[0, :, 0, 0, 0], expected)
    with pytest.raises(ValueError, match='stride'):
        temporal_sliding_restore(fn, x, window=4, stride=5)


def test_video_denoiser_restores_long_sequences_with_windows_and_tiles():
    gen = tiny()
    model = VideoDenoiser(gen, test_cfg=dict(num_frames=3, frame_stride=2, tile=64, tile_overlap=16)).eval()
    x = torch.rand(1, 6, 3, 80, 72)
    with torch.no_grad():
        out = model.restore(x)
        # by hand: windows [0, 3) [2, 5) [3, 6), each in 64x64 tiles at (0|16, 0|8)
        ref = torch.zeros_like(x)
        count = torch.zeros(6)
        for s in (0, 2, 3):
            clip = x[:, s:s + 3]
            acc, w = torch.zeros_like(clip), torch.zeros(80, 72)
            for top in (0, 16):
                for left in (0, 8):
                    acc[..., top:top + 64, left:left + 64] += gen(clip[..., top:top + 64, left:left + 64])
                    w[top:top + 64, left:left + 64] += 1
            ref[:, s:s + 3] += acc / w
            count[s:s + 3] += 1
        torch.testing.assert_close(out, ref / count.view(1, 6, 1, 1, 1))
    with pytest.raises(ValueError, match='frame_stride'):
        VideoDenoiser(dict(type='UniFormerDenoiser', arch=dict(TINY)), test_cfg=dict(num_frames=3, frame_stride=4))


# ---------------------------------------------------------------------------------------------- data
def _write_sequence(root, name, frames):
    import cv2
    folder = root / name
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):
        cv2.imwrite(str(folder / f'{t:05d}.png'), f)


@pytest.fixture
def davis_root(tmp_path):
    """A DAVIS-layout folder: 2 train sequences whose frame t is filled with value 10 t (+ a gradient)."""
    frames_root = tmp_path / 'JPEGImages' / '480p'
    grad = (np.arange(40, dtype=np.uint8) // 5)[None, :, None]  # 0..7: frame t holds 10 t .. 10 t + 7
    for s, n in (('bear', 12), ('car', 9)):
        _write_sequence(frames_root, s, [np.broadcast_to(grad + 10 * t, (32, 40, 3)).copy() for t in range(n)])
    (tmp_path / 'ImageSets' / '2017').mkdir(parents=True)
    (tmp_path / 'ImageSets' / '2017' / 'train.txt').write_text('bear\ncar\n')
    (tmp_path / 'ImageSets' / '2017' / 'val.txt').write_text('car\n')
    return tmp_path


def test_dataset_lists_sequences_from_the_split_file_or_the_folder(davis_root):
    from mmevit.datasets.davis import VideoFramesDataset
    ds = VideoFramesDataset(str(davis_root), ann_file='ImageSets/2017/val.txt')
    assert len(ds) == 1 and ds[0]['sequence'] == 'car' and ds[0]['num_frames'] == 9
    assert ds[0]['frame_paths'][0].endswith(osp.join('car', '00000.png'))
    set8 = VideoFramesDataset(str(davis_root / 'JPEGImages' / '480p'), data_prefix=dict(img=''))  # Set8 layout
    assert [d['sequence'] for d in (set8[0], set8[1])] == ['bear', 'car']
    with pytest.raises(ValueError, match='fewer than min_frames'):
        VideoFramesDataset(str(davis_root), ann_file='ImageSets/2017/train.txt', min_frames=10)
    with pytest.raises(FileNotFoundError, match='not found'):
        VideoFramesDataset(str(davis_root / 'nowhere'))
    # test pipeline: the whole sequence (or its first max_frames), in order
    from mmevit.datasets.davis import LoadVideoFrames
    whole = LoadVideoFrames()(dict(ds[0]))['gt']
    assert whole.shape == (9, 32, 40, 3) and [int(f.min()) // 10 for f in whole] == list(range(9))
    assert LoadVideoFrames(max_frames=5)(dict(ds[0]))['gt'].shape[0] == 5
    with pytest.raises(ValueError, match='fewer than clip_len'):
        LoadVideoFrames(clip_len=10)(dict(ds[0]))


def test_training_clips_are_random_consecutive_frames_cropped_and_flipped_together(davis_root):
    from mmevit.datasets.davis import VideoFramesDataset
    pipeline = [dict(type='LoadVideoFrames', clip_len=7), dict(type='VideoRandomCrop', crop_size=16),
                dict(type='VideoRandomFlip'), dict(type='AddGaussianNoise', sigma=0.),
                dict(type='PackVideoInputs')]
    ds = VideoFramesDataset(str(davis_root), ann_file='ImageSets/2017/train.txt', min_frames=7, pipeline=pipeline)
    np.random.seed(0)
    starts, reversed_seen = set(), False
    for _ in range(60):
        out = ds[0]
        gt, x = out['data_samples'].gt_img, out['inputs']
        assert gt.shape == (7, 3, 16, 16) and gt.dtype == torch.uint8 and x.dtype == torch.float32
        assert torch.equal(x, gt.float())  # sigma 0: the same crop and flips on input and target
        t = [int(f.min()) // 10 for f in gt]  # frame indices: consecutive, forwards or backwards
        steps = {b - a for a, b in zip(t, t[1:])}
        assert steps in ({1}, {-1})
        reversed_seen |= steps == {-1}
        starts.add(min(t))
    assert starts == set(range(0, 12 - 7 + 1)) and reversed_seen


def test_seeded_noise_is_reproducible_and_per_sequence():
    from mmevit.datasets.davis import AddGaussianNoise
    gt = np.full((3, 16, 16, 3), 128, np.uint8)
    noise = AddGaussianNoise(sigma=30, seed=0)
    a = noise(dict(gt=gt, sequence='bear'))['img']
    np.random.seed(123)
    b = noise(dict(gt=gt, sequence='bear'))['img']
    c = noise(dict(gt=gt, sequence='car'))['img']
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and abs((a - 128).std() - 30) < 1.5 and abs((a - 128).mean()) < 2
    assert not np.array_equal(AddGaussianNoise(30, seed=1)(dict(gt=gt, sequence='bear'))['img'], a)
    fresh = AddGaussianNoise(sigma=30)
    np.random.seed(0)
    d = fresh(dict(gt=gt, sequence='bear'))['img']
    e = fresh(dict(gt=gt, sequence='bear'))['img']
    assert not np.array_equal(d, e)


def test_clip_metrics_are_per_sequence_frame_means():
    from mmevit.evaluation import PSNR, SSIM, psnr, ssim
    torch.manual_seed(0)
    gt = torch.randint(0, 256, (3, 3, 16, 16)).float()
    preds = [gt + torch.randn_like(gt) * s for s in (5., 10.)]
    for metric, fn in ((PSNR(), psnr), (SSIM(), ssim)):
        metric.process(None, [dict(pred_img=p, gt_img=gt, sequence=f's{i}') for i, p in enumerate(preds)])
        per_seq = [np.mean([fn(f, g, input_order='CHW') for f, g in zip(p, gt)]) for p in preds]
        assert [r[0] for r in metric.results] == ['s0', 's1']
        assert metric.compute_metrics(metric.results)[metric.name] == pytest.approx(np.mean(per_seq), abs=1e-12)


def test_demo_maker_writes_moving_textured_sequences(tmp_path):
    import cv2

    from mmevit.datasets import make_demo_data
    from mmevit.datasets.davis import VideoFramesDataset
    from mmevit.evaluation import psnr
    make_demo_data('davis', str(tmp_path / 'd'), num_train=2, num_val=1, seed=0)
    train = VideoFramesDataset(str(tmp_path / 'd'), ann_file='ImageSets/2017/train.txt')
    val = VideoFramesDataset(str(tmp_path / 'd'), ann_file='ImageSets/2017/val.txt')
    assert len(train) == 2 and len(val) == 1 and train[0]['num_frames'] == 16 and val[0]['num_frames'] == 10
    frames = [cv2.imread(p) for p in train[0]['frame_paths']]
    assert frames[0].shape == (96, 128, 3)
    assert np.std(frames[0]) > 20  # texture
    # motion: consecutive frames differ, but much less than unrelated frames of other sequences
    step = psnr(frames[0], frames[1])
    other = psnr(frames[0], cv2.imread(train[1]['frame_paths'][0]))
    assert np.inf > step > other + 3


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.e2e
def test_demo_config_trains_tests_and_denoises_videos(tmp_path):
    """The DAVIS demo config through tools/train.py, tools/test.py and tools/denoise.py (frames and a video file)."""
    import cv2

    from mmevit.datasets import make_demo_data
    data = tmp_path / 'demo_davis'
    make_demo_data('davis', str(data), num_train=2, num_val=1)
    config = osp.join(REPO, 'configs', 'demo', 'skipat_uniformer_davis_demo.py')
    work = tmp_path / 'work'
    options = restoration_demo_options(str(data), 1, 2)
    load_tool('train').main([config, '--work-dir', str(work), *options])
    ckpt = str(work / 'iter_2.pth')
    metrics = load_tool('test').main([config, ckpt, '--work-dir', str(tmp_path / 'test'), *options])
    assert set(metrics) == {'PSNR', 'SSIM', 'noisy/PSNR', 'noisy/SSIM'}
    assert 15 < metrics['noisy/PSNR'] < 21  # sigma 30 on 8-bit frames: about 18.7 dB
    frames = data / 'JPEGImages' / '480p' / 'val_chelsea_000'
    denoise = load_tool('denoise').main
    out = tmp_path / 'frames_out'
    res = denoise([config, ckpt, str(frames), '--add-noise', '30', '--out-dir', str(out)])[str(frames)]
    assert res['frames'] == 10 and len(list(out.glob('0000*.png'))) == 10
    # --add-noise draws its own noise (not the dataset's per-sequence stream) at the same level
    assert res['psnr_in'] == pytest.approx(metrics['noisy/PSNR'], abs=0.5)
    strip = cv2.imread(res['compare'])
    assert strip.shape == (3 * 96, 4 * 128, 3)  # noisy / denoised / clean rows, 4 frames
    # a video file
    video = str(tmp_path / 'clip.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 10, (128, 96))
    for f in sorted(frames.iterdir()):
        writer.write(cv2.imread(str(f)))
    writer.release()
    out = tmp_path / 'video_out'
    res = denoise([config, ckpt, video, '--out-dir', str(out), '--strip-frames', '2'])[video]
    assert res['frames'] == 10 and (out / 'clip_00009.png').is_file() and 'psnr_in' not in res
    assert cv2.imread(res['compare']).shape == (2 * 96, 2 * 128, 3)


@pytest.mark.parametrize('skip_attention', [False, True])
def test_torch_compile_traces_the_plain_ops(skip_attention):
    """Under torch.compile the network takes the aten convolution (not the direct oneDNN call of CPU inference),
    so dynamo can trace it; the compiled model matches eager."""
    import torch._dynamo
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny(skip_attention=skip_attention).eval()
    x = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        out = torch.compile(model, backend='eager', fullgraph=False)(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
