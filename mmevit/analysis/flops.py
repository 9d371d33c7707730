"""Parameters and multiply-accumulates (MACs) of registered archs and whole models from configs.

Counting: ``torch.utils.flop_counter`` on one forward, with SDPA forced to the math kernel (the counter, like
mmengine's, sees the fused CPU SDPA kernel as zero), so both attention matmuls are included. Reported in MACs
(the papers' "FLOPs" are multiply-accumulates: DeiT-S 4.6 G at 224). ``macs`` covers matmuls, linears,
convolutions (depth-wise and transposed included) and attention; ``norm_macs`` counts one MAC per element of every
LayerNorm / GroupNorm / BatchNorm, the convention of the official ``Uformer.flops()``; activations, softmax and
pooling are not counted. Models that define their own analytic ``flops(hw)`` (Uformer) report it as ``own_macs``.
"""
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

# (preset, paper input size) of every registered arch; the ViT/SkipAt archs also at the ADE20K crop.
PAPER_SIZES: Tuple[Tuple[str, int], ...] = (
    *((f'{p}-{a}', s) for s in (224, 512) for a in 'tsb' for p in ('vit', 'skipat')),
    *((f'evo-vit-{a}', 224) for a in 'tsb'),
    *((f'evo-levit-{a}', 224) for a in ('128s', '128', '192', '256', '384')),
    *((f'lit-{a}', 224) for a in ('ti', 's', 'm', 'b')),
    *((f'{p}-{a}{q}', 256) for a in 'tsb'
      for p, q in (('uformer', ''), ('skipat-uformer', ''), ('skipat-uformer', '-feature'))),
    *((f'{p}-{a}', 128) for a in 'ts' for p in ('uniformer-video', 'skipat-uniformer-video')),  # 7-frame clips
)

_NORM_OPS = ('native_layer_norm', 'native_group_norm', '_native_batch_norm_legit_no_training',
             'native_batch_norm', 'cudnn_batch_norm')


def _norm_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    n = 1
    for d in input_shape:
        n *= d
    return 2 * n  # the counter's unit is FLOPs = 2 MACs


@dataclass
class FlopCount:
    name: str
    input_shape: Tuple[int, ...]
    params: int
    macs: float                      # per image (per clip for video models)
    norm_macs: float = 0.            # per image
    own_macs: Optional[float] = None  # the model's analytic flops(), per image, where it has one
    by_op: Dict[str, float] = field(default_factory=dict)  # MACs per aten op, per image

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def summary(self) -> str:
        shape = self.input_shape[1:2] + self.input_shape[-2:] if len(self.input_shape) == 5 else \
            self.input_shape[-2:]
        unit = 'img' if len(shape) == 2 else 'clip'
        s = (f'{self.name}: {self.params / 1e6:.2f} M params, {self.gmacs:.3f} GMACs/{unit} '
             f'(+{self.norm_macs / 1e9:.3f} G norms) at {"x".join(map(str, shape))}')
        if self.own_macs is not None:
            s += f'; own flops(): {self.own_macs / 1e9:.3f} GMACs'
        return s

    def to_dict(self) -> dict:
        return dict(asdict(self), gmacs=self.gmacs)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, inputs: Union[torch.Tensor, Sequence[int]], name: str = 'model',
                data_samples=None) -> FlopCount:
    """Count one forward of ``model`` (eval, no grad) on ``inputs`` (a tensor or a shape ``(B, C, H, W)``)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from .benchmark import forward
    if not isinstance(inputs, torch.Tensor):
        if len(inputs) not in (4, 5):
            raise ValueError(f'inputs must be a tensor or a (B, C, H, W) / (B, T, C, H, W) shape, got {inputs!r}')
        p = next(model.parameters(), None)
        inputs = torch.randn(*inputs, device=p.device if p is not None else 'cpu')
    custom = {getattr(torch.ops.aten, op): _norm_flops for op in _NORM_OPS if hasattr(torch.ops.aten, op)}
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        forward(model, inputs, data_samples)
    batch = inputs.shape[0]
    by_op = {str(k).split('.')[-1]: v / 2 / batch
             for k, v in counter.get_flop_counts().get('Global', {}).items()}
    norm = sum(v for k, v in by_op.items() if k in _NORM_OPS)
    own = None
    flops_fn = getattr(getattr(model, 'generator', model), 'flops', None)
    if callable(flops_fn):
        try:  # (H, W) for images, (T, H, W) for clips
            own = float(flops_fn(tuple(inputs.shape[-2:]) if inputs.dim() == 4 else
                                 (inputs.shape[1], *inputs.shape[-2:])))
        except TypeError:
            own = None
    return FlopCount(name, tuple(inputs.shape), count_params(model), sum(by_op.values()) - norm, norm, own,
                     by_op)


def flops_of(spec: str, size: Union[int, Sequence[int]] = 224, backbone_only: bool = False,
             device: str = 'cpu') -> FlopCount:
    """Build ``spec`` (preset, ``Type:kw=v``, config) and count it at ``size`` (H or (H, W)), batch 1."""
    from .benchmark import build_model, make_inputs
    h, w = (tuple(size) * 2)[:2] if isinstance(size, (list, tuple)) else (size, size)
    model = build_model(spec, backbone_only).to(device)
    x, samples = make_inputs(model, 1, (h, w), device)
    return count_flops(model, x, spec, samples)
