# stylebox REST service on ONNX Runtime, CPU only. No torch: training and export need a GPU
# box and the `train` extra; this image only serves an exported .onnx model.
#   docker build -t stylebox . && docker run -p 8000:8000 stylebox   (or: docker compose up)

# Base pinned by tag, the same in both stages: the venv's python is a symlink into it.
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Everything `pip install .` needs: pyproject's packages are model*, training*, service* and
# stylebox* (the service imports model.card, pure python; `stylebox train` then says it needs
# the train extra instead of crashing), and README.md is the project's readme.
COPY pyproject.toml README.md ./
COPY model/ model/
COPY training/ training/
COPY service/ service/
COPY stylebox/ stylebox/
# Non-editable and runtime deps only (no [train] extra): the source tree is not needed after.
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STYLEBOX_MODEL_PATH=/app/models/stylebox-a0.25.onnx \
    STYLEBOX_HOST=0.0.0.0 \
    STYLEBOX_PORT=8000
# A fixed numeric uid, so orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 stylebox \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin stylebox
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# models/ holds the default model once made (see models/README.md); owned by root, so the
# service can read but not change it. Mount another directory here to serve other models.
COPY models/ /app/models/
USER 10001:10001
EXPOSE 8000
# Ready = model loaded (/readyz is 503 before). Slim has no curl: python's urllib raises on
# a non-2xx answer or no answer, which makes the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('STYLEBOX_PORT', '8000'), timeout=4)"]
CMD ["stylebox", "serve"]
