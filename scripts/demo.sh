#!/usr/bin/env bash
# Main job on a fresh machine: install into ./.venv and generate a small dataset
# with the built-in head into ./demo_dataset (then validate it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
OUT=${OUT:-demo_dataset}
.venv/bin/facsgen generate --out "$OUT" --count 16 --views 2 --resolution 256 --seed 0 --resume "$@"
.venv/bin/facsgen validate "$OUT"
