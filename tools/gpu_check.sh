#!/usr/bin/env bash
# Real-GPU check of adamsci's CUDA kernels (issue 5), one command, < 5 min on
# an H200: the CUDA tests compiled for the real device (no simulator), then
# the benchmarks (every twin vs its CPU twin; Adam throughput at n = 1e6, 1e8,
# float32/float64, vs a device-to-device copy and torch's fused Adam;
# batched fits incl. Gpufit's 2-D Gaussian problem).
#
#   tools/gpu_check.sh             # from anywhere
#   tools/gpu_check.sh --quick     # benchmark arguments are passed on
set -euo pipefail
cd "$(dirname "$0")/.."
unset NUMBA_ENABLE_CUDASIM
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/adamsci-numba-cache-gpu}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY'
from numba import cuda
assert cuda.is_available(), "no usable CUDA GPU (numba.cuda.is_available() is False)"
cuda.detect()
PY
start=$SECONDS
python -m pytest -q -p no:cacheprovider -m "cuda or gpu" tests/test_cuda.py \
    tests/test_batch.py tests/test_models.py
echo "tests: $((SECONDS - start)) s"
python -m adamsci.benchmarks.cuda "$@"
# batched fits: Gpufit's 2-D Gaussian on 5x5 pixels (float32), fits/s
python -m adamsci.benchmarks.batch --quick
echo "total: $((SECONDS - start)) s"
