"""Evaluation metrics (mmengine ``BaseMetric`` subclasses in mmevit's ``METRICS``). Every module of this
package is imported here, so a new metric adds its file alone."""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')

from .psnr_ssim import PSNR, SSIM, psnr, ssim  # noqa: E402

__all__ = ['PSNR', 'SSIM', 'psnr', 'ssim']
