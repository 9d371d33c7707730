"""``Denoiser``: an image restoration network trained and tested on mmengine (mmagic's layout: the network is
``generator``, the pixel loss ``pixel_loss``).

Data contract (``mmevit.datasets.transforms.PackRestorationInputs``): ``inputs`` are the degraded images as
uint8 (C, H, W) tensors, each data sample a ``BaseDataElement`` holding ``gt_img`` (uint8 (C, H, W)) and the
file/block metainfo. ``RestorationDataPreprocessor`` scales both to [0, 1]; predictions carry ``pred_img``
and ``gt_img`` in the 0-255 range (float, not rounded), which is what ``mmevit.evaluation``'s PSNR/SSIM read.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from ...registry import MODELS


@MODELS.register_module()
class RestorationDataPreprocessor(BaseDataPreprocessor):
    """Stack the degraded inputs and the ground truths as float images in [0, 1].

    Args:
        scale: Divisor of the stored pixel values (255 for 8-bit images).
        mixup: ``dict(alpha=1.2, start_iter=N)``: from training iteration N on, replace the batch by a mixup of
            itself with a shuffled copy, the same weight ``lam ~ Beta(alpha, alpha)`` for an input and its ground
            truth (the Uformer recipe's ``MixUp_AUG``, used from its 6th epoch). ``None``: off.
        non_blocking: Asynchronous host-to-device copies.
    """

    def __init__(self, scale: float = 255., mixup: Optional[dict] = None, non_blocking: bool = False) -> None:
        super().__init__(non_blocking)
        if not scale > 0:
            raise ValueError(f'scale must be > 0, got {scale!r}')
        self.scale = float(scale)
        if mixup is not None:
            unknown = set(mixup) - {'alpha', 'start_iter'}
            if unknown or float(mixup.get('alpha', 1.2)) <= 0:
                raise ValueError(f'mixup takes alpha > 0 and start_iter, got {mixup!r}')
        self.mixup = dict(dict(alpha=1.2, start_iter=0), **mixup) if mixup is not None else None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = self._stack(data['inputs'], 'inputs')
        samples: List[BaseDataElement] = list(data.get('data_samples') or [])
        for s in samples:
            if 'gt_img' in s:
                s.gt_img = s.gt_img.float() / self.scale
        if training:
            if len(samples) != inputs.shape[0] or not all('gt_img' in s for s in samples):
                raise KeyError('training needs a gt_img in every data sample')
            if self._mixup_active():
                gt = torch.stack([s.gt_img for s in samples])
                inputs, gt = self._mix(inputs, gt)
                for s, g in zip(samples, gt):
                    s.gt_img = g
        return dict(inputs=inputs, data_samples=samples or None)

    def _stack(self, images: Union[torch.Tensor, Sequence[torch.Tensor]], what: str) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            batch = images if images.dim() == 4 else images[None]
        else:
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

    def __init__(self, generator: dict, pixel_loss: Optional[dict] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='RestorationDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.generator = MODELS.build(generator) if isinstance(generator, dict) else generator
        self.pixel_loss = MODELS.build(pixel_loss or dict(type='CharbonnierLoss'))
        self.train_cfg = _options('train_cfg', train_cfg, dict(clamp_output=True))
        self.test_cfg = _options('test_cfg', test_cfg, dict(tile=None, tile_overlap=32))
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


def _options(name: str, given: Optional[dict], defaults: dict) -> dict:
    unknown = set(given or {}) - set(defaults)
    if unknown:
        raise KeyError(f'Denoiser {name}: unknown keys {sorted(unknown)} (known: {sorted(defaults)})')
    return dict(defaults, **(given or {}))


def _tile_starts(size: int, tile: int, overlap: int) -> List[int]:
    """Tile origins covering ``size``: stride ``tile - overlap``, the last tile flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]
