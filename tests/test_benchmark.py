"""tools/analysis/benchmark.py and make_benchmark_docs.py: build presets/specs/configs, time interleaved, per-pair
ratios, AMP / channels-last, peak memory, JSON output (no timing targets here: speed is reported by the tools, not
asserted in unit tests)."""
import importlib.util
import json
import os.path as osp
import platform
import sys

import pytest
import torch

from mmevit.analysis import build_model, compare, count_gmacs, make_inputs, pair_ratios, peak_memory
from mmevit.analysis.benchmark import PRESETS, _parse_kwargs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import benchmark as cli  # noqa: E402

TINY_ARCH = "arch={'embed_dims':32,'num_layers':4,'num_heads':2,'feedforward_channels':64}"
TINY = 'SkipAtViT:skip_indices=(),' + TINY_ARCH
TINY_SKIP = 'SkipAtViT:skip_indices=(2,3),' + TINY_ARCH


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_kwargs_literals_and_nesting():
    kw = _parse_kwargs('arch=s,skip_indices=(1,2),img_size=512,out_type=raw,' + TINY_ARCH)
    assert kw['skip_indices'] == (1, 2) and kw['img_size'] == 512 and kw['out_type'] == 'raw'
    assert kw['arch'] == dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
    model = build_model('SkipAtViT:skip_indices=(1,2),' + TINY_ARCH)
    assert model.embed_dims == 32 and model.skip_indices == (1, 2) and not model.training
    with pytest.raises(ValueError, match='key=value'):
        _parse_kwargs('arch=s,oops')


def test_presets_cover_every_family_and_the_toolboxes():
    assert build_model('vit-t').skip_indices == ()
    assert build_model('skipat-t').skip_indices == (3, 4, 5, 6, 7, 8)
    eager = build_model('skipat-t+eager')
    assert not any(getattr(m, 'fused_attn', False) for m in eager.modules())
    assert set(PRESETS) >= {'skipat-t', 'skipat-s', 'skipat-b', 'vit-t', 'vit-s', 'vit-b', 'evo-vit-s',
                            'evo-levit-256', 'lit-ti', 'lit-s', 'uformer-t', 'skipat-uformer-t',
                            'skipat-uformer-t-feature', 'mmseg-vit-s', 'mmpretrain-deit-s', 'mmpretrain-levit-256',
                            'mmseg-swin-t', 'mmdet-pvt-s'}
    assert build_model('skipat-uformer-t').skipat == 'attention'
    assert build_model('skipat-uformer-t-feature').skipat == 'feature'
    assert type(build_model('mmseg-vit-s')).__module__.startswith('mmseg.')
    assert type(build_model('mmpretrain-levit-128s')).__module__.startswith('mmpretrain.')
    with pytest.raises(KeyError, match='unknown preset'):
        build_model('skipat-xl')


def test_skipping_attention_saves_the_counted_flops():
    """FLOPs are counted with SDPA on the math kernel (the fused CPU kernel counts as zero): the published
    GMACs of ViT-T vs SkipAt-T at 224 are 1.254 vs 1.175."""
    x = torch.randn(1, 3, 224, 224)
    assert count_gmacs(build_model('vit-t'), x) == pytest.approx(1.254, abs=0.01)
    assert count_gmacs(build_model('skipat-t'), x) == pytest.approx(1.175, abs=0.01)


def test_pair_ratios_median_quartiles_and_errors():
    a = [2.0, 4.0, 3.0, 6.0, 1.0]
    b = [1.0, 1.0, 3.0, 2.0, 1.0]  # ratios 2, 4, 1, 3, 1
    s = pair_ratios(a, b)
    assert s['median'] == 2 and s['min'] == 1 and s['max'] == 4 and s['pairs'] == 5
    assert s['q1'] == 1 and s['q3'] == 3 and s['ratio_of_medians'] == pytest.approx(3 / 1)
    with pytest.raises(ValueError, match='equal'):
        pair_ratios([1.0], [1.0, 2.0])


def test_compare_interleaves_and_reports_progress():
    models = {'a': build_model(TINY), 'b': build_model(TINY_SKIP)}
    x = torch.randn(2, 3, 32, 32)
    seen = []
    res = compare(models, x, repeats=3, warmup=1, progress=seen.append)
    assert [len(r.times) for r in res.values()] == [3, 3] and all(t > 0 for t in res['a'].times)
    assert len(seen) == 2 + 3 and seen[-1].startswith('repeat 3/3')
    with pytest.raises(ValueError, match='amp'):
        compare(models, x, repeats=1, amp='fp8')


def test_amp_bf16_and_channels_last_run():
    res = cli.main([TINY, '--size', '32', '--repeats', '2', '--warmup', '1', '--amp', 'bf16', '--channels-last',
                    '--quiet'])
    r = res['models'][TINY]
    assert r['amp'] == 'bf16' and r['channels_last'] and len(r['times']) == 2
    assert res['settings']['amp'] == 'bf16'


def test_config_backbone_only_and_whole_models():
    model = build_model(osp.join('configs', 'ade20k', 'skipat_t_upernet.py'), backbone_only=True)
    assert type(model).__name__ == 'SkipAtViT' and model.embed_dims == 192
    with pytest.raises(FileNotFoundError):
        build_model('configs/ade20k/nope.py')
    # a whole detector gets the image metas its forward needs
    det = build_model(osp.join('configs', 'coco', 'lit_ti_retinanet_1x.py'))
    x, samples = make_inputs(det, 1, (64, 96))
    assert x.shape == (1, 3, 64, 96) and samples[0].metainfo['img_shape'] == (64, 96)


@pytest.mark.e2e
def test_compare_cli_reports_per_pair_ratio_json_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    res = cli.main(['--compare', 'vit-t', 'skipat-t', '--size', '64', '96', '--warmup', '1', '--flops',
                    '--json', str(out)])
    text = capsys.readouterr().out
    assert 'speed-up of skipat-t over vit-t' in text and 'median of 15 per-pair ratios' in text
    assert 'FLOP-limited speed-up' in text
    s = res['speedup']
    assert s['pairs'] == 15 and s['min'] <= s['q1'] <= s['median'] <= s['q3'] <= s['max'] and res['flop_ratio'] > 1
    assert len(res['models']['vit-t']['times']) == 15 and tuple(res['models']['vit-t']['size']) == (64, 96)
    data = json.loads(out.read_text())
    assert set(data) == {'models', 'settings', 'speedup', 'flop_ratio'}
    assert data['models']['skipat-t']['threads'] == torch.get_num_threads()
    assert data['models']['skipat-t']['params'] == sum(p.numel() for p in build_model('skipat-t').parameters())
    assert data['settings']['repeats'] == 15 and data['settings']['torch'] == torch.__version__
    with pytest.raises(SystemExit):
        cli.main(['skipat-t', '--size', '32', '--repeats', '1', '--json', str(out)])


@pytest.mark.e2e
def test_peak_memory_holds_the_largest_activation():
    """CPU: VmHWM growth of a fresh process's first forward. ViT-T at batch 16, 224x224 must hold at least one
    MLP hidden activation (16 x 197 x 768 float32 = 9.7 MB) at once; the whole forward stays far below 2 GB."""
    peak, method = peak_memory('vit-t', 16, (224, 224), threads=1)
    assert 'VmHWM' in method and 16 * 197 * 768 * 4 / 2 ** 20 <= peak < 2000


def test_compare_needs_seven_repeats_and_one_model():
    with pytest.raises(SystemExit):
        cli.parse_args(['--compare', 'vit-t', 'skipat-t', '--repeats', '3'])
    with pytest.raises(SystemExit):
        cli.parse_args(['vit-t', '--compare', 'vit-t', 'skipat-t'])
    assert cli.parse_args(['--compare', 'vit-t', 'skipat-t']).repeats == 15
    assert cli.parse_args(['vit-t']).repeats == 7


_FAULTS_OF_TEN_USES = """
import resource, sys, torch
from mmevit.analysis import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == 'keep' else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(10 * 2 ** 20)  # 40 MB, touched, freed
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_of_ten_uses(mode):
    """Page faults of ten 40 MB tensors in a fresh process (the heap layout of a long pytest run would decide
    which freed blocks get reused)."""
    import subprocess
    out = subprocess.run([sys.executable, '-c', _FAULTS_OF_TEN_USES, mode], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    return out[0], int(out[1])


def test_keep_freed_memory_stops_mapping_large_blocks():
    """glibc's defaults map every 40 MB block with mmap and unmap it on free (above its 32 MB dynamic-threshold
    cap), so each use faults all 10240 of its 4 KB pages in again; after keep_freed_memory the blocks come from
    the heap and are reused, so only the first touches of the (at most a few) heap slots fault."""
    if platform.libc_ver()[0] != 'glibc':
        from mmevit.analysis import keep_freed_memory
        assert keep_freed_memory() is False
        return
    applied, kept = _faults_of_ten_uses('keep')
    _, default = _faults_of_ten_uses('default')
    assert applied == 'True'
    assert default > 9 * 10240
    assert kept < 4 * 10240


@pytest.mark.e2e
def test_benchmark_doc_generator_writes_its_own_file_only(tmp_path):
    docs = _load('tools/analysis/make_benchmark_docs.py', 'make_benchmark_docs')
    out = tmp_path / 'benchmarks.md'
    out.write_text('hand-written\n')
    with pytest.raises(SystemExit):
        docs.main(['--out', str(out), '--only', 'skipat-t', '--repeats', '7', '--no-memory', '--no-compile', '--no-official'])
    assert out.read_text() == 'hand-written\n'
    out.unlink()
    text = docs.main(['--out', str(out), '--only', 'skipat-t', '--repeats', '7', '--no-memory', '--no-compile', '--no-official'])
    assert out.read_text() == text and text.startswith(docs.MARKER)
    row = next(ln for ln in text.splitlines() if ln.startswith('| vit-t -> skipat-t'))
    assert '1.25 / 1.17' in row and '1.07x' in row and 'median of 7 per-pair ratios' in text
    assert 'No GPU was lent' in text and 'shared 2-core machine' in text and 'model name' not in text
    glibc = platform.libc_ver()[0] == 'glibc'
    assert ('mmap/trim thresholds at 1 GiB' in text) == glibc
    # its own file is regenerated without --force
    docs.main(['--out', str(out), '--only', 'skipat-t', '--repeats', '7', '--no-memory', '--no-compile', '--no-official'])


def test_benchmark_doc_official_section():
    """The official comparison: identical outputs checked (also for the compiled model), per-pair ratios of ours
    and of ours under --compile, target verdict in the table."""
    import argparse
    docs = _load('tools/analysis/make_benchmark_docs.py', 'make_benchmark_docs')
    args = argparse.Namespace(repeats=7, warmup=1, threads=1, memory=False, verbose=False, compile=True)
    row = docs.run_official('skipat-t', 64, 1, 1.2, args, lambda s: None)
    assert row['diff'] <= 1e-4 and set(row['ratio']) == {'ours', 'compiled'}
    assert all(r['pairs'] == 7 and r['median'] > 0 for r in row['ratio'].values())
    text = docs.render([], [], args, [row])
    line = next(ln for ln in text.splitlines() if ln.startswith('| skipat-t | 64², 1 |'))
    assert '>= 1.2x (' in line and f'{row["diff"]:.1e}' in line and line.count('**') == 4  # two ratio cells
    args.compile = False
    row = docs.run_official('skipat-t', 64, 1, 1.2, args, lambda s: None)
    assert set(row['ratio']) == {'ours'} and '| - |' in docs.render([], [], args, [row])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_fp16_benchmark_and_allocator_peak():
    """Not run in this session (no GPU was lent): the CUDA allocator peak and fp16 autocast timing."""
    peak, method = peak_memory('vit-t', 16, (224, 224), device='cuda')
    assert 'cuda' in method and 16 * 197 * 768 * 2 / 2 ** 20 <= peak < 4000
    res = cli.main(['--compare', 'vit-t', 'skipat-t', '--device', 'cuda', '--amp', 'fp16', '--batch', '32',
                    '--quiet'])
    assert res['speedup']['pairs'] == 15 and res['models']['vit-t']['device'].startswith('cuda')
