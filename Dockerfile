# syntax=docker/dockerfile:1
# The dlscaler controller image, as the Helm chart runs it (`dlscaler run`):
#
#   docker build -t <registry>/dlscaler:0.1.0 .
#
# Two stages on the same pinned Python base. `build` makes a virtualenv holding the package
# (from this repository) and its pinned dependencies; it has pip and may compile. The final
# stage copies only that virtualenv, removes pip/setuptools/wheel, and runs as an
# unprivileged user with nothing to write outside /tmp (the chart mounts a read-only root).
#
# The base is pinned by version and digest: a tag alone may point to other bytes tomorrow.
# Update both together (and the digest only from `docker buildx imagetools inspect`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/dlscaler \
 && /opt/dlscaler/bin/python -m pip install "pip==25.3"
WORKDIR /src

# The pinned dependencies first, read from pyproject.toml: this layer is reused until they
# change, whatever else changes in the sources.
COPY pyproject.toml README.md ./
RUN /opt/dlscaler/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/dlscaler/bin/python -m pip install --requirement /tmp/requirements.txt

# Then dlscaler itself (not editable: the image must not depend on /src); a smoke test;
# bytecode now, since the running container cannot write it; and the venv's own installer
# goes, being a build tool too.
COPY dlscaler ./dlscaler
COPY controller ./controller
COPY predictors ./predictors
COPY providers ./providers
COPY simulator ./simulator
RUN /opt/dlscaler/bin/python -m pip install --no-deps . \
 && /opt/dlscaler/bin/dlscaler --help >/dev/null \
 && /opt/dlscaler/bin/python -m compileall -q /opt/dlscaler \
 && /opt/dlscaler/bin/python -m pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="dlscaler" \
      org.opencontainers.image.description="Autoscaler for deep-learning GPU clusters on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# No installer in the final image: the base's pip/setuptools/wheel go, and no compiler was
# ever here (the slim base has none). The user gets no shell and no home.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 65532 dlscaler \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin dlscaler
COPY --from=build /opt/dlscaler /opt/dlscaler
ENV PATH=/opt/dlscaler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["dlscaler"]
CMD ["run"]
