# syntax=docker/dockerfile:1
#
# tensorq images. Two build targets:
#
#   gpu  CUDA PyTorch base image, for `tensorq worker --gpus all|0,1`
#   cpu  python:3.11-slim with CPU-only torch, for `tensorq worker --gpus none`,
#        `tensorq flower` and the producer CLI (`tensorq submit ...`)
#
#   docker build --target gpu -t tensorq:gpu .
#   docker build --target cpu -t tensorq:cpu .
#
# Both images run as the unprivileged user `tensorq` (uid 10001) and use
# `tensorq` as the entrypoint, so `docker run tensorq:cpu workers --json` works.

ARG GPU_BASE_IMAGE=pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime
ARG CPU_BASE_IMAGE=python:3.11-slim
# torch for the CPU image, from the CPU-only wheel index. Kept at the same
# version as the GPU base image so both workers run the same torch.
ARG CPU_TORCH_VERSION=2.4.1


# ---------------------------------------------------------------------------
# gpu: torch (CUDA build) comes from the base image.
# ---------------------------------------------------------------------------
FROM ${GPU_BASE_IMAGE} AS gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TENSORQ_HOME=/home/tensorq/.tensorq

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin tensorq \
 && mkdir -p /home/tensorq/.tensorq \
 && chown tensorq:tensorq /home/tensorq/.tensorq

WORKDIR /app
COPY pyproject.toml README.md ./
COPY producer ./producer
COPY worker ./worker
COPY shared ./shared

# The `worker` extra only asks for torch>=2.4, which the base image's torch
# already satisfies. The constraint pins torch to exactly the installed build
# so pip can never replace the CUDA torch with a fresh multi-GB download; the
# check afterwards fails the build if the torch in the image changed anyway.
RUN python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > /tmp/torch-constraint.txt \
 && pip install --no-cache-dir -c /tmp/torch-constraint.txt '.[worker]' \
 && python -c "import torch, sys; want = open('/tmp/torch-constraint.txt').read().strip().split('==')[1]; sys.exit(0 if torch.__version__.split('+')[0] == want and torch.version.cuda else 'torch in the image changed or lost CUDA')" \
 && rm /tmp/torch-constraint.txt \
 && tensorq --help > /dev/null

USER tensorq
ENTRYPOINT ["tensorq"]
CMD ["--help"]


# ---------------------------------------------------------------------------
# cpu: slim Python with the CPU-only torch wheel.
# ---------------------------------------------------------------------------
FROM ${CPU_BASE_IMAGE} AS cpu

ARG CPU_TORCH_VERSION

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TENSORQ_HOME=/home/tensorq/.tensorq

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin tensorq \
 && mkdir -p /home/tensorq/.tensorq \
 && chown tensorq:tensorq /home/tensorq/.tensorq

# Installed before the sources are copied so that code changes do not
# invalidate this (large) layer. Without the CPU index pip would pull the
# default CUDA wheel and its nvidia-* dependencies (several GB).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==${CPU_TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY producer ./producer
COPY worker ./worker
COPY shared ./shared

# torch>=2.4 from the `worker` extra is already satisfied by the CPU wheel.
RUN pip install --no-cache-dir '.[worker]' \
 && tensorq --help > /dev/null

USER tensorq
ENTRYPOINT ["tensorq"]
CMD ["--help"]
