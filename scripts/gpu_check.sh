#!/usr/bin/env bash
# The device check (docs/performance.md, "Devices"): the GPU tests, then the speed
# comparison on the GPU, in one go. Run from the repository root on a machine with CUDA:
#     bash scripts/gpu_check.sh [--json bench-cuda.json]
set -euo pipefail
cd "$(dirname "$0")/.."
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
  "gpu_check: no CUDA device (torch %s); run it on a GPU machine" % torch.__version__)'
python -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
python scripts/bench_speed.py --device cuda "$@"
