"""SIDD (Smartphone Image Denoising Dataset, Abdelhamed et al., CVPR 2018) in the layouts the Uformer recipe
uses, as mmengine datasets in mmevit's ``DATASETS``.

- Training: patch pairs cut from SIDD-Medium sRGB by ``tools/dataset_converters/sidd_crops.py`` into
  ``<root>/input/*.png`` (noisy) and ``<root>/groundtruth/*.png`` (clean), same file names:
  ``PairedImageDataset``. The same class reads any folder pair (e.g. a validation set saved as PNGs).
- Validation: the 1280 official 256x256 blocks (40 images x 32 blocks) in ``ValidationNoisyBlocksSrgb.mat``
  and ``ValidationGtBlocksSrgb.mat`` (MATLAB files read with ``scipy.io.loadmat``): ``SIDDValidationBlocks``.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from ..registry import DATASETS, TRANSFORMS
from .file_io import UnreadableFileError

IMG_EXTENSIONS = ('.png', '.PNG', '.jpg', '.jpeg', '.JPG', '.bmp', '.tif', '.tiff')


def build_pipeline(pipeline: Sequence) -> list:
    """Transform configs built from mmevit's ``TRANSFORMS`` (which falls back to mmengine's), so that the
    datasets work outside a Runner with ``default_scope='mmevit'`` too."""
    return [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]


@DATASETS.register_module()
class PairedImageDataset(BaseDataset):
    """Degraded / ground-truth image pairs stored in two folders under the same file names.

    Args:
        data_root: Dataset folder.
        data_prefix: ``dict(img=<degraded folder>, gt=<ground-truth folder>)`` relative to ``data_root``
            (default the Uformer/MPRNet layout ``input`` / ``groundtruth``).
        pipeline: Transforms (e.g. ``LoadImagePair``, ``PairedRandomCrop``, ``RandomDihedral``,
            ``PackRestorationInputs``).
        extensions: Image file extensions to list.
        **kwargs: ``mmengine.dataset.BaseDataset`` options.
    """

    METAINFO = dict(task='image restoration')

    def __init__(self, data_root: str, data_prefix: Optional[dict] = None, pipeline: Sequence = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs) -> None:
        self.extensions = tuple(extensions)
        super().__init__(data_root=data_root, data_prefix=data_prefix or dict(img='input', gt='groundtruth'),
                         pipeline=build_pipeline(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        dirs = {k: self.data_prefix.get(k) for k in ('img', 'gt')}
        for key, folder in dirs.items():
            if not folder or not osp.isdir(folder):
                raise FileNotFoundError(f'{type(self).__name__}: {key} folder {folder!r} not found '
                                        f'(data_root={self.data_root!r}, data_prefix={self.data_prefix!r})')
        names = {k: sorted(f for f in os.listdir(d) if f.endswith(self.extensions)) for k, d in dirs.items()}
        if names['img'] != names['gt']:
            only_img = sorted(set(names['img']) - set(names['gt']))
            only_gt = sorted(set(names['gt']) - set(names['img']))
            raise ValueError(f'{type(self).__name__}: the folders do not pair up: {len(only_img)} file(s) only in '
                             f'{dirs["img"]} (e.g. {only_img[:3]}), {len(only_gt)} only in {dirs["gt"]} '
                             f'(e.g. {only_gt[:3]})')
        if not names['img']:
            raise FileNotFoundError(f'{type(self).__name__}: no {"/".join(self.extensions)} images in {dirs["img"]}')
        return [dict(img_path=osp.join(dirs['img'], n), gt_path=osp.join(dirs['gt'], n)) for n in names['img']]


@DATASETS.register_module()
class SIDDValidationBlocks(BaseDataset):
    """The SIDD sRGB validation blocks from the two official MATLAB files.

    Each file holds one uint8 array (images, blocks, H, W, 3) (40 x 32 x 256 x 256 x 3 for SIDD); each
    block is one sample with ``img`` (noisy) and ``gt`` arrays already in memory (the pipeline needs no
    loading: ``PackRestorationInputs`` alone) and ``block = (image, block)`` indices.

    Args:
        data_root: Folder of the two files.
        noisy_file / gt_file: File names.
        noisy_key / gt_key: Variable names inside the files (default: the file's only array, e.g.
            ``ValidationNoisyBlocksSrgb``).
        pipeline: Transforms.
        **kwargs: ``BaseDataset`` options (``serialize_data`` defaults to False here: the blocks are views of
            two arrays loaded once).
    """

    METAINFO = dict(task='image restoration')

    def __init__(self, data_root: str, noisy_file: str = 'ValidationNoisyBlocksSrgb.mat',
                 gt_file: str = 'ValidationGtBlocksSrgb.mat', noisy_key: Optional[str] = None,
                 gt_key: Optional[str] = None, pipeline: Sequence = (), **kwargs) -> None:
        self.files = dict(img=(noisy_file, noisy_key), gt=(gt_file, gt_key))
        kwargs.setdefault('serialize_data', False)
        super().__init__(data_root=data_root, pipeline=build_pipeline(pipeline), **kwargs)

    def _read(self, file: str, key: Optional[str]) -> np.ndarray:
        from scipy.io import loadmat
        path = osp.join(self.data_root, file)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{type(self).__name__}: {path} not found')
        try:
            content = {k: v for k, v in loadmat(path).items() if not k.startswith('__')}
        except Exception as e:  # scipy says what is wrong, not with which file
            raise UnreadableFileError(f'{type(self).__name__}: cannot read {path} ({osp.getsize(path)} bytes) as a '
                                      f'MATLAB file: truncated or corrupt? ({type(e).__name__}: {e})') from e
        if key is None:
            if len(content) != 1:
                raise KeyError(f'{path} holds {sorted(content)}: pass the variable name (noisy_key/gt_key)')
            key = next(iter(content))
        if key not in content:
            raise KeyError(f'{path} has no variable {key!r} (it has {sorted(content)})')
        arr = content[key]
        if arr.ndim != 5 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f'{path}:{key} must be uint8 (images, blocks, H, W, 3), got {arr.dtype} {arr.shape}')
        return arr

    def load_data_list(self) -> List[dict]:
        noisy, gt = (self._read(*self.files[k]) for k in ('img', 'gt'))
        if noisy.shape != gt.shape:
            raise ValueError(f'noisy blocks {noisy.shape} and ground truth {gt.shape} differ in shape')
        return [dict(img=noisy[i, j], gt=gt[i, j], block=(i, j), ori_shape=noisy.shape[2:4])
                for i in range(noisy.shape[0]) for j in range(noisy.shape[1])]
