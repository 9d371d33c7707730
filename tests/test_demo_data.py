"""The demo-data registry and tools/misc/make_demo_data.py: layouts, reuse, and never touching a user's files."""
import hashlib
import importlib
import importlib.util
import json
import os
import os.path as osp
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import mmevit.datasets
from mmevit.datasets import DEMO_DATA, demo_tasks, make_demo_data, register_demo_data
from mmevit.datasets import demo_data
from mmevit.datasets.demo_ade import CLASSES, sample_paths

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'misc', 'make_demo_data.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('mmevit_make_demo_data', TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


def _digest(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = osp.join(d, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def scratch_task():
    """Register throw-away makers for a test and remove them afterwards."""
    added = []

    def register(name, maker, version=1):
        register_demo_data(name, version)(maker)
        added.append(name)
        return maker

    yield register
    for name in added:
        DEMO_DATA.pop(name, None)
        demo_data._VERSIONS.pop(name, None)


# ----------------------------------------------------------------------------- registry
def test_every_module_of_the_package_is_imported():
    names = [i.name for i in pkgutil.iter_modules(mmevit.datasets.__path__)]
    assert 'demo_ade' in names and 'demo_data' in names
    assert all(f'mmevit.datasets.{n}' in sys.modules for n in names)
    assert 'ade20k' in demo_tasks() and demo_tasks() == sorted(DEMO_DATA)


def test_unknown_task_lists_the_registered_ones(tmp_path):
    with pytest.raises(KeyError, match="no demo data for task 'nope'.*ade20k"):
        make_demo_data('nope', str(tmp_path / 'x'))
    assert not (tmp_path / 'x').exists()


def test_register_checks_the_maker(scratch_task):
    def no_default(out_dir, *, num_train, num_val=1, seed=0):
        return {}

    with pytest.raises(TypeError, match=r"\['num_train'\]"):
        register_demo_data('bad_maker')(no_default)
    assert 'bad_maker' not in DEMO_DATA

    def maker(out_dir, *, num_train=1, num_val=1, seed=0):
        return {}

    scratch_task('scratch_a', maker)
    with pytest.raises(KeyError, match='already registered'):
        register_demo_data('scratch_a')(lambda out_dir, *, num_train=1, num_val=1, seed=0: {})
    assert DEMO_DATA['scratch_a'] is maker


def test_arguments_are_checked(tmp_path):
    assert demo_data.resolve_args('ade20k') == dict(num_train=300, num_val=50, seed=0)
    assert demo_data.resolve_args('ade20k', 4, 2, 7) == dict(num_train=4, num_val=2, seed=7)
    for kwargs, err, msg in ((dict(num_train=0), ValueError, 'num_train must be >= 1'),
                             (dict(num_val=-1), ValueError, 'num_val must be >= 1'),
                             (dict(seed=-1), ValueError, 'seed must be >= 0'),
                             (dict(num_train=2.5), TypeError, 'num_train must be an integer'),
                             (dict(num_val=True), TypeError, 'num_val must be an integer')):
        with pytest.raises(err, match=msg):
            make_demo_data('ade20k', str(tmp_path / 'x'), **kwargs)
    assert not (tmp_path / 'x').exists()


# ----------------------------------------------------------------------------- the CLI on ade20k
def test_cli_makes_ade20k_layout(tmp_path, capsys):
    out = str(tmp_path / 'ade')
    assert tool.main(['ade20k', out, '--num-train', '5', '--num-val', '3', '--seed', '1']) == 0
    assert 'made ade20k demo data' in capsys.readouterr().out
    seen = set()
    for split, n in (('training', 5), ('validation', 3)):
        imgs = sorted(os.listdir(osp.join(out, 'images', split)))
        anns = sorted(os.listdir(osp.join(out, 'annotations', split)))
        assert len(imgs) == len(anns) == n
        assert [osp.splitext(f)[0] for f in imgs] == [osp.splitext(f)[0] for f in anns]
        for i in range(n):
            img_path, ann_path = sample_paths(out, split, i)
            img, ann = Image.open(img_path), Image.open(ann_path)
            assert img.format == 'JPEG' and img.mode == 'RGB' and img.size == (128, 128)
            assert ann.format == 'PNG' and ann.mode == 'L' and ann.size == (128, 128)
            a = np.asarray(ann)
            assert a.dtype == np.uint8 and a.max() <= len(CLASSES)  # 0 = ignored "other", 1..K = classes
            assert (a == 1).mean() > 0.2  # background
            seen |= set(np.unique(a).tolist())
    assert seen >= {1, 2, 3, 4, 5}
    marker = json.load(open(osp.join(out, demo_data.MARKER)))
    assert marker['task'] == 'ade20k' and marker['args'] == dict(num_train=5, num_val=3, seed=1)
    assert marker['meta']['classes'] == list(CLASSES)
    digest = _digest(out)
    assert digest.pop(demo_data.MARKER)
    assert marker['files'] == {k.replace(os.sep, '/'): v for k, v in digest.items()}
    assert len(marker['files']) == 16
    # no temporary folder left beside it, and the folder's mode is that of any new folder (not mkdtemp's 0700)
    assert os.listdir(tmp_path) == ['ade']
    (tmp_path / 'ref').mkdir()
    assert os.stat(out).st_mode & 0o777 == os.stat(tmp_path / 'ref').st_mode & 0o777


def test_output_is_deterministic_and_a_prefix(tmp_path):
    def make(name, n_train, n_val, seed):
        make_demo_data('ade20k', str(tmp_path / name), n_train, n_val, seed)
        d = _digest(str(tmp_path / name))
        d.pop(demo_data.MARKER)
        return d

    a, b, c, d = make('a', 4, 2, 3), make('b', 4, 2, 3), make('c', 4, 2, 4), make('d', 2, 1, 3)
    assert a == b and a != c
    assert all(a[k] == v for k, v in d.items())  # each sample has its own seed


def test_cli_lists_tasks(capsys):
    with pytest.raises(SystemExit) as e:
        tool.parse_args(['--help'])
    assert e.value.code == 0
    assert 'ade20k' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        tool.parse_args(['nope', 'x'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and 'ade20k' in err


# ----------------------------------------------------------------------------- users' files
def test_refuses_a_foreign_non_empty_folder(tmp_path, capsys):
    user = tmp_path / 'mine'
    (user / 'images' / 'training').mkdir(parents=True)
    (user / 'notes.txt').write_text('keep me')
    (user / 'images' / 'training' / 'DEMO_train_00000000.jpg').write_bytes(b'user data')
    before = _digest(str(user))
    for extra in ([], ['--force']):
        assert tool.main(['ade20k', str(user), '--num-train', '1', '--num-val', '1'] + extra) == 2
        assert 'not demo data made by mmevit' in capsys.readouterr().err
        assert _digest(str(user)) == before
    # a file where the folder should be
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(FileExistsError, match='not a folder'):
        make_demo_data('ade20k', str(tmp_path / 'afile'), 1, 1)
    # a marker it did not write
    (user / demo_data.MARKER).write_text('{"format": "something else", "files": {}}')
    with pytest.raises(FileExistsError, match='not written by'):
        make_demo_data('ade20k', str(user), 1, 1, force=True)
    assert (user / 'notes.txt').read_text() == 'keep me'


def test_empty_folder_is_filled(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    marker, made = make_demo_data('ade20k', str(empty), 1, 1)
    assert made and len(marker['files']) == 4 and (empty / demo_data.MARKER).is_file()
    assert sorted(os.listdir(tmp_path)) == ['empty']


def test_reuse_and_replace_own_output(tmp_path):
    out = str(tmp_path / 'ade')
    make_demo_data('ade20k', out, 2, 1)
    before = _digest(out)
    marker, made = make_demo_data('ade20k', out, 2, 1)  # same task and arguments: reused as is
    assert not made and _digest(out) == before
    with pytest.raises(FileExistsError, match=r"made with task 'ade20k'.*--force"):
        make_demo_data('ade20k', out, 3, 1)
    assert _digest(out) == before
    marker, made = make_demo_data('ade20k', out, 3, 1, force=True)
    assert made and marker['args']['num_train'] == 3 and len(marker['files']) == 8
    marker, made = make_demo_data('ade20k', out, 1, 1, force=True)  # fewer: the surplus files go
    assert made and sorted(_digest(out)) == sorted([demo_data.MARKER] + list(marker['files']))

    # Own output with a file a user added, or one a user edited: --force refuses and deletes nothing.
    user_file = osp.join(out, 'images', 'training', 'mine.jpg')
    open(user_file, 'wb').write(b'user')
    with pytest.raises(FileExistsError, match='did not write'):
        make_demo_data('ade20k', out, 1, 1, force=True)
    with pytest.raises(FileExistsError, match='changed or added to'):
        make_demo_data('ade20k', out, 1, 1)
    assert open(user_file, 'rb').read() == b'user'
    os.remove(user_file)
    edited = sample_paths(out, 'validation', 0)[1]
    open(edited, 'ab').write(b'\0')
    before = _digest(out)
    with pytest.raises(FileExistsError, match='DEMO_val_00000000.png'):
        make_demo_data('ade20k', out, 1, 1, force=True)
    assert _digest(out) == before

    # Missing files: reported, and regenerated on request.
    os.remove(edited)
    with pytest.raises(FileExistsError, match='1 of its files are missing'):
        make_demo_data('ade20k', out, 1, 1)
    marker, made = make_demo_data('ade20k', out, 1, 1, force=True)
    assert made and osp.isfile(edited)


def test_a_failing_maker_leaves_nothing(tmp_path, scratch_task):
    def broken(out_dir, *, num_train=1, num_val=1, seed=0):
        open(osp.join(out_dir, 'half.txt'), 'w').write('half')
        raise RuntimeError('maker failed')

    scratch_task('scratch_broken', broken)
    with pytest.raises(RuntimeError, match='maker failed'):
        make_demo_data('scratch_broken', str(tmp_path / 'out'))
    assert os.listdir(tmp_path) == []


@pytest.mark.e2e
def test_cli_as_a_script(tmp_path):
    out = str(tmp_path / 'ade')
    run = subprocess.run([sys.executable, TOOL, 'ade20k', out, '--num-train', '1', '--num-val', '1'],
                         capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert run.returncode == 0, run.stderr
    assert 'made ade20k demo data' in run.stdout
    assert json.load(open(osp.join(out, demo_data.MARKER)))['args'] == dict(num_train=1, num_val=1, seed=0)
