"""tools/analysis/benchmark.py: builds presets/specs/configs, times interleaved, counts FLOPs (no timing targets
here: speed is reported by the tool, not asserted in unit tests)."""
import json
import os.path as osp
import sys

import pytest
import torch

from mmevit.analysis import build_model, count_gmacs
from mmevit.analysis.benchmark import PRESETS, _parse_kwargs

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'analysis'))
import benchmark as cli  # noqa: E402

TINY_ARCH = "arch={'embed_dims':32,'num_layers':4,'num_heads':2,'feedforward_channels':64}"


def test_parse_kwargs_literals_and_nesting():
    kw = _parse_kwargs('arch=s,skip_indices=(1,2),img_size=512,out_type=raw,' + TINY_ARCH)
    assert kw['skip_indices'] == (1, 2) and kw['img_size'] == 512 and kw['out_type'] == 'raw'
    assert kw['arch'] == dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
    model = build_model('SkipAtViT:skip_indices=(1,2),' + TINY_ARCH)
    assert model.embed_dims == 32 and model.skip_indices == (1, 2) and not model.training


def test_presets_are_skipat_and_vit():
    assert build_model('vit-t').skip_indices == ()
    assert build_model('skipat-t').skip_indices == (3, 4, 5, 6, 7, 8)
    eager = build_model('skipat-t+eager')
    assert not any(getattr(m, 'fused_attn', False) for m in eager.modules())
    assert set(PRESETS) >= {'skipat-t', 'skipat-s', 'skipat-b', 'vit-t', 'vit-s', 'vit-b'}


def test_skipping_attention_saves_the_counted_flops():
    """FLOPs are counted with SDPA on the math kernel (the fused CPU kernel counts as zero): the published
    GMACs of ViT-T vs SkipAt-T at 224 are 1.254 vs 1.175."""
    x = torch.randn(1, 3, 224, 224)
    assert count_gmacs(build_model('vit-t'), x) == pytest.approx(1.254, abs=0.01)
    assert count_gmacs(build_model('skipat-t'), x) == pytest.approx(1.175, abs=0.01)


def test_compare_cli_reports_ratio_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    res = cli.main(['--compare', 'vit-t', 'skipat-t', '--size', '64', '96', '--repeats', '7', '--warmup', '1',
                    '--flops', '--json', str(out)])
    text = capsys.readouterr().out
    assert 'speed-up of skipat-t over vit-t' in text and 'FLOP-limited speed-up' in text
    assert res['speedup'] > 0 and res['flop_ratio'] > 1
    assert len(res['vit-t']['times']) == 7 and tuple(res['vit-t']['size']) == (64, 96)
    assert json.loads(out.read_text())['skipat-t']['threads'] == torch.get_num_threads()
    with pytest.raises(FileExistsError):
        cli.main(['skipat-t', '--size', '32', '--repeats', '1', '--json', str(out)])


def test_config_backbone_only(tmp_path):
    model = build_model(osp.join('configs', 'ade20k', 'skipat_t_upernet.py'), backbone_only=True)
    assert type(model).__name__ == 'SkipAtViT' and model.embed_dims == 192


def test_compare_needs_seven_repeats():
    with pytest.raises(SystemExit):
        cli.parse_args(['--compare', 'vit-t', 'skipat-t', '--repeats', '3'])
