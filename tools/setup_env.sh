#!/usr/bin/env bash
# Idempotent set-up of .venv/ at the repository root with the pinned mmevit stack:
#   torch 2.14.1 + torchvision 0.29.1, mmcv 2.1.0 with compiled ops (built from the sdist with C++20),
#   mmengine 0.10.7, mmsegmentation 1.2.2, mmdet 3.3.0, mmpretrain 1.2.0, then mmevit itself (editable).
# The mmcv wheel is cached under $MMEVIT_WHEEL_CACHE keyed by python + torch version, because pip's own
# wheel cache does not know which torch a compiled extension was built against.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
CACHE_ROOT="${MMEVIT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmevit/wheels}"

log() { echo "[setup_env] $*" >&2; }

command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
VPY="$VENV/bin/python"

have() { "$VPY" - "$@" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
}

if ! have torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION; then
  log "installing torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
  "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
# mmcv's setup.py and mmengine (package lookups for `mmseg::` configs) import pkg_resources, which newer
# setuptools drop. torch 2.14's metadata asks for setuptools>=77 (for building extensions), so pip prints a
# resolver complaint about it: harmless, mmcv's build is the only extension build here.
"${PIP[@]}" install "setuptools<70" wheel ninja
# mmcv's runtime dependency, installed before the mmcv wheel so pip's resolver sees it.
"${PIP[@]}" install "mmengine==0.10.7"

# --- mmcv with compiled ops, keyed to the torch it was built against -------------------------------
mmcv_ops_ok() { "$VPY" -c "import mmcv, mmcv.ops; from mmcv.ops import nms, DeformConv2d; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; }
PYTAG="$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE_ROOT/mmcv-$MMCV_VERSION/$PYTAG-torch-$TORCH_VERSION"
if ! mmcv_ops_ok; then
  WHEEL="$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    log "building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (about 11 min on 2 cores)"
    BUILD="$(mktemp -d)"
    "${PIP[@]}" download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
    # torch 2.14's headers require C++20; mmcv 2.1.0 hard-codes -std=c++14 / c++17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    grep -q 'std=c++20' "$BUILD/mmcv-$MMCV_VERSION/setup.py" || { log "could not raise mmcv's C++ standard"; exit 1; }
    mkdir -p "$WHEEL_DIR"
    (cd "$BUILD/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$VPY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" . )
    rm -rf "$BUILD"
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-*.whl | head -n1)"
  else
    log "using cached mmcv wheel $WHEEL"
  fi
  "${PIP[@]}" install --force-reinstall --no-deps "$WHEEL"
  # mmcv's own runtime deps (addict, yapf, ...), without touching torch.
  "${PIP[@]}" install addict packaging Pillow pyyaml yapf opencv-python numpy
fi

"${PIP[@]}" install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install --no-deps -e "$ROOT"
mmcv_ops_ok || { log "mmcv.ops does not import after install"; exit 1; }
log "ready: $VENV"
