"""Bad image batches every backbone / image denoiser must refuse with a named error (shared by the family tests)."""
import numpy as np
import pytest
import torch


def bad_image_batches(size: int = 32) -> list:
    """``(input, error type, message pattern)`` for a 3-channel float32 model."""
    return [
        (np.zeros((1, 3, size, size), np.float32), TypeError, 'torch.Tensor'),
        (torch.zeros(3, size, size), ValueError, '3-d tensor'),
        (torch.zeros(1, 2, 3, size, size), ValueError, '5-d tensor'),
        (torch.zeros(1, 4, size, size), ValueError, 'expected 3 input channels, got 4'),
        (torch.zeros(1, size, size, 3), ValueError, 'channels last'),
        (torch.zeros(1, 3, 0, 0), ValueError, 'smaller than'),
        (torch.zeros(1, 3, size, size, dtype=torch.uint8), TypeError, 'floating-point'),
        (torch.zeros(1, 3, size, size, dtype=torch.int64), TypeError, 'floating-point'),
        (torch.zeros(1, 3, size, size, dtype=torch.float16), TypeError, 'torch.autocast'),
        (torch.zeros(1, 3, size, size, dtype=torch.bfloat16), TypeError, 'torch.autocast'),
        (torch.zeros(1, 3, size, size, dtype=torch.float64), TypeError, 'does not match'),
    ]


def assert_bad_batches_refused(model, size: int = 32) -> None:
    with torch.no_grad():
        for x, err, match in bad_image_batches(size):
            with pytest.raises(err, match=match):
                model(x)
