#!/usr/bin/env bash
# README command 2: set up .venv (idempotent) and run the test suite (slow and GPU checks excluded;
# run them with: .venv/bin/python -m pytest -m slow   /   -m gpu on a CUDA machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest -m "not slow and not gpu" -q -p no:cacheprovider "$@"
