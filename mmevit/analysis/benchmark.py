"""Inference timing and FLOP counting for registered models and configs.

Models are named by a preset (``skipat-s``, ``vit-t``...), a registered type with kwargs
(``SkipAtViT:arch=s,skip_indices=()``) or a config file (the whole model, or ``backbone_only``).
``compare`` times two models interleaved in one process (warm-up, then alternating repeats), so that
machine noise hits both alike; the ratio of medians is the speed-up.
"""
import ast
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

PRESETS: Dict[str, dict] = {}
for _a in ('t', 's', 'b'):
    PRESETS[f'skipat-{_a}'] = dict(type='SkipAtViT', arch=_a)
    PRESETS[f'vit-{_a}'] = dict(type='SkipAtViT', arch=_a, skip_indices=())
    PRESETS[f'evo-vit-{_a}'] = dict(type='EvoViT', arch=_a, out_type='avg_featmap')
for _a in ('128s', '128', '192', '256', '384'):
    PRESETS[f'evo-levit-{_a}'] = dict(type='EvoLeViT', arch=_a, out_type='avg_featmap', out_indices=2)

# LIT classifiers' backbones (final norm; cls token for Ti, token average for S/M/B).
for _a in ('ti', 's', 'm', 'b'):
    PRESETS[f'lit-{_a}'] = dict(type='LIT', arch=_a, out_indices=3, final_norm=True,
                                **(dict(out_type='cls_token', with_cls_token=True) if _a == 'ti'
                                   else dict(out_type='avg_featmap')))


@dataclass
class BenchResult:
    name: str
    times: List[float] = field(default_factory=list)
    threads: int = 0
    batch: int = 0
    size: Tuple[int, int] = (0, 0)
    gmacs: Optional[float] = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def summary(self) -> str:
        s = (f'{self.name}: median {self.median * 1e3:.1f} ms  min {min(self.times) * 1e3:.1f}  '
             f'max {max(self.times) * 1e3:.1f}  ({len(self.times)} runs, batch {self.batch}, '
             f'{self.size[0]}x{self.size[1]}, {self.threads} threads)')
        if self.gmacs is not None:
            s += f'  {self.gmacs:.2f} GMACs/img'
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
        k, v = p.split('=', 1)
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def build_model(spec: str, backbone_only: bool = False, eager_attention: bool = False) -> nn.Module:
    """Build a model in eval mode from a preset, ``Type:kw=v,...`` or a config file path.

    A ``+eager`` suffix (``skipat-s+eager``) selects the eager attention reference path for that model (and
    plain, unfused linears where a model has ``fused_linear`` flags).
    """
    import mmevit  # noqa: F401
    if spec.endswith('+eager'):
        spec, eager_attention = spec[:-len('+eager')], True
    from mmevit.registry import MODELS
    if spec.endswith('.py'):
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile(spec)
        scope = cfg.get('default_scope', 'mmevit')
        init_default_scope(scope)
        model_cfg = cfg.model.backbone if backbone_only else cfg.model
        if 'init_cfg' in model_cfg:
            model_cfg.init_cfg = None  # benchmark random weights; no download
        if 'pretrained' in model_cfg:
            model_cfg.pretrained = None
        import importlib
        registry = importlib.import_module(f'{scope}.registry').MODELS
        model = registry.build(model_cfg)
    else:
        name, _, kw = spec.partition(':')
        cfg = dict(PRESETS[name]) if name in PRESETS else dict(type=name)
        cfg.update(_parse_kwargs(kw) if kw else {})
        model = MODELS.build(cfg)
    if eager_attention:  # also unfused linears (LIT's oneDNN GEMM + GELU / residual-add fusion)
        for m in model.modules():
            for flag in ('fused_attn', 'fused_linear'):
                if hasattr(m, flag):
                    setattr(m, flag, False)
    return model.eval()


def _forward(model: nn.Module, x: torch.Tensor):
    with torch.inference_mode():
        if hasattr(model, 'extract_feat') and hasattr(model, 'data_preprocessor'):
            return model(x, mode='tensor')
        return model(x)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_model(model: nn.Module, x: torch.Tensor, repeats: int = 7, warmup: int = 2,
               name: str = 'model') -> BenchResult:
    return compare({name: model}, x, repeats, warmup)[name]


def compare(models: Dict[str, nn.Module], x: torch.Tensor, repeats: int = 7,
            warmup: int = 2) -> Dict[str, BenchResult]:
    """Time each model on ``x``, interleaved: warm-up all, then for each repeat run every model once."""
    if repeats < 1:
        raise ValueError('repeats must be >= 1')
    results = {n: BenchResult(n, threads=torch.get_num_threads(), batch=x.shape[0],
                              size=(x.shape[-2], x.shape[-1])) for n in models}
    for _ in range(warmup):
        for m in models.values():
            _forward(m, x)
    _sync(x.device)
    for r in range(repeats):
        order = list(models.items()) if r % 2 == 0 else list(models.items())[::-1]
        for n, m in order:
            t0 = time.perf_counter()
            _forward(m, x)
            _sync(x.device)
            results[n].times.append(time.perf_counter() - t0)
    return results


def count_gmacs(model: nn.Module, x: torch.Tensor) -> float:
    """GMACs per image, counted with ``torch.utils.flop_counter`` with SDPA forced to the math kernel
    (the counter sees the fused CPU kernel as zero)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        _forward(model, x)
    return counter.get_total_flops() / 2 / 1e9 / x.shape[0]
