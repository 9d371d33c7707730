"""``Denoiser``: an image restoration network trained and tested on mmengine (mmagic's layout: the network is
``generator``, the pixel loss ``pixel_loss``).

Data contract (``mmevit.datasets.transforms.PackRestorationInputs``): ``inputs`` are the degraded images as
uint8 (C, H, W) tensors, each data sample a ``BaseDataElement`` holding ``gt_img`` (uint8 (C, H, W)) and the
file/block metainfo. ``RestorationDataPreprocessor`` scales both to [0, 1]; predictions carry ``pred_img``
and ``gt_img`` in the 0-255 range (float, not rounded), which is what ``mmevit.evaluation``'s PSNR/SSIM read.
In training it refuses batches holding NaN/Inf (one check per batch, before mixup; see
``mmevit.models.data_preprocessors`` for why only in training).
"""
import difflib
import numbers
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from ...registry import MODELS
from ..backbones.base import check_int, check_number
from ..data_preprocessors import check_finite_batch


@MODELS.register_module()
class RestorationDataPreprocessor(BaseDataPreprocessor):
    """Stack the degraded inputs and the ground truths as float images in [0, 1].

    Args:
        scale: Divisor of the stored pixel values (255 for 8-bit images).
        mixup: ``dict(alpha=1.2, start_iter=N)``: from training iteration N on, replace the batch by a mixup of
            itself with a shuffled copy, the same weight ``lam ~ Beta(alpha, alpha)`` for an input and its ground
            truth (the Uformer recipe's ``MixUp_AUG``, used from its 6th epoch). ``None``: off.
        non_blocking: Asynchronous host-to-device copies.

    In training, a batch whose inputs or ground truths hold NaN/Inf raises ``NonFiniteInputError`` naming the
    samples (``img_path``/``gt_path``/``frame_paths``/...) and their count of non-finite values: one
    ``isfinite().all()`` per stacked batch, before mixup, and none for 8-bit (integer) images, which cannot hold
    NaN (what is checked: float data such as DAVIS' noisy clips or ``.npy``/``.mat`` sources).
    """

    def __init__(self, scale: float = 255., mixup: Optional[dict] = None, non_blocking: bool = False) -> None:
        super().__init__(non_blocking)
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f'scale must be a number, got {scale!r} ({type(scale).__name__})')
        if not 0 < scale < float('inf'):
            raise ValueError(f'scale must be finite and > 0, got {scale!r}')
        self.scale = float(scale)
        if mixup is not None:
            if not isinstance(mixup, Mapping):
                raise TypeError(f'mixup must be None or dict(alpha=..., start_iter=...), got {mixup!r}')
            unknown = set(mixup) - {'alpha', 'start_iter'}
            if unknown:
                raise ValueError(f'mixup takes alpha > 0 and start_iter, got unknown keys {sorted(unknown)} in '
                                 f'{mixup!r}')
            check_number(mixup.get('alpha', 1.2), "mixup['alpha']")
            check_int(mixup.get('start_iter', 0), "mixup['start_iter']", minimum=0)
        self.mixup = dict(dict(alpha=1.2, start_iter=0), **mixup) if mixup is not None else None

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, Mapping) or 'inputs' not in data:
            got = f'a dict with keys {sorted(data)}' if isinstance(data, Mapping) else type(data).__name__
            raise TypeError(f"{type(self).__name__} takes a dict with 'inputs' (and 'data_samples'), as a "
                            f'dataloader with pseudo_collate gives it, got {got}')
        data = self.cast_data(data)
        raw = data['inputs']
        inputs = self._stack(raw, 'inputs')
        samples: List[BaseDataElement] = list(data.get('data_samples') or [])
        float_gt = False
        for s in samples:
            if 'gt_img' in s:
                float_gt = float_gt or s.gt_img.is_floating_point()
                s.gt_img = s.gt_img.float() / self.scale
        if training:
            if len(samples) != inputs.shape[0] or not all('gt_img' in s for s in samples):
                raise KeyError('training needs a gt_img in every data sample')
            gt = None
            # Integer images cannot hold NaN/Inf (nor can their scaling by a finite > 0 scale create one).
            if any(im.is_floating_point() for im in ([raw] if isinstance(raw, torch.Tensor) else raw)):
                check_finite_batch(inputs, samples, 'inputs', type(self).__name__)
            if float_gt:
                gt = torch.stack([s.gt_img for s in samples])
                check_finite_batch(gt, samples, 'ground truths', type(self).__name__)
            if self._mixup_active():
                gt = torch.stack([s.gt_img for s in samples]) if gt is None else gt
                inputs, gt = self._mix(inputs, gt)
                for s, g in zip(samples, gt):
                    s.gt_img = g
        return dict(inputs=inputs, data_samples=samples or None)

    def _stack(self, images: Union[torch.Tensor, Sequence[torch.Tensor]], what: str) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            batch = images if images.dim() == 4 else images[None]
        else:
            if isinstance(images, (str, bytes)) or not isinstance(images, Sequence) or not images:
                raise ValueError(f'{what} must be a non-empty list of (C, H, W) or (T, C, H, W) tensors, got '
                                 f'{images!r:.80}')
            bad = [type(im).__name__ for im in images if not isinstance(im, torch.Tensor)]
            if bad:
                raise TypeError(f'{what} must be torch.Tensors (PackRestorationInputs packs them), got {bad[0]}')
            if len({im.is_floating_point() for im in images}) != 1:
                raise TypeError(f'{what}: a batch mixes integer and floating-point images '
                                f'{[im.dtype for im in images]}: all are divided by scale={self.scale:g}, so they '
                                'must share one pixel range')
            shapes = {tuple(im.shape) for im in images}
            if len(shapes) != 1:
                raise ValueError(f'{what}: images of different sizes {sorted(shapes)} cannot form a batch; use '
                                 'batch_size=1 for full images (training crops them to one size)')
            batch = torch.stack(list(images))
        return batch.float() / self.scale

    def _mixup_active(self) -> bool:
        if self.mixup is None:
            return False
        return MessageHub.get_current_instance().get_info('iter', 0) >= self.mixup['start_iter']

    def _mix(self, inputs: torch.Tensor, gt: torch.Tensor):
        alpha = torch.tensor(float(self.mixup['alpha']))
        lam = torch.distributions.Beta(alpha, alpha).sample((inputs.shape[0],)).to(inputs)
        lam = lam.view(-1, *[1] * (inputs.dim() - 1))  # images (B, C, H, W) or clips (B, T, C, H, W)
        perm = torch.randperm(inputs.shape[0], device=inputs.device)
        return lam * inputs + (1 - lam) * inputs[perm], lam * gt + (1 - lam) * gt[perm]


@MODELS.register_module()
class Denoiser(BaseModel):
    """A restoration network (``generator``) with a pixel loss, on mmengine's ``BaseModel``.

    Args:
        generator: The network config (e.g. ``dict(type='Uformer', arch='b')``), called on (B, C, H, W) images
            in [0, 1] and returning the restored images.
        pixel_loss: Loss config (default ``CharbonnierLoss`` with the Uformer recipe's eps 1e-3).
        data_preprocessor: Default ``RestorationDataPreprocessor``.
        train_cfg: ``dict(clamp_output=True)``: clamp the prediction to [0, 1] before the loss, as the Uformer
            recipe does.
        test_cfg: ``dict(tile=None, tile_overlap=32)``: images with a side above ``tile`` are restored in
            ``tile`` x ``tile`` tiles (best a multiple of the network's ``size_divisor``) overlapping by
            ``tile_overlap`` pixels, averaged where they overlap, which bounds the memory of full-resolution
            inference; ``None`` restores the whole image at once.
        init_cfg: mmengine init config.
    """

    # test_cfg keys a subclass consumes before this constructor (named when a key is unknown).
    extra_test_cfg_keys: Tuple[str, ...] = ()

    def __init__(self, generator: dict, pixel_loss: Optional[dict] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='RestorationDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not isinstance(generator, (dict, nn.Module)):
            raise TypeError(f"generator must be a config dict (e.g. dict(type='Uformer', arch='b')) or an "
                            f'nn.Module, got {generator!r:.80} ({type(generator).__name__})')
        self.generator = MODELS.build(generator) if isinstance(generator, dict) else generator
        self.pixel_loss = MODELS.build(pixel_loss or dict(type='CharbonnierLoss'))
        owner = type(self).__name__
        self.train_cfg = _options(f'{owner} train_cfg', train_cfg, dict(clamp_output=True))
        self.test_cfg = _options(f'{owner} test_cfg', test_cfg, dict(tile=None, tile_overlap=32),
                                 self.extra_test_cfg_keys)
        tile, overlap = self.test_cfg['tile'], self.test_cfg['tile_overlap']
        if tile is not None and not (isinstance(tile, int) and isinstance(overlap, int) and 0 <= overlap < tile):
            raise ValueError(f'test_cfg: tile must be an int > tile_overlap >= 0, got tile={tile!r}, '
                             f'tile_overlap={overlap!r}')

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.generator(inputs)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def loss(self, inputs: torch.Tensor, data_samples: List[BaseDataElement]) -> Dict[str, torch.Tensor]:
        if not data_samples or any('gt_img' not in s for s in data_samples):
            raise ValueError('Denoiser.loss needs data_samples holding gt_img (one per input), as '
                             'PackRestorationInputs packs them')
        if any(not s.gt_img.is_floating_point() for s in data_samples):
            raise TypeError(f'gt_img is {data_samples[0].gt_img.dtype}, not a float image in [0, 1]: run the '
                            'data preprocessor first (RestorationDataPreprocessor scales it)')
        pred = self.generator(inputs)
        if self.train_cfg['clamp_output']:
            pred = pred.clamp(0, 1)
        gt = torch.stack([s.gt_img for s in data_samples]).to(pred)
        return dict(loss_pix=self.pixel_loss(pred, gt))

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]] = None) -> List[BaseDataElement]:
        """Restore ``inputs``; each returned sample holds ``pred_img``, ``input_img`` (and ``gt_img``, if given)
        as float (C, H, W) tensors in the 0-255 range."""
        if data_samples and len(data_samples) != len(inputs):
            raise ValueError(f'predict: {len(data_samples)} data_samples for a batch of {len(inputs)} inputs')
        pred = self.restore(inputs).clamp(0, 1) * 255.
        samples = list(data_samples) if data_samples else [BaseDataElement() for _ in range(pred.shape[0])]
        for s, p, x in zip(samples, pred, inputs):
            s.pred_img = p
            s.input_img = x * 255.  # the degraded input: PSNR(pred_key='input_img') measures the starting point
            if 'gt_img' in s:
                s.gt_img = s.gt_img.float() * 255.
        return samples

    def restore(self, inputs: torch.Tensor) -> torch.Tensor:
        """The network on ``inputs``, tile by tile when a side exceeds ``test_cfg['tile']``."""
        tile, overlap = self.test_cfg['tile'], self.test_cfg['tile_overlap']
        H, W = inputs.shape[-2:]
        if tile is None or max(H, W) <= tile:
            return self.generator(inputs)
        out, weight = None, inputs.new_zeros(1, 1, H, W)
        for top in _tile_starts(H, tile, overlap):
            for left in _tile_starts(W, tile, overlap):
                y = self.generator(inputs[..., top:top + tile, left:left + tile])
                if out is None:
                    out = y.new_zeros(*y.shape[:-2], H, W)  # (B, C, H, W), or clips (B, T, C, H, W)
                out[..., top:top + tile, left:left + tile] += y
                weight[..., top:top + tile, left:left + tile] += 1
        return out / weight


def _options(name: str, given: Optional[dict], defaults: dict, also_known: Sequence[str] = ()) -> dict:
    """``defaults`` updated with ``given``; unknown keys are refused (with the closest known one). ``also_known``:
    keys a subclass took out before (named in the message only)."""
    if given is not None and not isinstance(given, Mapping):
        raise TypeError(f'{name} must be a dict, got {given!r}')
    known = sorted(set(defaults) | set(also_known))
    unknown = sorted(set(given or {}) - set(defaults), key=str)
    if unknown:
        hints = ''.join(f' ({k!r}: did you mean {close[0]!r}?)' for k in unknown
                        for close in [difflib.get_close_matches(str(k), known, n=1)] if close)
        raise KeyError(f'{name}: unknown keys {unknown}{hints} (known: {known})')
    return dict(defaults, **(given or {}))


def _tile_starts(size: int, tile: int, overlap: int) -> List[int]:
    """Tile origins covering ``size``: stride ``tile - overlap``, the last tile flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]
