# syntax=docker/dockerfile:1
# CPU image: docker build -t gateway .
# GPU image: docker build --build-arg VARIANT=gpu -t gateway:gpu .  (run with --gpus all)
# The GPU variant swaps onnxruntime for onnxruntime-gpu with CUDA and cuDNN from pip packages,
# so both variants share one slim Python base; the host supplies only the NVIDIA driver.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY gateway ./gateway
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt . \
    && if [ "$VARIANT" = "gpu" ]; then \
         /opt/venv/bin/pip uninstall --yes onnxruntime \
         && /opt/venv/bin/pip install --constraint constraints.txt "onnxruntime-gpu[cuda,cudnn]"; \
       fi

FROM ${PYTHON_IMAGE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="gateway" \
      org.opencontainers.image.description="ONNX model-serving gateway (Open Inference Protocol), ${VARIANT}"
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY models ./models
COPY config ./config
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["serve"]
