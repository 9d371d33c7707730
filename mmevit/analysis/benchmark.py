"""Inference timing and peak memory of registered models and configs.

Models are named by a preset (``skipat-s``, ``vit-t``, ``uformer-t``, ``mmseg-vit-s``...), a registered type
with kwargs (``SkipAtViT:arch=s,skip_indices=()``) or a config file (the whole model, or ``backbone_only``).
``compare`` times models interleaved in one process (warm-up, then alternating A B / B A repeats), so that
machine noise hits both alike; ``pair_ratios`` summarises the per-pair time ratios (median, quartiles,
min/max), which is robust on a loaded machine.

Peak memory: on CUDA the allocator's peak over the forward (``max_memory_allocated`` minus the memory held before
it); on CPU the growth of the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
over its resident set before the first forward, in a fresh subprocess per model so that neither the allocator's
cached pages nor another model's run hide the forward's working set.
"""
import ast
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..engine.inference_compile import compile_for_inference, is_compiled

# Presets: mmevit families and their baselines; ``_scope_`` marks the toolboxes' own models (what users have
# today) at the same widths, for side-by-side comparisons.
PRESETS: Dict[str, dict] = {}
for _a, _deit in (('t', 'deit-tiny'), ('s', 'deit-small'), ('b', 'deit-base')):
    PRESETS[f'skipat-{_a}'] = dict(type='SkipAtViT', arch=_a)
    PRESETS[f'vit-{_a}'] = dict(type='SkipAtViT', arch=_a, skip_indices=())
    PRESETS[f'evo-vit-{_a}'] = dict(type='EvoViT', arch=_a, out_type='avg_featmap')
    PRESETS[f'mmpretrain-deit-{_a}'] = dict(_scope_='mmpretrain', type='VisionTransformer', arch=_deit,
                                            out_type='cls_token')
for _a in ('128s', '128', '192', '256', '384'):
    PRESETS[f'evo-levit-{_a}'] = dict(type='EvoLeViT', arch=_a, out_type='avg_featmap', out_indices=2)
    PRESETS[f'mmpretrain-levit-{_a}'] = dict(_scope_='mmpretrain', type='LeViT', arch=_a, out_indices=(2,))

# LIT classifiers' backbones (final norm; cls token for Ti, token average for S/M/B).
for _a in ('ti', 's', 'm', 'b'):
    PRESETS[f'lit-{_a}'] = dict(type='LIT', arch=_a, out_indices=3, final_norm=True,
                                **(dict(out_type='cls_token', with_cls_token=True) if _a == 'ti'
                                   else dict(out_type='avg_featmap')))

# Uformer at the SIDD test size (windows/shifts fixed for 256x256, as the paper's FLOPs): baseline, SkipAt
# 'attention' (the paper's FLOPs) and 'feature' modes.
for _a in ('t', 's', 'b'):
    PRESETS[f'uformer-{_a}'] = dict(type='Uformer', arch=_a, img_size=256)
    PRESETS[f'skipat-uformer-{_a}'] = dict(type='Uformer', arch=_a, img_size=256, skipat='attention')
    PRESETS[f'skipat-uformer-{_a}-feature'] = dict(type='Uformer', arch=_a, img_size=256, skipat='feature')

# The SkipAt video denoiser (UniFormer-style, DAVIS): baseline and decoder attention reuse; 7-frame clips.
for _a in ('t', 's'):
    PRESETS[f'uniformer-video-{_a}'] = dict(type='UniFormerDenoiser', arch=_a)
    PRESETS[f'skipat-uniformer-video-{_a}'] = dict(type='UniFormerDenoiser', arch=_a, skip_attention=True)

# The toolboxes' own dense-prediction backbones: mmseg's VisionTransformer at DeiT widths (ADE20K 512 crops),
# mmseg's Swin-T, mmdet's PVT-S (similar FLOPs to LIT-S / Swin-T).
for _a, (_d, _h) in dict(t=(192, 3), s=(384, 6), b=(768, 12)).items():
    PRESETS[f'mmseg-vit-{_a}'] = dict(_scope_='mmseg', type='VisionTransformer', img_size=512, embed_dims=_d,
                                      num_layers=12, num_heads=_h, out_indices=(2, 5, 8, 11), final_norm=True)
PRESETS['mmseg-swin-t'] = dict(_scope_='mmseg', type='SwinTransformer')
PRESETS['mmdet-pvt-s'] = dict(_scope_='mmdet', type='PyramidVisionTransformer', num_layers=[3, 4, 6, 3])

AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


@dataclass
class BenchResult:
    name: str
    times: List[float] = field(default_factory=list)
    threads: int = 0
    batch: int = 0
    size: Tuple[int, int] = (0, 0)
    device: str = 'cpu'
    amp: Optional[str] = None
    channels_last: bool = False
    compiled: bool = False
    gmacs: Optional[float] = None
    params: Optional[int] = None
    peak_mem_mb: Optional[float] = None
    mem_method: Optional[str] = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def summary(self) -> str:
        s = (f'{self.name}: median {self.median * 1e3:.1f} ms  min {min(self.times) * 1e3:.1f}  '
             f'max {max(self.times) * 1e3:.1f}  ({len(self.times)} runs, batch {self.batch}, '
             f'{self.size[0]}x{self.size[1]}, {self.device}, {self.threads} threads'
             f'{", amp " + self.amp if self.amp else ""}{", channels-last" if self.channels_last else ""}'
             f'{", compiled" if self.compiled else ""})')
        if self.gmacs is not None:
            s += f'  {self.gmacs:.2f} GMACs/img'
        if self.peak_mem_mb is not None:
            s += f'  peak +{self.peak_mem_mb:.0f} MB ({self.mem_method})'
        return s

    def to_dict(self) -> dict:
        return dict(asdict(self), median=self.median)


def _parse_kwargs(text: str) -> dict:
    """``arch=s,skip_indices=(),img_size=512`` -> dict (values as Python literals, else strings)."""
    out, depth, cur = {}, 0, ''
    parts = []
    for ch in text:
        depth += ch in '([{' and 1 or (ch in ')]}' and -1 or 0)
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    if cur:
        parts.append(cur)
    for p in parts:
        if '=' not in p:
            raise ValueError(f'expected key=value in {text!r}, got {p!r}')
        k, v = p.split('=', 1)
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def _registry(scope: str):
    import importlib
    importlib.import_module(f'{scope}.models')  # registers the toolbox's modules
    return importlib.import_module(f'{scope}.registry').MODELS


def _build(scope: str, cfg) -> nn.Module:
    """Build in ``scope`` without leaving it as the global default scope (a config built before must not
    redirect the next model's sub-module lookups to its toolbox)."""
    from mmengine.registry import DefaultScope
    registry = _registry(scope)
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)


def build_model(spec: str, backbone_only: bool = False, eager_attention: bool = False) -> nn.Module:
    """Build a model in eval mode from a preset, ``Type:kw=v,...`` or a config file path.

    A ``+eager`` suffix (``skipat-s+eager``) selects the eager attention reference path for that model (and
    plain, unfused linears where a model has ``fused_linear`` flags).
    """
    import mmevit  # noqa: F401
    if spec.endswith('+eager'):
        spec, eager_attention = spec[:-len('+eager')], True
    if spec.endswith('.py'):
        from mmengine.config import Config
        if not os.path.isfile(spec):
            raise FileNotFoundError(f'config {spec} does not exist')
        cfg = Config.fromfile(spec)
        scope = cfg.get('default_scope', 'mmevit')
        if backbone_only and 'backbone' not in cfg.model:
            raise ValueError(f'{spec}: the model has no backbone (backbone_only)')
        model_cfg = cfg.model.backbone if backbone_only else cfg.model
        for sub in (model_cfg, model_cfg.get('backbone', {}), model_cfg.get('generator', {})):
            if 'init_cfg' in sub:
                sub['init_cfg'] = None  # benchmark random weights; no download
            if 'pretrained' in sub:
                sub['pretrained'] = None
        model = _build(scope, model_cfg)
    else:
        name, _, kw = spec.partition(':')
        if name not in PRESETS and ('-' in name or not name[:1].isupper()):
            raise KeyError(f'unknown preset {name!r}; presets: {", ".join(sorted(PRESETS))} '
                           '(or a registered Type:kw=v,... or a config .py)')
        cfg = dict(PRESETS[name]) if name in PRESETS else dict(type=name)
        cfg.update(_parse_kwargs(kw) if kw else {})
        model = _build(cfg.pop('_scope_', 'mmevit'), cfg)
    if eager_attention:  # also unfused linears (LIT's oneDNN GEMM + GELU / residual-add fusion)
        for m in model.modules():
            for flag in ('fused_attn', 'fused_linear'):
                if hasattr(m, flag):
                    setattr(m, flag, False)
    model.eval()  # some toolbox backbones' train() does not return self
    return model


def _is_detector(model: nn.Module) -> bool:
    return hasattr(model, 'rpn_head') or hasattr(model, 'bbox_head') or hasattr(model, 'roi_head')


def is_video(model: nn.Module) -> bool:
    """Video denoisers (and whole models around them) take (B, T, C, H, W) clips."""
    return hasattr(getattr(model, 'generator', model), 'temporal_window')


def make_inputs(model: nn.Module, batch: int, size: Tuple[int, int], device='cpu',
                dtype: torch.dtype = torch.float32, frames: int = 7) -> Tuple[torch.Tensor, Optional[list]]:
    """Random input of ``size`` (a ``frames``-frame clip for video models) and, for detectors, the data
    samples (image metas) their forward needs."""
    h, w = size
    shape = (batch, frames, 3, h, w) if is_video(model) else (batch, 3, h, w)
    x = torch.rand(*shape, device=device, dtype=dtype)
    if not _is_detector(model):
        return x, None
    from mmdet.structures import DetDataSample
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1., 1.))
    return x, [DetDataSample(metainfo=meta) for _ in range(batch)]


def forward(model: nn.Module, x: torch.Tensor, data_samples: Optional[list] = None,
            amp: Optional[str] = None):
    """One inference forward; whole models (mmengine ``BaseModel``) run in ``mode='tensor'`` (the network
    without post-processing, as the toolboxes' get_flops)."""
    ctx = (torch.autocast(x.device.type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext())
    with torch.inference_mode(), ctx:
        if hasattr(model, 'data_preprocessor') and hasattr(model, 'val_step'):
            return model(x, data_samples, mode='tensor')
        return model(x)


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """glibc only: serve allocations up to ``threshold`` bytes from the heap and never give freed heap memory
    back to the OS (``mallopt`` ``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``, as the ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` environment variables do). By default glibc maps large blocks with ``mmap`` and
    unmaps them on free, with a threshold that moves with the process's allocation history: a model that
    materialises big temporaries (eager attention matrices: 25 MB per layer for ViT-S at 512²) then pays page
    faults on every call, by an amount that varies from run to run (the official SkipAt-S at 512² read 364 ms
    with the defaults, 267 ms with this, in consecutive processes). Timing both models of a comparison with it
    removes that variance, at the cost of the process keeping its peak heap. Returns whether it was applied."""
    import ctypes
    import ctypes.util
    import platform
    if platform.libc_ver()[0] != 'glibc':
        return False
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold) and libc.mallopt(_M_TRIM_THRESHOLD, threshold))


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def prepare(model: nn.Module, device='cpu', channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Move to ``device``; optionally channels-last weights and the one-flag fast inference mode
    (``mmevit.engine.compile_for_inference``: ``torch.compile`` with frozen weights, in place)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        compile_for_inference(model)
    return model


def time_model(model: nn.Module, x: torch.Tensor, repeats: int = 7, warmup: int = 2,
               name: str = 'model', **kwargs) -> BenchResult:
    return compare({name: model}, x, repeats, warmup, **kwargs)[name]


def compare(models: Dict[str, nn.Module], x: torch.Tensor, repeats: int = 7, warmup: int = 2,
            data_samples: Optional[list] = None, amp: Optional[str] = None,
            progress: Optional[Callable[[str], None]] = None) -> Dict[str, BenchResult]:
    """Time each model on ``x``, interleaved: warm-up all, then for each repeat run every model once (the order
    alternates between repeats, so that A B B A ... pairs share the machine's state)."""
    if repeats < 1:
        raise ValueError('repeats must be >= 1')
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f'amp must be one of {sorted(AMP_DTYPES)} or None, got {amp!r}')
    results = {n: BenchResult(n, threads=torch.get_num_threads(), batch=x.shape[0],
                              size=(x.shape[-2], x.shape[-1]), device=str(x.device), amp=amp,
                              channels_last=x.is_contiguous(memory_format=torch.channels_last)
                              and not x.is_contiguous(),
                              compiled=is_compiled(m))
               for n, m in models.items()}
    for i in range(warmup):
        for n, m in models.items():
            t0 = time.perf_counter()
            forward(m, x, data_samples, amp)
            _sync(x.device)
            if progress:
                progress(f'warm-up {i + 1}/{warmup} {n}: {(time.perf_counter() - t0) * 1e3:.1f} ms')
    for r in range(repeats):
        order = list(models.items()) if r % 2 == 0 else list(models.items())[::-1]
        for n, m in order:
            t0 = time.perf_counter()
            forward(m, x, data_samples, amp)
            _sync(x.device)
            results[n].times.append(time.perf_counter() - t0)
        if progress:
            progress(f'repeat {r + 1}/{repeats}: ' + '  '.join(
                f'{n} {results[n].times[-1] * 1e3:.1f} ms' for n in models))
    return results


def pair_ratios(a: Sequence[float], b: Sequence[float]) -> dict:
    """Per-pair ratios ``a_i / b_i`` (the speed-up of B over A): median (the headline), quartiles, min, max."""
    if len(a) != len(b) or not a:
        raise ValueError(f'need equal, non-empty time lists, got {len(a)} and {len(b)}')
    r = sorted(ta / tb for ta, tb in zip(a, b))
    if len(r) >= 4:
        q1, _, q3 = statistics.quantiles(r, n=4, method='inclusive')
    else:
        q1, q3 = r[0], r[-1]
    return dict(median=statistics.median(r), q1=q1, q3=q3, min=r[0], max=r[-1], pairs=len(r),
                ratio_of_medians=statistics.median(a) / statistics.median(b))


def count_gmacs(model: nn.Module, x: torch.Tensor, data_samples: Optional[list] = None) -> float:
    """GMACs per image of matmuls/convs/attention (``flops.count_flops``: SDPA on the math kernel)."""
    from .flops import count_flops
    return count_flops(model, x, data_samples=data_samples).gmacs


# ---------------------------------------------------------------------------------------------- peak memory
def _status_kb(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{key} not in /proc/self/status')


def _memory_worker(args: dict) -> dict:
    """Run in a fresh process: build, then one forward; report VmHWM growth over VmRSS before it."""
    torch.set_num_threads(args['threads'])
    torch.manual_seed(0)
    model = prepare(build_model(args['spec'], args['backbone_only']), 'cpu', args['channels_last'])
    x, samples = make_inputs(model, args['batch'], tuple(args['size']))
    if args['channels_last']:
        x = x.contiguous(memory_format=torch.channels_last)
    import gc
    gc.collect()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS (Linux >= 4.0)
    before = _status_kb('VmRSS')
    forward(model, x, samples, args['amp'])
    return dict(peak_mem_mb=(_status_kb('VmHWM') - before) / 1024, rss_before_mb=before / 1024)


def peak_memory(spec: str, batch: int, size: Tuple[int, int], device: str = 'cpu', backbone_only=False,
                amp: Optional[str] = None, channels_last: bool = False,
                threads: Optional[int] = None) -> Tuple[float, str]:
    """(MB, method): the extra memory of one inference forward of ``spec`` (module docstring)."""
    if str(device).startswith('cuda'):
        model = prepare(build_model(spec, backbone_only), device, channels_last)
        x, samples = make_inputs(model, batch, size, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        forward(model, x, samples, amp)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20, 'cuda max_memory_allocated'
    args = dict(spec=spec, batch=batch, size=list(size), backbone_only=backbone_only, amp=amp,
                channels_last=channels_last, threads=threads or torch.get_num_threads())
    code = ('import json, sys; from mmevit.analysis.benchmark import _memory_worker; '
            'print("@@" + json.dumps(_memory_worker(json.loads(sys.argv[1]))))')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', code, json.dumps(args)], capture_output=True, text=True,
                          env=env, cwd=os.getcwd())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('@@')]
    if proc.returncode or not lines:
        raise RuntimeError(f'memory worker for {spec} failed:\n{proc.stderr[-2000:]}')
    return json.loads(lines[-1][2:])['peak_mem_mb'], 'cpu VmHWM - VmRSS, fresh process, first forward'
