"""Reading checkpoints safely (mmevit.models.checkpoint): clear errors naming the file, weights_only
unpickling, and a URL cache keyed by the whole URL that never keeps a refused, partial or mismatched download.

URL tests serve files from an http.server on 127.0.0.1 (a thread, shut down by the fixture or, at the latest,
by a watchdog after 60 s) and point torch.hub's directory at ``tmp_path``."""
import contextlib
import hashlib
import io
import json
import os
import pickle
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import mmevit  # noqa: F401  (applies the shims)
from mmevit import compat
from mmevit.models.checkpoint import (CheckpointReadError, NotAStateDictError, UnsafeCheckpointError, cache_path,
                                      published_hash, read_checkpoint, unwrap_state_dict)


class _Payload:
    """Unpickling it creates the directory ``marker``: proof that the file's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _bytes(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def _weights(value: float) -> bytes:
    return _bytes({'state_dict': {'w': torch.full((3,), value)}})


# --------------------------------------------------------------------------- local files
def _zip(*names: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        for name in names:
            z.writestr(name, 'x')
    return buf.getvalue()


_GOOD = _weights(1.0)
_LEGACY = _bytes({'w': torch.ones(2)}, _use_new_zipfile_serialization=False)
BAD_FILES = {  # name: (content, what the error must say)
    'empty.pth': (b'', 'empty'),
    'truncated.pth': (_GOOD[:len(_GOOD) // 2], 'truncated or corrupt zip'),
    'truncated_legacy.pth': (_LEGACY[:len(_LEGACY) // 2], 'truncated or corrupt checkpoint'),
    'cut_legacy.pth': (_LEGACY[:60], 'truncated or corrupt checkpoint'),
    'notes.pth': (b'hello, this is not a checkpoint\n' * 8, 'not a torch checkpoint'),
    'random.pth': (bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)), 'not a torch checkpoint'),
    'page.pth': (b'<!DOCTYPE html><html><body>Sign in</body></html>', 'HTML'),
    'plain.pkl': (pickle.dumps({'w': [1, 2]}), 'plain Python pickle'),
    'other.zip': (_zip('archive/notes.txt'), 'without data.pkl'),
    'scripted.pt': (_zip('m/data.pkl', 'm/code/__torch__/m.py', 'm/constants.pkl'), 'TorchScript archive'),
    'array.npy': (b'\x93NUMPY\x01\x00' + b' ' * 40, 'NumPy'),
    'weights.safetensors': (len(b'{"a":{}}').to_bytes(8, 'little') + b'{"a":{}}', 'safetensors'),
}


@pytest.mark.parametrize('name', sorted(BAD_FILES))
def test_unreadable_files_are_named_with_the_problem(tmp_path, name):
    content, problem = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    for read in (read_checkpoint, compat.torch_load):  # mmengine's local scheme and the direct helper
        with pytest.raises(CheckpointReadError) as info:
            read(str(path))
        assert str(path) in str(info.value) and problem in str(info.value), str(info.value)
    with compat.trust_checkpoints(), pytest.raises(CheckpointReadError, match=problem):
        read_checkpoint(str(path))  # trusting a file does not make garbage readable


def test_missing_and_directory_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        read_checkpoint(str(tmp_path / 'nothing.pth'))
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        compat.torch_load(tmp_path / 'nothing.pth')
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        read_checkpoint(str(tmp_path))


def test_zip_and_legacy_checkpoints_load(tmp_path):
    (tmp_path / 'zip.pth').write_bytes(_GOOD)
    (tmp_path / 'legacy.pth').write_bytes(_LEGACY)
    torch.testing.assert_close(read_checkpoint(str(tmp_path / 'zip.pth'))['state_dict']['w'], torch.ones(3))
    torch.testing.assert_close(read_checkpoint(str(tmp_path / 'legacy.pth'))['w'], torch.ones(2))


@pytest.mark.parametrize('legacy', [False, True])
def test_payload_refused_even_when_torch_is_told_to_unpickle_fully(tmp_path, monkeypatch, legacy):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    path.write_bytes(_bytes({'x': _Payload(marker)}, _use_new_zipfile_serialization=not legacy))
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(str(path))
    msg = str(info.value)
    assert str(path) in msg and 'trust_checkpoints' in msg and '--trust-checkpoint' in msg
    assert 'arbitrary code' in msg and 'mkdir' in msg  # names the refused object
    assert not marker.exists()
    with compat.trust_checkpoints():  # the explicit opt-in does unpickle it
        read_checkpoint(str(path))
    assert marker.is_dir()


def test_unwrap_state_dict_says_what_is_not_a_checkpoint():
    w = torch.ones(2)
    assert unwrap_state_dict({'state_dict': {'a': w}, 'meta': {}}) == {'a': w}
    assert unwrap_state_dict({'a': w}) == {'a': w}
    with pytest.raises(NotAStateDictError, match='not a checkpoint: a Tensor'):
        unwrap_state_dict(w)
    with pytest.raises(KeyError, match='not a checkpoint: a list'):  # callers catch KeyError
        unwrap_state_dict([w])
    with pytest.raises(NotAStateDictError, match='empty dict'):
        unwrap_state_dict({})
    with pytest.raises(NotAStateDictError, match=r'2 non-tensor entries: epoch \(int\), meta \(dict\)'):
        unwrap_state_dict({'a': w, 'meta': {}, 'epoch': 3})


# --------------------------------------------------------------------------- URLs
@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.delenv('MMEVIT_DOWNLOAD_TIMEOUT', raising=False)
    monkeypatch.delenv('MMEVIT_CHECK_HASH', raising=False)
    return tmp_path / 'hub' / 'checkpoints'


def _cached_files(hub_dir) -> list:
    return sorted(os.listdir(hub_dir)) if hub_dir.is_dir() else []


@pytest.fixture
def server():
    """``routes[path] = (body, mode)``; mode: 'full', 'short' (announces the whole length, sends half) or
    'unsized' (no Content-Length, sends half). ``hits`` lists the paths requested."""
    routes, hits = {}, []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.0'  # one request per connection, closed after the body

        def do_GET(self):
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, mode = routes[self.path]
            self.send_response(200)
            if mode != 'unsized':
                self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body if mode == 'full' else body[:len(body) // 2])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)  # never outlives a stuck test
    watchdog.daemon = True
    watchdog.start()
    try:
        yield SimpleNamespace(url=f'http://127.0.0.1:{httpd.server_address[1]}', routes=routes, hits=hits)
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_urls_with_the_same_file_name_keep_their_own_weights(server, hub_dir):
    server.routes['/a/w.pth'] = (_weights(1.0), 'full')
    server.routes['/b/w.pth'] = (_weights(2.0), 'full')
    a, b = server.url + '/a/w.pth', server.url + '/b/w.pth'
    torch.testing.assert_close(read_checkpoint(a)['state_dict']['w'], torch.full((3,), 1.0))
    torch.testing.assert_close(read_checkpoint(b)['state_dict']['w'], torch.full((3,), 2.0))
    assert server.hits == ['/a/w.pth', '/b/w.pth']
    torch.testing.assert_close(read_checkpoint(a)['state_dict']['w'], torch.full((3,), 1.0))
    assert server.hits == ['/a/w.pth', '/b/w.pth']  # served from the cache
    assert cache_path(a) != cache_path(b)
    assert _cached_files(hub_dir) == sorted(os.path.basename(cache_path(u)) for u in (a, b))


def test_refused_download_is_not_cached_and_never_runs_later(server, hub_dir, tmp_path):
    marker = tmp_path / 'ran'
    server.routes['/a/y.pth'] = (_bytes({'x': _Payload(marker)}), 'full')
    server.routes['/b/y.pth'] = (_weights(3.0), 'full')
    evil, good = server.url + '/a/y.pth', server.url + '/b/y.pth'
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(evil)
    msg = str(info.value)
    assert evil in msg and cache_path(evil) in msg and 'now deleted' in msg and 'trust_checkpoints' in msg
    assert _cached_files(hub_dir) == [] and not marker.exists()
    with compat.trust_checkpoints():  # a trusted load of another URL with the same file name
        torch.testing.assert_close(read_checkpoint(good)['state_dict']['w'], torch.full((3,), 3.0))
    assert not marker.exists()
    assert server.hits == ['/a/y.pth', '/b/y.pth']
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(evil)  # asked again: downloaded again and refused again
    assert server.hits[-1] == '/a/y.pth' and not marker.exists()


def test_truncated_download_is_not_cached_and_named(server, hub_dir):
    url = server.url + '/t/y.pth'
    server.routes['/t/y.pth'] = (_weights(4.0), 'short')
    with pytest.raises(CheckpointReadError) as info:
        read_checkpoint(url)
    msg = str(info.value)
    assert url in msg and cache_path(url) in msg and 'truncated download' in msg and 'nothing cached' in msg
    assert _cached_files(hub_dir) == []  # neither the cache file nor the temporary download
    server.routes['/t/y.pth'] = (_weights(4.0), 'full')  # the server recovers: the next load downloads again
    torch.testing.assert_close(read_checkpoint(url)['state_dict']['w'], torch.full((3,), 4.0))


def test_truncated_download_without_length_is_deleted(server, hub_dir):
    url = server.url + '/u/y.pth'
    server.routes['/u/y.pth'] = (_weights(5.0), 'unsized')
    with pytest.raises(CheckpointReadError) as info:
        read_checkpoint(url)
    msg = str(info.value)
    assert url in msg and cache_path(url) in msg and 'truncated or corrupt zip' in msg and 'now deleted' in msg
    assert _cached_files(hub_dir) == []


def test_http_error_names_the_url(server, hub_dir):
    url = server.url + '/missing/y.pth'
    with pytest.raises(CheckpointReadError, match=rf'{url} .*HTTP 404'):
        read_checkpoint(url)
    assert _cached_files(hub_dir) == []


def test_published_content_hash_is_checked(server, hub_dir, monkeypatch):
    body = _weights(6.0)
    sha = hashlib.sha256(body).hexdigest()
    wrong = 'abcdef01' if not sha.startswith('abcdef01') else 'abcdef02'
    server.routes[f'/h/good-{sha[:8]}.pth'] = (body, 'full')
    server.routes[f'/h/bad-{wrong}.pth'] = (body, 'full')
    torch.testing.assert_close(read_checkpoint(f'{server.url}/h/good-{sha[:8]}.pth')['state_dict']['w'],
                               torch.full((3,), 6.0))
    bad = f'{server.url}/h/bad-{wrong}.pth'
    with pytest.raises(CheckpointReadError, match=f'{sha[:8]}.* does not match the {wrong}') as info:
        read_checkpoint(bad)
    assert bad in str(info.value) and cache_path(bad) in str(info.value)
    assert _cached_files(hub_dir) == [os.path.basename(cache_path(f'{server.url}/h/good-{sha[:8]}.pth'))]
    monkeypatch.setenv('MMEVIT_CHECK_HASH', '0')  # the escape hatch the message names
    torch.testing.assert_close(read_checkpoint(bad)['state_dict']['w'], torch.full((3,), 6.0))


def test_published_hash_convention():
    assert published_hash('https://h/resnet18-f37072fd.pth') == 'f37072fd'
    assert published_hash('https://h/upernet_20200605_094827-6a9b0a3a.pth') == '6a9b0a3a'
    assert published_hash('https://h/model-20230101.pth') is None  # a date, not a hash
    assert published_hash('https://h/model-abc.pth') is None  # too short to be a hash prefix
    assert published_hash('https://h/model.pth') is None


def test_silent_server_times_out(hub_dir, monkeypatch):
    """A server that accepts the connection and never answers: error within the timeout, naming it."""
    monkeypatch.setenv('MMEVIT_DOWNLOAD_TIMEOUT', '0.5')
    errors = []

    def read(url):
        try:
            read_checkpoint(url)
        except Exception as e:
            errors.append(e)

    with contextlib.closing(socket.socket()) as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
        url = f'http://127.0.0.1:{silent.getsockname()[1]}/slow/y.pth'
        reader = threading.Thread(target=read, args=(url,), daemon=True)  # a hang fails the test, not the run
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), 'the download still waits for a server that never answers'
    assert len(errors) == 1 and isinstance(errors[0], CheckpointReadError), errors
    msg = str(errors[0])
    assert url in msg and 'within 0.5 s' in msg and 'MMEVIT_DOWNLOAD_TIMEOUT' in msg
    assert _cached_files(hub_dir) == []


@pytest.mark.parametrize('value', ['0', '-3', 'soon'])
def test_bad_timeout_setting_is_named(hub_dir, monkeypatch, value):
    monkeypatch.setenv('MMEVIT_DOWNLOAD_TIMEOUT', value)
    with pytest.raises(ValueError, match=f"MMEVIT_DOWNLOAD_TIMEOUT='{value}'"):
        read_checkpoint('http://127.0.0.1:9/never/y.pth')


def test_name_schemes_resolve_to_the_safe_url_loader(server, hub_dir, tmp_path, monkeypatch):
    """torchvision://, mmcls:// and open-mmlab:// (URL entry) names go through the same cache and checks."""
    from mmengine.runner import checkpoint as ckpt
    marker = tmp_path / 'ran'
    server.routes['/tv/r.pth'] = (_weights(7.0), 'full')
    server.routes['/tv/evil.pth'] = (_bytes({'x': _Payload(marker)}), 'full')
    server.routes['/cls/r.pth'] = (_bytes({'state_dict': {'backbone.w': torch.ones(1), 'head.b': torch.ones(1)}}),
                                   'full')
    server.routes['/omm/r.pth'] = (_weights(8.0), 'full')
    monkeypatch.setattr(ckpt, 'get_torchvision_models', lambda: {
        'tiny': server.url + '/tv/r.pth', 'evil': server.url + '/tv/evil.pth'})
    monkeypatch.setattr(ckpt, 'get_mmcls_models', lambda: {'tiny': server.url + '/cls/r.pth'})
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(json.dumps({'tiny_url': server.url + '/omm/r.pth'}))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    torch.testing.assert_close(read_checkpoint('torchvision://tiny')['state_dict']['w'], torch.full((3,), 7.0))
    assert set(read_checkpoint('mmcls://tiny')['state_dict']) == {'w'}  # mmengine's mmcls key processing kept
    torch.testing.assert_close(read_checkpoint('open-mmlab://tiny_url')['state_dict']['w'], torch.full((3,), 8.0))
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        read_checkpoint('torchvision://evil')
    assert not marker.exists()
    with pytest.raises(CheckpointReadError, match=r"torchvision://nope: no model 'nope'"):
        read_checkpoint('torchvision://nope')
    assert len(_cached_files(hub_dir)) == 3


def test_mmengine_load_checkpoint_uses_the_safe_loader(server, hub_dir):
    """What Runner(load_from=URL) and init_cfg=dict(type='Pretrained') call."""
    from mmengine.runner import load_checkpoint
    server.routes['/m/lin.pth'] = (_bytes({'state_dict': {'weight': torch.full((1, 2), 9.0),
                                                          'bias': torch.zeros(1)}}), 'full')
    model, url = torch.nn.Linear(2, 1), server.url + '/m/lin.pth'
    load_checkpoint(model, url, map_location='cpu', strict=True)
    torch.testing.assert_close(model.weight.data, torch.full((1, 2), 9.0))
    assert _cached_files(hub_dir) == [os.path.basename(cache_path(url))]  # not torch.hub's cache by file name
