"""mmevit.analysis.flops and tools/analysis/get_flops.py: params and MACs with attention included, checked against
the published numbers (DeiT-S 4.60, SkipAt-S 4.44, Evo-ViT-S ~3.03, LIT-Ti 3.6, LeViT-256 1.12 GMACs at 224;
Uformer-T 12.00 by the official flops() at 256), and the model-zoo doc generator."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch
from torch import nn

from mmevit.analysis import PAPER_SIZES, PRESETS, build_model, count_flops, flops_of

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import get_flops as cli  # noqa: E402

TINY = "SkipAtViT:skip_indices=(),arch={'embed_dims':32,'num_layers':2,'num_heads':2,'feedforward_channels':64}"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_attention_is_counted_analytically_exact():
    """Tiny ViT, 32x32 (4 patches + cls = 5 tokens): every MAC accounted for by hand."""
    fc = flops_of(TINY, 32)
    n, d, h, L = 5, 32, 64, 2
    patch = 4 * 3 * 16 * 16 * d
    per_block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * h  # qkv, QK^T + AV, proj, MLP
    assert fc.macs == patch + L * per_block
    assert fc.by_op['bmm'] == L * 2 * n * n * d  # SDPA's math kernel: QK^T and AV as bmm
    assert fc.params == sum(p.numel() for p in build_model(TINY).parameters())
    assert fc.norm_macs == (2 * L + 1) * n * d  # norm1, norm2 per block + final norm


def test_sdpa_under_math_kernel_is_not_zero():
    """The fused CPU SDPA kernel counts as zero in torch's counter; counted here it equals the eager path."""
    fused, eager = build_model(TINY), build_model(TINY + '+eager')
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert count_flops(fused, x).macs == count_flops(eager, x).macs


def test_shape_input_and_errors():
    fc = count_flops(build_model(TINY), (2, 3, 32, 48))
    assert fc.input_shape == (2, 3, 32, 48) and fc.macs == flops_of(TINY, (32, 48)).macs  # per image
    with pytest.raises(ValueError, match='shape'):
        count_flops(nn.Linear(2, 2), (3, 32))


@pytest.mark.parametrize('spec,size,gmacs', [
    ('vit-s', 224, 4.60),              # DeiT-S
    ('skipat-s', 224, 4.44),
    ('evo-vit-s', 224, 3.03),
    ('lit-ti', 224, 3.6),
    ('mmpretrain-levit-256', 224, 1.12),
])
def test_known_numbers(spec, size, gmacs):
    assert flops_of(spec, size).gmacs == pytest.approx(gmacs, rel=0.02)


@pytest.mark.e2e
@pytest.mark.parametrize('spec,gmacs', [('vit-s', 31.75), ('skipat-s', 27.02)])
def test_known_numbers_at_512(spec, gmacs):
    """The ADE20K crop: the n^2 d attention term dominates (FLOP-limited SkipAt-S speed-up 1.18x)."""
    assert flops_of(spec, 512).gmacs == pytest.approx(gmacs, rel=0.02)


@pytest.mark.e2e
def test_uformer_official_convention_and_counted():
    t = flops_of('uformer-t', 256)
    assert t.own_macs / 1e9 == pytest.approx(12.00, rel=0.02)
    # counted MACs are lower: the official flops() counts LayerNorms and the 2x2/2 transposed convs 4x
    assert 0.9 < t.macs / t.own_macs < 1.0
    skip = flops_of('skipat-uformer-t', 256)
    assert skip.own_macs / 1e9 == pytest.approx(10.42, rel=0.02) and skip.macs < t.macs


def test_video_denoiser_counts_per_clip():
    """7-frame 128x128 clips; the counted MACs equal the model's analytic flops() and attention reuse saves
    about the paper's 17 %."""
    base, skip = flops_of('uniformer-video-t', 128), flops_of('skipat-uniformer-video-t', 128)
    assert base.input_shape == (1, 7, 3, 128, 128)
    assert base.macs == pytest.approx(base.own_macs, rel=1e-3) and skip.macs == pytest.approx(skip.own_macs, rel=1e-3)
    assert 0.12 < 1 - skip.macs / base.macs < 0.22


def test_paper_sizes_cover_every_registered_family():
    families = {PRESETS[name]['type'] for name, _ in PAPER_SIZES}
    assert families == {'SkipAtViT', 'EvoViT', 'EvoLeViT', 'LIT', 'Uformer', 'UniFormerDenoiser'}
    assert ('skipat-s', 512) in PAPER_SIZES and ('uformer-b', 256) in PAPER_SIZES


def test_cli_json_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / 'f.json'
    rows = cli.main([TINY, 'skipat-t', '--size', '64', '--json', str(out)])
    text = capsys.readouterr().out
    assert 'GMACs' in text and 'attention' in text
    data = json.loads(out.read_text())
    assert [r['name'] for r in data] == [TINY, 'skipat-t'] and data == json.loads(json.dumps(rows))
    assert set(data[0]) >= {'params', 'macs', 'gmacs', 'norm_macs', 'own_macs', 'input_shape', 'by_op'}
    assert data[1]['input_shape'] == [1, 3, 64, 64]
    with pytest.raises(SystemExit):
        cli.main([TINY, '--json', str(out)])
    with pytest.raises(SystemExit):
        cli.main([])


@pytest.mark.e2e
def test_whole_segmentor_and_detector_from_config():
    seg = flops_of(osp.join(ROOT, 'configs', 'ade20k', 'skipat_t_upernet.py'), 128)
    bb = flops_of(osp.join(ROOT, 'configs', 'ade20k', 'skipat_t_upernet.py'), 128, backbone_only=True)
    assert seg.macs > bb.macs > 0 and seg.params > bb.params
    det = flops_of(osp.join(ROOT, 'configs', 'coco', 'lit_ti_retinanet_1x.py'), (128, 160))
    assert det.macs > flops_of('lit-ti', (128, 160)).macs * 0.5 and det.params > 20e6
    den = flops_of(osp.join(ROOT, 'configs', 'sidd', 'uformer_t.py'), 128)
    assert den.own_macs is not None and den.params == flops_of('uformer-t', 128).params


def test_model_zoo_doc_lists_every_metafile_model(tmp_path):
    import yaml
    zoo = _load('tools/misc/make_model_zoo_doc.py', 'make_model_zoo_doc')
    out = tmp_path / 'model_zoo.md'
    out.write_text('mine\n')
    with pytest.raises(SystemExit):
        zoo.main(['--out', str(out)])
    text = zoo.main(['--out', str(out), '--force'])
    assert out.read_text() == text and text.startswith(zoo.MARKER)
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    names = [m['Name'] for p in metafiles for m in yaml.safe_load(open(osp.join(ROOT, p)))['Models']]
    assert names and all(f'| {n} |' in text for n in names)
    assert f'{len(names)} models' in text
    assert '| skipat_s_3rdparty_in1k | [skipat_s.py](../configs/imagenet/skipat_s.py) | 22.16 | 4.44 |' in text
    zoo.main(['--out', str(out)])  # its own file: no --force needed
