# stylebox REST service on ONNX Runtime (and OpenVINO on CPUs): one Dockerfile, three serving
# targets, and the trainer worker's image. No torch in a serving image (training needs the
# `train` extra); each serves an exported .onnx.
#   docker build -t stylebox:cpu .                                      (TARGET=cpu, default)
#   docker build --build-arg TARGET=cuda -t stylebox:cuda .             (x86_64 + NVIDIA GPU)
#   docker build --build-arg TARGET=jetson -t stylebox:jetson .         (on a JetPack 6 Jetson)
#   docker build --build-arg TARGET=worker -t stylebox:worker .         (`stylebox worker`, torch)
# or `docker compose up` (README "Deployment"). BuildKit builds only the stages TARGET needs;
# the legacy builder (no BuildKit: docker-compose 1.x, Docker without buildx) builds every
# stage, so it builds the CPU image from Dockerfile.cpu and the worker's from
# Dockerfile.worker instead (those stages alone; deploy/dockerfile_cpu.py writes both).
# Bases are pinned by tag; the python in each build stage is the one its runtime stage runs
# (the venv's python is a symlink into the base).
ARG TARGET=cpu
# Offline builds (README "Deployment"): CPU_BASE is any image with Debian bookworm's python3
# (3.11) and python3-venv, e.g. one made from a local mirror; PIP_OFFLINE=1 makes pip install
# only from the wheelhouse deploy/wheels/ in the build context, never from an index.
ARG CPU_BASE=python:3.11-slim-bookworm
ARG PIP_OFFLINE=0

# -- source: what `pip install .` needs, and the runtime requirements without onnxruntime ----
FROM ${CPU_BASE} AS source
WORKDIR /src
# The four package folders pyproject maps into the `stylebox` package (the service imports
# stylebox.model's card and contract, pure python; `stylebox train` says it needs torch).
COPY pyproject.toml README.md ./
COPY model/ model/
COPY training/ training/
COPY service/ service/
COPY stylebox/ stylebox/
# The GPU targets swap onnxruntime for onnxruntime-gpu: both install the `onnxruntime`
# module, so they must never be installed side by side.
RUN python3 -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(x for x in d['project']['dependencies'] if not x.startswith('onnxruntime==')))" \
    > requirements-no-ort.txt

# -- cpu: python slim + onnxruntime (CPU EP) + openvino (bf16 on AMX / AVX512_BF16) ----------
# STYLEBOX_ENGINE=auto serves OpenVINO bf16 where the host CPU runs it, else ONNX Runtime.
FROM ${CPU_BASE} AS build-cpu
ARG PIP_OFFLINE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=source /src /src
# The wheelhouse (only its README unless an offline build filled it) stays in this stage.
COPY deploy/wheels/ /wheels/
# Non-editable, runtime deps only (no [train] extra): the source tree is not needed after.
RUN python3 -m venv /opt/venv \
 && if [ "$PIP_OFFLINE" = 1 ]; then set -- --no-index --find-links /wheels; fi \
 && /opt/venv/bin/pip install --no-cache-dir "$@" "/src[openvino]"

FROM ${CPU_BASE} AS runtime-cpu
COPY --from=build-cpu /opt/venv /opt/venv
ENV STYLEBOX_PROVIDERS=CPUExecutionProvider

# -- worker: `stylebox worker` (new styles, best-quality renders): the `train` extra on CPU ----
# Not a server: the final stage's CMD and HEALTHCHECK are the servers', so compose gives it
# `stylebox worker` and a heartbeat healthcheck (docker run: `stylebox:worker stylebox worker`).
# torch from PyPI on x86_64 Linux is the CUDA build, whose requirements are about
# 3 GB of nvidia-* wheels; installed with --no-deps it does not import (libtorch_cuda.so
# links libcudnn.so.9 and the rest), so they stay. Triton (about 0.9 GB) only compiles GPU
# kernels (torch.compile on a GPU), which a CPU worker never does: it is removed.
FROM ${CPU_BASE} AS build-worker
ARG PIP_OFFLINE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=source /src /src
COPY deploy/wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && if [ "$PIP_OFFLINE" = 1 ]; then set -- --no-index --find-links /wheels; fi \
 && /opt/venv/bin/pip install --no-cache-dir "$@" "/src[train]" \
 && /opt/venv/bin/pip uninstall -y triton

FROM ${CPU_BASE} AS runtime-worker
COPY --from=build-worker /opt/venv /opt/venv
ENV STYLEBOX_PROVIDERS=CPUExecutionProvider

# -- cuda: NVIDIA CUDA 13 + cuDNN 9 runtime, onnxruntime-gpu (CUDA EP, then CPU) -----------
# onnxruntime-gpu 1.31.1 (PyPI) is built for CUDA 13 and cuDNN 9 (its `cuda`/`cudnn` extras
# name nvidia-*-cu13 wheels); the base provides those libraries instead. Ubuntu 24.04's
# python3 is 3.12. Debian/Ubuntu package versions move with security fixes: not pinned.
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 AS base-cuda
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

FROM base-cuda AS build-cuda
ARG ORT_GPU_VERSION=1.31.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=source /src /src
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /src/requirements-no-ort.txt \
      "onnxruntime-gpu==${ORT_GPU_VERSION}" \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /src

FROM base-cuda AS runtime-cuda
COPY --from=build-cuda /opt/venv /opt/venv
ENV STYLEBOX_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider

# -- jetson: L4T JetPack 6 (CUDA 12.6, cuDNN 9, TensorRT 10.3), TensorRT EP > CUDA EP > CPU --
# PyPI has no onnxruntime-gpu for aarch64 + JetPack, so the wheel comes from the build
# context: deploy/jetson/wheels/ (its README says where to get or how to build one).
# JetPack 6 is Ubuntu 22.04, whose python3 is 3.10; stylebox needs 3.11 (jammy's python3.11).
FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0 AS base-jetson
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/*

FROM base-jetson AS build-jetson
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=source /src /src
COPY deploy/jetson/wheels/ /wheels/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN whl="$(find /wheels -name 'onnxruntime_gpu-*-cp311-*linux_aarch64.whl' | sort | tail -n 1)" \
 && if [ -z "$whl" ]; then \
      echo "no onnxruntime_gpu-*-cp311-*linux_aarch64.whl in deploy/jetson/wheels/" >&2; exit 1; \
    fi \
 && python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /src/requirements-no-ort.txt "$whl" \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /src

FROM base-jetson AS runtime-jetson
COPY --from=build-jetson /opt/venv /opt/venv
# fp16 engines: Orin's tensor cores; the cache dir is a volume (see below), so a restart
# reloads the engines instead of spending minutes building them again. The warm-up sizes
# make the first start build them before the service listens (not ready until then).
ENV STYLEBOX_PROVIDERS=TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider \
    STYLEBOX_PRECISION=f16 \
    STYLEBOX_TRT_CACHE_DIR=/var/cache/stylebox/trt \
    STYLEBOX_WARMUP_SIZES=512,1024

# -- the image: the chosen runtime + user, models, healthcheck ------------------------------
# One of the stages above, not an image: hadolint cannot tell (DL3006 is about tags).
# hadolint ignore=DL3006
FROM runtime-${TARGET}
# ORT_DISABLE_TELEMETRY: ONNX Runtime's usage telemetry off (else it keeps a device id and an
# event store under ~/.cache and uploads them).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    STYLEBOX_MODEL_PATH=/app/models/stylebox-a0.25.onnx \
    STYLEBOX_HOST=0.0.0.0 \
    STYLEBOX_PORT=8000 \
    STYLEBOX_VIDEO_DIR=/var/lib/stylebox/videos
# A fixed numeric uid, so orchestrators can check runAsNonRoot. The cache dir belongs to it
# (TensorRT engines are written there at the first start), and so do the video job folder
# (uploads and results of POST /videos; docs/video.md) and the model folder (compose mounts a
# writable volume there for the trainer worker's style edits): a named volume mounted on one
# starts as a copy of it, owned by that uid, and replicas share one. Its home belongs to root:
# nothing writes there. It holds OpenVINO's telemetry consent file saying 0 (declined;
# `opt_in_out --opt_out` writes the same), without which OpenVINO counts as consent any home
# it can write.
RUN groupadd --system --gid 10001 stylebox \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/stylebox --no-create-home \
      --shell /usr/sbin/nologin stylebox \
 && mkdir -p /var/cache/stylebox/trt /var/lib/stylebox/videos /var/lib/stylebox/model \
      /home/stylebox/intel \
 && echo 0 > /home/stylebox/intel/openvino_telemetry \
 && chown -R 10001:10001 /var/cache/stylebox /var/lib/stylebox
WORKDIR /app
# models/ holds the default model (committed; see models/README.md); owned by root, so the
# service can read but not change it. Mount another directory here to serve other models.
COPY models/ /app/models/
VOLUME ["/var/cache/stylebox", "/var/lib/stylebox/videos"]
USER 10001:10001
EXPOSE 8000
# Ready = model loaded and warmed up (`stylebox serve` loads it, and builds any TensorRT
# engines, before it listens; /readyz is 503 while shutting down). The long start period
# covers a first TensorRT build on a Jetson. Slim has no curl: python's urllib raises on a
# non-2xx answer or no answer, which makes the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('STYLEBOX_PORT', '8000'), timeout=4)"]
CMD ["stylebox", "serve"]
