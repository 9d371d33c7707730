"""Reading data files with errors that name the file: a missing file raises ``FileNotFoundError`` with its path
(mmengine's file backends do), an undecodable one ``UnreadableFileError`` with its path and size.

Without this, mmcv's ``imread(path, channel_order='rgb')`` on a truncated or garbage file fails inside OpenCV's
colour conversion (``cv2.error: (-215:Assertion failed) !_src.empty() in function 'cvtColor'``) and PIL with
``OSError: image file is truncated``: neither says which file.
"""
from typing import Any

import mmcv
import numpy as np
from mmengine import fileio


class UnreadableFileError(OSError):
    """A data file exists but cannot be decoded (truncated, corrupt, not an image); the message names it."""


def decode_image(data: bytes, path: str, who: str, **kwargs: Any) -> np.ndarray:
    """``mmcv.imfrombytes(data, **kwargs)``; ``UnreadableFileError`` naming ``path`` where decoding fails."""
    try:
        img = mmcv.imfrombytes(data, **kwargs)
    except Exception as e:
        lines = str(e).strip().splitlines()
        detail = f' ({type(e).__name__}: {lines[-1] if lines else ""})'
        raise UnreadableFileError(f'{who}: cannot decode {path} ({len(data)} bytes): truncated, corrupt or not an '
                                  f'image{detail}') from e
    if img is None:
        raise UnreadableFileError(f'{who}: cannot decode {path} ({len(data)} bytes): truncated, corrupt or not an '
                                  'image')
    return img


def read_image(path: str, who: str, backend_args: Any = None, **kwargs: Any) -> np.ndarray:
    """Read and decode the image at ``path`` (``mmcv.imfrombytes`` options in ``kwargs``)."""
    return decode_image(fileio.get(path, backend_args=backend_args), path, who, **kwargs)
