#!/usr/bin/env bash
# The GPU check, for one NVIDIA GPU (an H200) with CUDA PyTorch installed but none of tensorq's other
# dependencies: installs the wheels from .whl/ (bench/fetch_gpu_wheels.sh) into a temporary path, then
# measures the note's loop against tensorq's fast path and a plain matmul, runs the CUDA tests, and runs one
# job end to end through a real Redis and a real `tensorq worker` pinned to the GPU. Under 8 minutes.
# Results: printed, and written to $OUT/gpu_check.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
timeout 420 python3 -m bench.gpu_check "${OUT:+$OUT/gpu_check.json}"
timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_fastpath.py tests/test_mlp.py -k cuda
