#!/usr/bin/env bash
# Developer loop: build onnxlens._core into python/onnxlens/ so the source tree imports directly
# (put `python/` on PYTHONPATH or a .pth file). `pip install .` is what users and CI run.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $PY)" >/dev/null
cmake --build build/dev
cp build/dev/_core*.so python/onnxlens/
