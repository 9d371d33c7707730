"""Checkpoint helpers shared by the model families: read a file or URL safely, unwrap the container,
strip wrapper prefixes, and load into a module reporting missing/unexpected keys by name.

Reading (``read_checkpoint``, ``load_file``, ``load_url``; every mmengine scheme is routed here by
``mmevit.compat``):

- files are unpickled with ``weights_only=True`` (also when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set);
  full unpickling needs the explicit ``mmevit.compat.trust_checkpoints()`` opt-in;
- every error names the file (or URL and cache file) and says what is wrong with it: missing, empty,
  truncated or corrupt, not a torch checkpoint (HTML page, NumPy, safetensors...), or unsafe to unpickle;
- a URL is cached under a hash of the *whole* URL (``<sha256(url)[:16]>_<file name>`` in
  ``<torch hub dir>/checkpoints``), downloaded to a temporary file with a network timeout
  (``MMEVIT_DOWNLOAD_TIMEOUT`` seconds, default 60), checked against its length and, when the file name
  publishes one (torch.hub / OpenMMLab ``name-<sha256 prefix>.pth``), its content hash, and only then moved
  into place. A download that fails any check, or that is refused or unreadable when loaded, is deleted.
"""
import hashlib
import http.client
import os
import os.path as osp
import pickletools
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Any, Dict, Iterable, Mapping, Optional
from urllib.parse import unquote, urlparse

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from .. import compat

StateDict = Dict[str, torch.Tensor]

CONTAINER_KEYS = ('state_dict', 'model', 'state_dict_ema', 'model_ema')

TIMEOUT_ENV = 'MMEVIT_DOWNLOAD_TIMEOUT'
CHECK_HASH_ENV = 'MMEVIT_CHECK_HASH'
DEFAULT_TIMEOUT = 60.0

# torch.save's legacy (non-zip) format starts with this number, pickled.
_LEGACY_MAGIC = b'\x8a\x0a' + (0x1950a86a20f9469cfc6c).to_bytes(10, 'little')
# A published content hash: ``name-<8..64 hex digits>.ext`` (torch.hub and OpenMMLab's publish_model).
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')
_TRUST_HINT = ('Only if you trust it: load it inside mmevit.compat.trust_checkpoints() (tools: '
               '--trust-checkpoint); full unpickling can run arbitrary code from the file.')


class CheckpointReadError(ValueError):
    """A checkpoint file or URL cannot be read; ``str()`` names it and says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f'{source}: {reason}')
        self.source, self.reason = source, reason

    def __reduce__(self):
        return type(self), (self.source, self.reason)


class UnsafeCheckpointError(CheckpointReadError):
    """The file holds objects that only a full (code-executing) unpickling can rebuild."""


class NotAStateDictError(KeyError):
    """A loaded object is not a checkpoint: no tensors, nor a container of them."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ''


# --------------------------------------------------------------------------- local files
def _sniff(path: str, head: bytes, size: int) -> Optional[str]:
    """Why ``path`` is not a torch checkpoint, from its bytes; None when it looks like one."""
    if head.startswith(b'PK\x03\x04'):  # torch.save's zip format
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return (f'truncated or corrupt zip archive ({size} bytes): an interrupted download or copy? '
                    'Fetch the file again')
        if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
            return f'a zip archive without data.pkl, not a torch checkpoint (it holds {names[:5]})'
        if any('/code/' in n or n.endswith('/constants.pkl') for n in names):
            return ('a TorchScript archive (torch.jit.save), not a checkpoint: its weights are '
                    'torch.jit.load(path).state_dict(); save those with torch.save')
        return None
    if head.startswith(b'\x80'):  # a pickle: torch's legacy format starts with its magic number
        if _LEGACY_MAGIC in head[:32]:
            return None
        return 'a plain Python pickle, not a torch.save file'
    if len(head) > 262 and head[257:262] == b'ustar':  # torch < 0.4 tar format: let torch.load try it
        return None
    if head.lstrip().startswith(b'<'):
        return 'an HTML/XML page, not a checkpoint (an error or login page saved in its place?)'
    if head.startswith(b'\x93NUMPY'):
        return 'a NumPy .npy array file, not a torch checkpoint'
    if head.startswith(b'\x1f\x8b'):
        return 'gzip-compressed data, not a torch checkpoint (decompress it first)'
    if len(head) > 9 and head[8:10] in (b'{"', b'{\'') and int.from_bytes(head[:8], 'little') < size:
        return 'a safetensors file, not a torch.save checkpoint (read it with safetensors.torch.load_file)'
    return f'not a torch checkpoint (unrecognised content, first bytes {head[:16]!r})'


def _pickle_intact(path: str) -> bool:
    """Whether the checkpoint's pickles parse to their end (``pickletools``: opcodes only, nothing runs).

    A legacy file cut inside a global's name reads as an "unsupported global" to the weights_only unpickler:
    this tells such truncation from a genuine refusal.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n == 'data.pkl' or n.endswith('/data.pkl'))
                with z.open(name) as f:
                    for _ in pickletools.genops(f):
                        pass
            return True
        with open(path, 'rb') as f:  # legacy: magic number, protocol, sys info, then the object
            for _ in range(4):
                for _ in pickletools.genops(f):
                    pass
        return True
    except Exception:
        return False


def _unpickling_failure(e: BaseException) -> str:
    """The part of torch's weights_only error that names the refused object."""
    lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
    lines = [line for line in lines if not line.startswith('Check the documentation')]
    line = next((line for line in lines if 'global' in line.lower()), lines[0] if lines else type(e).__name__)
    return line.replace('WeightsUnpickler error:', '').split('. Please use')[0].strip()


def load_file(path: str, map_location: Optional[Any] = 'cpu', source: Optional[str] = None) -> Any:
    """``torch.load`` a local checkpoint, ``weights_only=True`` unless inside ``compat.trust_checkpoints()``.

    Args:
        path: the file.
        map_location: as for ``torch.load``.
        source: how to name the file in errors (default: ``path``).

    Raises:
        FileNotFoundError / IsADirectoryError: naming ``path``.
        UnsafeCheckpointError: the file needs full unpickling (the message says how to opt in).
        CheckpointReadError: empty, truncated, corrupt or not a torch checkpoint (the message says which).
    """
    source = source or str(path)
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint file not found: {source}')
    if osp.isdir(path):
        raise IsADirectoryError(f'checkpoint path is a directory, not a file: {source}')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointReadError(source, 'the file is empty (0 bytes)')
    with open(path, 'rb') as f:
        head = f.read(512)
    problem = _sniff(path, head, size)
    if problem:
        raise CheckpointReadError(source, problem)
    trusted = compat.checkpoints_trusted()
    try:
        # weights_only passed explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only overrides an absent argument
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as e:
        text = str(e)
        weights_only_failure = not trusted and 'Weights only load failed' in text
        if weights_only_failure and _pickle_intact(path):
            raise UnsafeCheckpointError(source, 'refused to unpickle with weights_only=True: it holds objects '
                                                f'other than tensors and plain data ({_unpickling_failure(e)}). '
                                                + _TRUST_HINT) from e
        if isinstance(e, EOFError) or weights_only_failure or 'truncated' in text or 'Ran out of input' in text:
            raise CheckpointReadError(source, f'truncated or corrupt checkpoint ({size} bytes): an interrupted '
                                              'download or copy? Fetch the file again') from e
        first = text.strip().splitlines()[0] if text.strip() else ''
        raise CheckpointReadError(source, f'cannot be read as a torch checkpoint ({type(e).__name__}: {first})') from e


# --------------------------------------------------------------------------- URLs
def download_timeout() -> float:
    """Seconds a download may wait for the server (connect or next bytes): ``MMEVIT_DOWNLOAD_TIMEOUT``."""
    value = os.environ.get(TIMEOUT_ENV, '')
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f'{TIMEOUT_ENV}={value!r}: expected a positive number of seconds')
    return seconds


def cache_path(url: str, model_dir: Optional[str] = None, file_name: Optional[str] = None) -> str:
    """Where ``url`` is cached: ``<model_dir>/<sha256(url)[:16]>_<file name>``.

    ``model_dir`` defaults to torch.hub's ``<hub dir>/checkpoints``; the file name to the URL's last path
    part. Two URLs with the same file name never share a cache file.
    """
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    name = file_name or osp.basename(unquote(urlparse(url).path))
    name = re.sub(r'[^A-Za-z0-9._-]', '_', name).lstrip('.')[-100:] or 'checkpoint.pth'
    return osp.join(model_dir, f'{hashlib.sha256(url.encode()).hexdigest()[:16]}_{name}')


def published_hash(url: str, file_name: Optional[str] = None) -> Optional[str]:
    """The sha256 prefix a ``name-<hex>.pth`` file name publishes (all-digit suffixes are dates, not hashes)."""
    match = _HASH_IN_NAME.search(file_name or osp.basename(urlparse(url).path))
    if match and not match.group(1).isdigit():
        return match.group(1)
    return None


def _progress_bar(total: Optional[int], enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, file=sys.stderr)


def _download(url: str, dst: str, timeout: float, progress: bool) -> tuple:
    """Stream ``url`` into ``dst``; returns ``(bytes written, bytes announced or None, sha256 hex)``."""
    req = urllib.request.Request(url, headers={'User-Agent': 'mmevit'})
    digest, written = hashlib.sha256(), 0
    with urllib.request.urlopen(req, timeout=timeout) as response, open(dst, 'wb') as out:
        length = response.headers.get('Content-Length')
        expected = int(length) if length and length.isdigit() else None
        bar = _progress_bar(expected, progress)
        try:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return written, expected, digest.hexdigest()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def download_checkpoint(url: str, model_dir: Optional[str] = None, file_name: Optional[str] = None,
                        progress: bool = False, check_hash: Optional[bool] = None) -> str:
    """Download ``url`` into its cache file (see ``cache_path``) unless it is there; return the path.

    The data goes to a temporary file beside the cache file and is moved into place only when complete
    (length as announced; sha256 as published in the file name unless ``check_hash=False`` or
    ``MMEVIT_CHECK_HASH=0``). Raises ``CheckpointReadError`` naming the URL and the cache file otherwise.
    """
    cached = cache_path(url, model_dir, file_name)
    if osp.isfile(cached):
        return cached
    os.makedirs(osp.dirname(cached), exist_ok=True)
    source = f'{url} (cache file {cached})'
    if check_hash is None:
        check_hash = os.environ.get(CHECK_HASH_ENV, '1').lower() not in ('0', 'false', 'no')
    expected_hash = published_hash(url, file_name) if check_hash else None
    timeout = download_timeout()
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(cached), prefix=f'.{osp.basename(cached)}.', suffix='.partial')
    os.close(fd)
    try:
        try:
            written, expected, sha256 = _download(url, tmp, timeout, progress)
        except urllib.error.HTTPError as e:
            raise CheckpointReadError(source, f'download failed: HTTP {e.code} {e.reason}; nothing cached') from e
        except (socket.timeout, TimeoutError) as e:
            raise CheckpointReadError(source, f'no answer from the server within {timeout:g} s (set '
                                              f'{TIMEOUT_ENV} to wait longer); nothing cached') from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise CheckpointReadError(source, f'no answer from the server within {timeout:g} s (set '
                                                  f'{TIMEOUT_ENV} to wait longer); nothing cached') from e
            raise CheckpointReadError(source, f'download failed: {e.reason}; nothing cached') from e
        except (OSError, http.client.HTTPException) as e:  # connection reset, IncompleteRead, disk full...
            raise CheckpointReadError(source, f'download failed: {type(e).__name__}: {e}; nothing cached') from e
        if expected is not None and written != expected:
            raise CheckpointReadError(source, f'truncated download: got {written} of {expected} bytes; '
                                              'nothing cached')
        if expected_hash and not sha256.startswith(expected_hash):
            raise CheckpointReadError(source, f'content sha256 {sha256[:len(expected_hash)]}... does not match '
                                              f'the {expected_hash} its file name publishes; nothing cached '
                                              f'(if that suffix is no hash, set {CHECK_HASH_ENV}=0)')
        os.replace(tmp, cached)
    finally:
        _remove(tmp)
    return cached


def load_url(url: str, model_dir: Optional[str] = None, map_location: Optional[Any] = 'cpu',
             progress: bool = False, check_hash: Optional[bool] = None, file_name: Optional[str] = None) -> Any:
    """Download (see ``download_checkpoint``) and ``load_file`` a checkpoint URL.

    A cached or downloaded file that is refused or cannot be read is deleted, and the error names the URL and
    the cache file: the cache only keeps files that loaded.
    """
    cached = download_checkpoint(url, model_dir, file_name, progress, check_hash)
    try:
        return load_file(cached, map_location)
    except CheckpointReadError as e:
        _remove(cached)
        raise type(e)(f'{url} (cache file {cached}, now deleted)', e.reason) from e


# --------------------------------------------------------------------------- any source
def read_checkpoint(filename: str, map_location: str = 'cpu') -> dict:
    """Read a checkpoint from a path, URL or mmengine scheme (``open-mmlab://``, ``torchvision://``...).

    Goes through mmengine's ``CheckpointLoader``, whose every scheme ``mmevit.compat`` routes to
    ``load_file`` / ``load_url`` above. A missing local file raises ``FileNotFoundError`` naming it;
    unreadable or unsafe files raise ``CheckpointReadError`` / ``UnsafeCheckpointError``.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if '://' not in filename:
        filename = osp.expanduser(filename)
        if not osp.exists(filename):
            raise FileNotFoundError(f'checkpoint file not found: {filename}')
    return CheckpointLoader.load_checkpoint(filename, map_location=map_location)


def unwrap_state_dict(checkpoint: Mapping) -> StateDict:
    """Return the tensor dict inside a training checkpoint (``state_dict``/``model``/``state_dict_ema``).

    Raises ``NotAStateDictError`` (a ``KeyError``) saying what the object is when it is not a checkpoint.
    """
    if not isinstance(checkpoint, Mapping):
        raise NotAStateDictError(f'not a checkpoint: a {type(checkpoint).__name__}, expected a dict of tensors '
                                 f'or a container with one of {CONTAINER_KEYS}')
    for key in CONTAINER_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    if not checkpoint:
        raise NotAStateDictError('not a checkpoint: an empty dict (no tensors)')
    others = sorted(f'{k} ({type(v).__name__})' for k, v in checkpoint.items() if not isinstance(v, torch.Tensor))
    if others:
        raise NotAStateDictError(f'not a checkpoint: expected tensors or one of {CONTAINER_KEYS}, got '
                                 f'{len(others)} non-tensor entries: {", ".join(others[:8])}')
    return dict(checkpoint)


def strip_prefixes(state_dict: StateDict, prefixes: Iterable[str] = ('module.',)) -> StateDict:
    """Remove wrapper prefixes (DDP ``module.``, a toolbox's ``backbone.``) from every key that has them."""
    out = {}
    for k, v in state_dict.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def select_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep only the keys under ``prefix`` (e.g. ``backbone.`` of a whole mmseg model), prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_report(module: nn.Module, state_dict: StateDict, strict: bool = False,
                logger: Optional[MMLogger] = None, source: str = 'checkpoint') -> nn.modules.module._IncompatibleKeys:
    """``load_state_dict`` that names what did not match; shapes are checked first with a clear error."""
    own = module.state_dict()
    bad = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in state_dict.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f'shape mismatch loading {source} into {type(module).__name__}:\n  ' + '\n  '.join(bad))
    result = module.load_state_dict(state_dict, strict=strict)
    logger = logger or MMLogger.get_current_instance()
    if result.missing_keys:
        print_log(f'{source}: missing keys (left at their init): {result.missing_keys}', logger=logger,
                  level=30)
    if result.unexpected_keys:
        print_log(f'{source}: unexpected keys (ignored): {result.unexpected_keys}', logger=logger, level=30)
    if not result.missing_keys and not result.unexpected_keys:
        print_log(f'{source}: all {len(state_dict)} keys loaded', logger=logger)
    return result
