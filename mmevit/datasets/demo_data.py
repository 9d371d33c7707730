"""Demo datasets made on the spot, in the real layout of the dataset each one stands in for.

Nothing can be downloaded where the demos and tests run, so each task has a *maker*: a function
``maker(out_dir, *, num_train=..., num_val=..., seed=...) -> dict`` that writes the task's demo dataset into
the empty folder ``out_dir`` and returns its metadata (classes, palette, ...). A maker registers itself with
``@register_demo_data('<task>')`` in its own module of ``mmevit.datasets``, which imports all its modules: a
new task adds a file and edits no list. ``make_demo_data`` (and ``tools/misc/make_demo_data.py``) runs them:

- The data are written into a temporary sibling folder and moved into ``out_dir`` when complete, so a failed
  run leaves nothing behind. The last file moved is the marker ``mmevit_demo.json``: task, arguments, maker
  version, metadata and the SHA-256 of every file written.
- A folder holding a marker is the generator's own output. Any other non-empty folder belongs to the user and
  is never written to.
- Own output made with the same task, arguments and maker version is reused as it is. Anything else is
  replaced only on request (``force=True``), and only when every file in the folder is one the marker lists,
  unchanged: a file the user added or edited stops it, named in the error. Only listed files are deleted.
"""
import hashlib
import inspect
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

MARKER = 'mmevit_demo.json'
MARKER_FORMAT = 'mmevit-demo-data'
ARG_NAMES = ('num_train', 'num_val', 'seed')

# task -> maker; filled by @register_demo_data
DEMO_DATA: Dict[str, Callable[..., dict]] = {}
_VERSIONS: Dict[str, int] = {}


def register_demo_data(task: str, version: int = 1) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Decorator registering ``maker`` as the demo-data maker of ``task``.

    The maker takes ``out_dir`` and the keyword arguments ``num_train``, ``num_val`` and ``seed``, each with
    its default. Bump ``version`` whenever the maker's output changes, so that older output is not reused.
    """

    def decorate(maker: Callable[..., dict]) -> Callable[..., dict]:
        if task in DEMO_DATA and DEMO_DATA[task] is not maker:
            raise KeyError(f'demo data for task {task!r} is already registered by {DEMO_DATA[task].__module__}')
        params = inspect.signature(maker).parameters
        missing = [n for n in ARG_NAMES if n not in params or params[n].default is inspect.Parameter.empty]
        if missing:
            raise TypeError(f'demo-data maker {maker.__qualname__} for {task!r} needs keyword arguments '
                            f'with defaults for {missing}')
        DEMO_DATA[task] = maker
        _VERSIONS[task] = int(version)
        return maker

    return decorate


def demo_tasks() -> List[str]:
    return sorted(DEMO_DATA)


def get_maker(task: str) -> Callable[..., dict]:
    if task not in DEMO_DATA:
        raise KeyError(f'no demo data for task {task!r}; registered tasks: {", ".join(demo_tasks()) or "none"}')
    return DEMO_DATA[task]


def resolve_args(task: str, num_train: Optional[int] = None, num_val: Optional[int] = None,
                 seed: Optional[int] = None) -> Dict[str, int]:
    """The maker's arguments, ``None`` replaced by its defaults, checked (counts >= 1, seed >= 0)."""
    params = inspect.signature(get_maker(task)).parameters
    given = dict(num_train=num_train, num_val=num_val, seed=seed)
    args = {}
    for name in ARG_NAMES:
        value = params[name].default if given[name] is None else given[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f'{name} must be an integer, got {value!r}')
        if value < (0 if name == 'seed' else 1):
            raise ValueError(f'{name} must be >= {0 if name == "seed" else 1}, got {value}')
        args[name] = int(value)
    return args


# ----------------------------------------------------------------------------- the marker
def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _tree(root: str) -> List[str]:
    """Every non-directory entry under ``root`` (relative, '/'-separated), the marker excluded."""
    out = []
    for d, dirs, files in os.walk(root):
        # symlinks to folders are listed, not followed
        entries = files + [x for x in dirs if osp.islink(osp.join(d, x))]
        out.extend(osp.relpath(osp.join(d, f), root).replace(os.sep, '/') for f in entries)
    return sorted(p for p in out if p != MARKER)


def read_marker(out_dir: str) -> Optional[dict]:
    """The marker of the generator's own output in ``out_dir``, or None when there is none."""
    path = osp.join(out_dir, MARKER)
    if not osp.lexists(path):
        return None
    try:
        with open(path) as f:
            marker = json.load(f)
    except (OSError, ValueError) as e:
        raise FileExistsError(f'{path} is not a readable mmevit demo-data marker ({e}): not touching '
                              f'{out_dir}') from e
    if not isinstance(marker, dict) or marker.get('format') != MARKER_FORMAT or \
            not isinstance(marker.get('files'), dict):
        raise FileExistsError(f'{path} was not written by mmevit\'s demo-data generator: not touching {out_dir}')
    return marker


def audit(out_dir: str, marker: dict) -> Tuple[List[str], List[str], List[str]]:
    """``(changed, extra, missing)``: listed files whose content differs, files the marker does not list
    (someone else's), and listed files that are gone."""
    listed = marker['files']
    present = _tree(out_dir)
    extra = [p for p in present if p not in listed]
    changed = [p for p in present if p in listed and
               (osp.islink(osp.join(out_dir, p)) or _sha256(osp.join(out_dir, p)) != listed[p])]
    missing = sorted(set(listed) - set(present))
    return changed, extra, missing


def _remove_own(out_dir: str, marker: dict) -> None:
    """Delete the files the marker lists (already audited as unchanged), the folders they leave empty, and
    the marker last."""
    folders = set()
    for rel in marker['files']:
        path = osp.join(out_dir, rel)
        if osp.isfile(path) and not osp.islink(path):
            os.remove(path)
        parts = rel.split('/')[:-1]
        folders.update('/'.join(parts[:i]) for i in range(1, len(parts) + 1))
    for rel in sorted(folders, key=lambda p: -p.count('/')):
        path = osp.join(out_dir, rel)
        if osp.isdir(path) and not osp.islink(path) and not os.listdir(path):
            os.rmdir(path)
    os.remove(osp.join(out_dir, MARKER))


def _describe(files: List[str], limit: int = 5) -> str:
    return ', '.join(files[:limit]) + (f' and {len(files) - limit} more' if len(files) > limit else '')


# ----------------------------------------------------------------------------- making
def make_demo_data(task: str, out_dir: str, num_train: Optional[int] = None, num_val: Optional[int] = None,
                   seed: int = 0, force: bool = False) -> Tuple[dict, bool]:
    """Make (or reuse) the demo dataset of ``task`` in ``out_dir``; returns ``(marker, made)``.

    ``num_train``/``num_val`` default to the maker's. Raises ``FileExistsError`` and touches nothing when
    ``out_dir`` is a non-empty folder without a marker, when it holds own output made otherwise and ``force``
    is not given, or when own output to be replaced holds files the marker does not list or that changed.
    """
    maker = get_maker(task)
    args = resolve_args(task, num_train, num_val, seed)
    version = _VERSIONS[task]
    regenerate = f'tools/misc/make_demo_data.py {task} {out_dir} --force'
    if osp.lexists(out_dir) and not osp.isdir(out_dir):
        raise FileExistsError(f'{out_dir} exists and is not a folder: not touching it')
    marker = read_marker(out_dir)
    if marker is None:
        if osp.isdir(out_dir) and os.listdir(out_dir):
            raise FileExistsError(f'{out_dir} is not empty and is not demo data made by mmevit (no {MARKER}): '
                                  'not touching it. Choose an empty or new folder (or empty this one yourself).')
    else:
        changed, extra, missing = audit(out_dir, marker)
        same = (marker.get('task'), marker.get('args'), marker.get('version')) == (task, args, version)
        if same and not (changed or extra or missing) and not force:
            return marker, False
        if not force:
            made = f"task {marker.get('task')!r}, {marker.get('args')}, maker version {marker.get('version')}"
            why = ('its files were changed or added to' if changed or extra else
                   f'{len(missing)} of its files are missing' if missing else
                   f'this asks for task {task!r}, {args}, maker version {version}')
            raise FileExistsError(f'{out_dir} holds demo data made with {made}, but {why}. To replace it: '
                                  f'{regenerate}')
        if changed or extra:
            raise FileExistsError(f'refusing to replace {out_dir}: it holds files the generator did not write or '
                                  f'that were changed since ({_describe(changed + extra)}); not touching them')

    target = osp.abspath(out_dir)
    os.makedirs(osp.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(target)}.part-', dir=osp.dirname(target))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would become the data folder's mode
    try:
        meta = maker(tmp, **args)
        new_marker = dict(format=MARKER_FORMAT, task=task, version=version, args=args, meta=meta,
                          files={rel: _sha256(osp.join(tmp, rel)) for rel in _tree(tmp)})
        with open(osp.join(tmp, MARKER), 'x') as f:
            json.dump(new_marker, f, indent=1)
            f.write('\n')
        if marker is not None:
            _remove_own(out_dir, marker)
        if not osp.isdir(target):
            os.rename(tmp, target)
        else:  # an empty folder (maybe a mount point or a link): move the contents in, the marker last
            for name in sorted(os.listdir(tmp), key=lambda n: n == MARKER):
                os.rename(osp.join(tmp, name), osp.join(target, name))
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)  # our own temporary folder
    return new_marker, True


__all__ = ['DEMO_DATA', 'MARKER', 'register_demo_data', 'demo_tasks', 'resolve_args', 'read_marker', 'audit',
           'make_demo_data']
