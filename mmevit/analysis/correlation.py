"""Layer-to-layer correlation of ViT attention: the analysis that motivates SkipAt.

SkipAt (Venkataramanan et al., ICLR 2024, §3) shows that (a) the CLS attention maps ``A[CLS]`` of
consecutive layers have high cosine similarity and high CKA, and (b) the MSA outputs ``Z_MSA`` of
neighbouring layers have high CKA, so attention can be skipped there and the MSA output approximated from
an earlier one. This module measures both on any model whose attention modules are
``MultiheadSelfAttention`` (SkipAtViT, the plain ViT, Evo-ViT's blocks...).

CKA (Kornblith et al., ICML 2019, "Similarity of Neural Network Representations Revisited"), linear kernel:
for feature matrices ``X`` (n, p) and ``Y`` (n, q) of the same n examples, ``K = X X^T``, ``L = Y Y^T``,

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),

where HSIC is computed on the *centred* Gram matrices (``H K H`` with ``H = I - 11^T/n``; equivalently on
column-centred features). Two estimators of HSIC:
  - biased (Kornblith et al., eq. 3): ``tr(K H L H) / (n - 1)^2``; with linear kernels
    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``. Needs n >= 2.
  - unbiased (Song et al., JMLR 2012, "Feature Selection via Dependence Maximization", eq. 5), with the
    diagonals of K, L set to zero: ``[tr(K L) + 1^T K 1 1^T L 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K L 1]
    / (n (n-3))``. Needs n >= 4.
CKA is invariant to orthogonal transforms and isotropic scaling of either feature matrix, not to arbitrary
invertible linear maps.

Over a data set, ``MinibatchCKA`` averages HSIC over minibatches before the ratio (Nguyen et al., ICLR 2021,
"Do Wide and Deep Networks Learn the Same Things?"; the way Raghu et al. 2021 analyse ViTs): memory is a few
(batch x batch) Gram matrices per layer whatever the number of images, and with the unbiased estimator the
result does not depend on the minibatch size in expectation. An example is one image; its features are
the flattened (tokens x channels) MSA output, or its CLS attention row.
"""
import math
import os
import os.path as osp
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import MultiheadSelfAttention
from ..models.layers.evo import EvoAttention

# Attention classes whose weights are exactly softmax(q k^T * scale) over their input tokens (no bias
# table, no mask of their own): the CLS row is recomputed from their qkv output for these only.
PLAIN_SOFTMAX_ATTENTION = (MultiheadSelfAttention, EvoAttention)


# ---------------------------------------------------------------------- CKA
def gram(x: torch.Tensor) -> torch.Tensor:
    """Linear-kernel Gram matrix ``X X^T`` of (n, ...) features (flattened per example), in float64."""
    x = x.reshape(x.shape[0], -1).double()
    return x @ x.T


def hsic(k: torch.Tensor, l: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """HSIC of two (n, n) Gram matrices (see the module doc for both estimators)."""
    n = k.shape[0]
    if k.shape != (n, n) or l.shape != (n, n):
        raise ValueError(f'hsic needs two square Gram matrices of the same size, got {tuple(k.shape)} and '
                         f'{tuple(l.shape)}')
    if unbiased:
        if n < 4:
            raise ValueError(f'the unbiased HSIC estimator needs at least 4 examples, got {n}')
        k = k - torch.diag(torch.diagonal(k))
        l = l - torch.diag(torch.diagonal(l))
        kl = k @ l
        return (torch.trace(kl) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2. / (n - 2) * kl.sum()) / (n * (n - 3))
    if n < 2:
        raise ValueError(f'HSIC needs at least 2 examples, got {n}')
    h = torch.eye(n, dtype=k.dtype, device=k.device) - 1. / n
    return torch.trace(k @ h @ l @ h) / (n - 1) ** 2


def linear_cka(x: torch.Tensor, y: torch.Tensor, unbiased: bool = False) -> float:
    """Linear CKA between features ``x`` (n, p...) and ``y`` (n, q...) of the same n examples.

    Features are flattened per example and centred over the examples (inside HSIC). Returns a float in
    [0, 1] for the biased estimator (the unbiased one can stray slightly outside for tiny n).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f'CKA compares the same examples: got {x.shape[0]} and {y.shape[0]} rows')
    k, l = gram(x), gram(y)
    denom = math.sqrt(float(hsic(k, k, unbiased)) * float(hsic(l, l, unbiased)))
    if not denom > 0:
        raise ValueError('CKA is undefined for features that are constant over the examples')
    return float(hsic(k, l, unbiased)) / denom


class MinibatchCKA:
    """CKA between every pair of ``num`` layers, accumulated over minibatches.

    ``update(features)`` takes one (B, ...) tensor per layer for the same B examples; ``compute()`` returns
    the (num, num) matrix ``sum_b HSIC(K_i, K_j) / sqrt(sum_b HSIC(K_i, K_i) sum_b HSIC(K_j, K_j))``.
    """

    def __init__(self, num: int, unbiased: bool = True) -> None:
        self.num, self.unbiased = num, unbiased
        self.sums = torch.zeros(num, num, dtype=torch.float64)
        self.batches = 0
        self.examples = 0

    def update(self, features: Sequence[torch.Tensor]) -> None:
        if len(features) != self.num:
            raise ValueError(f'expected features of {self.num} layers, got {len(features)}')
        grams = [gram(f.detach().cpu()) for f in features]
        for i in range(self.num):
            for j in range(i, self.num):
                self.sums[i, j] += hsic(grams[i], grams[j], self.unbiased)
                self.sums[j, i] = self.sums[i, j]
        self.batches += 1
        self.examples += grams[0].shape[0]

    def compute(self) -> torch.Tensor:
        if not self.batches:
            raise RuntimeError('MinibatchCKA.compute() before any update()')
        d = torch.diagonal(self.sums).clamp_min(1e-300).sqrt()
        return self.sums / d[:, None] / d[None, :]


class PairwiseCosine:
    """Mean over examples of the cosine similarity between every pair of ``num`` layers' (B, D) vectors."""

    def __init__(self, num: int) -> None:
        self.num = num
        self.sums = torch.zeros(num, num, dtype=torch.float64)
        self.examples = 0

    def update(self, vectors: Sequence[torch.Tensor]) -> None:
        if len(vectors) != self.num:
            raise ValueError(f'expected vectors of {self.num} layers, got {len(vectors)}')
        v = torch.stack([x.detach().cpu().double().reshape(x.shape[0], -1) for x in vectors])  # (L, B, D)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        self.sums += torch.einsum('ibd,jbd->ij', v, v)
        self.examples += v.shape[1]

    def compute(self) -> torch.Tensor:
        if not self.examples:
            raise RuntimeError('PairwiseCosine.compute() before any update()')
        return self.sums / self.examples


# ---------------------------------------------------------------------- recording
def cls_attention_row(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q_cls k^T * scale)`` averaged over heads: q, k (B, heads, N, head_dim) -> (B, N)."""
    logits = (q[:, :, :1].double() * scale) @ k.double().transpose(-2, -1)  # (B, h, 1, N)
    return logits.softmax(dim=-1).mean(dim=1)[:, 0]


class AttentionRecorder:
    """Forward hooks that record, for each ``MultiheadSelfAttention`` of a model, its MSA output (after
    ``proj``, before the residual: SkipAt's ``Z_MSA``) and its CLS attention row.

    The CLS row is computed from the ``qkv`` projection's output captured by a hook (so the fused SDPA path
    keeps running and the model's outputs are unchanged): ``softmax(q_0 k^T / sqrt(d))`` averaged over heads,
    over all N tokens (entry 0 is CLS->CLS). It is recorded only for the classes in
    ``PLAIN_SOFTMAX_ATTENTION`` called without a mask; other subclasses (e.g. with a relative-position bias)
    get their MSA output only. A tuple output (Evo-ViT's ``(out, cls_row)``) records its first element.
    Token 0 must be the CLS token (SkipAtViT with ``with_cls_token=True``).

    Usage::

        with AttentionRecorder(backbone) as rec:
            backbone(images)
        rec.names, rec.msa[name], rec.cls_attn[name]   # the last forward's tensors
    """

    def __init__(self, model: nn.Module, names: Optional[Sequence[str]] = None) -> None:
        modules = dict(model.named_modules())
        if names is None:
            names = [n for n, m in modules.items() if isinstance(m, MultiheadSelfAttention)]
        missing = [n for n in names if not isinstance(modules.get(n), MultiheadSelfAttention)]
        if missing:
            raise ValueError(f'not MultiheadSelfAttention modules of {type(model).__name__}: {missing}')
        if not names:
            raise ValueError(f'{type(model).__name__} has no MultiheadSelfAttention module to record')
        self.names: List[str] = list(names)
        self.modules = {n: modules[n] for n in self.names}
        self.msa: Dict[str, torch.Tensor] = {}
        self.cls_attn: Dict[str, torch.Tensor] = {}
        self._qkv: Dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> 'AttentionRecorder':
        for name, m in self.modules.items():
            self._handles.append(m.qkv.register_forward_hook(self._qkv_hook(name)))
            self._handles.append(m.register_forward_hook(self._attn_hook(name), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._qkv.clear()

    def _qkv_hook(self, name: str):
        def hook(module, args, output):
            self._qkv[name] = output.detach()
        return hook

    def _attn_hook(self, name: str):
        def hook(module, args, kwargs, output):
            self.msa[name] = (output[0] if isinstance(output, tuple) else output).detach()
            qkv = self._qkv.pop(name)
            masked = isinstance(kwargs.get('attn_mask'), torch.Tensor) or \
                len(args) > 1 and isinstance(args[1], torch.Tensor)
            if type(module) not in PLAIN_SOFTMAX_ATTENTION or masked:
                self.cls_attn.pop(name, None)
                return
            B, N, _ = qkv.shape
            q, k, _ = qkv.reshape(B, N, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            self.cls_attn[name] = cls_attention_row(q, k, module.scale).float()
        return hook


# ---------------------------------------------------------------------- analysis
def block_index(name: str) -> Optional[int]:
    """``'blocks.3.attn'`` -> 3 (the index after the last ``blocks.``/``layers.``), else None."""
    parts = name.split('.')
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ('blocks', 'layers') and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def analyse_attention(model: nn.Module, batches: Iterable[torch.Tensor], num_prefix_tokens: int = 1,
                      unbiased: bool = True, progress=None) -> dict:
    """Run ``model`` on each (B, C, H, W) batch and measure, between the attention layers:

    - ``cka_msa``: minibatch CKA of the MSA outputs (one example = one image's (tokens x channels) output);
    - ``cka_cls_attn``: minibatch CKA of the CLS attention rows over the patch tokens (SkipAt Fig. 3a);
    - ``cos_cls_attn``: mean over images of the cosine similarity of those rows (SkipAt Fig. 2).

    ``num_prefix_tokens`` leading entries (the CLS token) are left out of the CLS rows; 0 means the model has
    no CLS token and the two CLS measures are skipped (as they are, with the reason in ``cls_attn_skipped``,
    when some layer has no plain softmax attention or the layers attend over different token sets). Batches
    need >= 4 images with the unbiased estimator.
    Returns plain lists (JSON-ready) and the layer names / block indices.
    """
    was_training = model.training
    model.eval()
    recorder = AttentionRecorder(model)
    names = recorder.names
    cka_msa = MinibatchCKA(len(names), unbiased)
    cka_cls, cos_cls = (MinibatchCKA(len(names), unbiased), PairwiseCosine(len(names))) \
        if num_prefix_tokens > 0 else (None, None)
    note = None if num_prefix_tokens > 0 else 'no CLS token (num_prefix_tokens=0)'
    try:
        with recorder, torch.inference_mode():
            for b, x in enumerate(batches):
                model(x)
                cka_msa.update([recorder.msa[n] for n in names])
                if cka_cls is not None and note is None:
                    note = _cls_rows_unusable(recorder, names)
                if cka_cls is not None and note is None:
                    rows = [recorder.cls_attn[n][:, num_prefix_tokens:] for n in names]
                    cka_cls.update(rows)
                    cos_cls.update(rows)
                if progress is not None:
                    progress(b + 1, cka_msa.examples)
    finally:
        model.train(was_training)
    out = dict(layers=names, blocks=[block_index(n) for n in names], num_images=cka_msa.examples,
               estimator='unbiased' if unbiased else 'biased', cka_msa=cka_msa.compute().tolist())
    if note is None:
        out.update(cka_cls_attn=cka_cls.compute().tolist(), cos_cls_attn=cos_cls.compute().tolist())
    else:
        out['cls_attn_skipped'] = note
    return out


def _cls_rows_unusable(recorder: 'AttentionRecorder', names: Sequence[str]) -> Optional[str]:
    """Why the CLS rows cannot be compared across layers (None when they can)."""
    absent = [n for n in names if n not in recorder.cls_attn]
    if absent:
        return f'no CLS attention row for {absent} (masked or biased attention)'
    lengths = {recorder.cls_attn[n].shape[-1] for n in names}
    if len(lengths) > 1:
        return f'the layers attend over different token counts {sorted(lengths)} (token pruning)'
    return None


SKIP_RULE = ('walk the recorded blocks in order, the first always computed; a block is suggested for skipping '
             'when the CKA between its MSA output and that of the last block kept (computed) is >= threshold, '
             'otherwise it is kept and becomes the reference.')


def suggest_skip_indices(cka: Sequence[Sequence[float]], blocks: Sequence[int], threshold: float) -> List[int]:
    """Block indices whose MSA output could come from Phi of the last computed one (see ``SKIP_RULE``).

    This mirrors SkipAt's reuse: a skipped block's MSA output is approximated from the MSA output of the last
    block that computed attention, so each candidate is compared with that block, not with its neighbour.
    """
    if not 0. < threshold <= 1.:
        raise ValueError(f'threshold must be in (0, 1], got {threshold}')
    if len(blocks) != len(cka):
        raise ValueError(f'{len(blocks)} block indices for a {len(cka)}x{len(cka)} CKA matrix')
    skip, ref = [], 0
    for i in range(1, len(blocks)):
        if cka[ref][i] >= threshold:
            skip.append(blocks[i])
        else:
            ref = i
    return skip


def plot_heatmap(matrix: Sequence[Sequence[float]], labels: Sequence, title: str, path: str,
                 vmin: float = 0., vmax: float = 1.) -> None:
    """Save a layer x layer heatmap (matplotlib, Agg backend) with the values written in the cells."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    im = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap='viridis')
    ax.set_xticks(range(n), [str(s) for s in labels])
    ax.set_yticks(range(n), [str(s) for s in labels])
    ax.set_xlabel('block')
    ax.set_ylabel('block')
    ax.set_title(title)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                v = matrix[i][j]
                ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=7,
                        color='black' if v > (vmin + vmax) / 2 else 'white')
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------- images
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(folder: str) -> List[str]:
    """Image files directly in ``folder`` (sorted)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    files = sorted(osp.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder}')
    return files


def resize_center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) image -> (C, size, size) float: shorter side resized to ``size`` (bilinear, antialiased),
    then centre-cropped."""
    _, h, w = img.shape
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    out = F.interpolate(img[None].float(), size=(nh, nw), mode='bilinear', align_corners=False, antialias=True)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[:, top:top + size, left:left + size]


def normalizer(preprocessor: Optional[nn.Module]):
    """``fn(batch)`` applying an OpenMMLab data preprocessor's channel flip and mean/std to (B, 3, H, W)
    images in the loading order (BGR for ``LoadImageFromFile``/mmcv), without padding or batching logic."""
    flip = bool(getattr(preprocessor, '_channel_conversion', getattr(preprocessor, 'channel_conversion', False)))
    norm = bool(getattr(preprocessor, '_enable_normalize', False))
    mean = getattr(preprocessor, 'mean', None) if norm else None
    std = getattr(preprocessor, 'std', None) if norm else None

    def apply(x: torch.Tensor) -> torch.Tensor:
        if flip and x.shape[1] == 3:
            x = x[:, [2, 1, 0]]
        if mean is not None:
            x = (x - mean.view(1, -1, 1, 1).to(x)) / std.view(1, -1, 1, 1).to(x)
        return x
    return apply


def chunk_sizes(total: int, batch_size: int, minimum: int) -> List[int]:
    """Split ``total`` examples into batches of ``batch_size``; a last batch smaller than ``minimum`` joins
    the previous one. Raises when ``total < minimum``."""
    if total < minimum:
        raise ValueError(f'need at least {minimum} images, got {total}')
    sizes = [batch_size] * (total // batch_size) + ([total % batch_size] if total % batch_size else [])
    if len(sizes) > 1 and sizes[-1] < minimum:
        last = sizes.pop()
        sizes[-1] += last
    return sizes


def batched(images: Iterator[torch.Tensor], sizes: Sequence[int]) -> Iterator[torch.Tensor]:
    """Stack consecutive (C, H, W) images into batches of the given sizes."""
    it = iter(images)
    for n in sizes:
        yield torch.stack([next(it) for _ in range(n)])


__all__ = ['gram', 'hsic', 'linear_cka', 'MinibatchCKA', 'PairwiseCosine', 'cls_attention_row',
           'AttentionRecorder', 'analyse_attention', 'suggest_skip_indices', 'SKIP_RULE', 'plot_heatmap',
           'block_index', 'list_images', 'resize_center_crop', 'normalizer', 'chunk_sizes', 'batched']
