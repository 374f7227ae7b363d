# syntax=docker/dockerfile:1
#
# One image for every Sundial process: `sundial` (migrate, next), `sundial-worker`,
# `sundial-operator` and `sundial-dashboard` (REST API and admin page, docs/dashboard.md); the
# Helm chart picks the command. Non-root (uid 10001), no compiler,
# no pip cache. Build: `docker build -t sundial:dev .`  More in docs/image.md.
#
# The base image is pinned by digest for reproducible, reviewable builds: set PYTHON_DIGEST to
# the digest of the python:3.11-slim you vetted (docs/image.md shows how to look it up, and
# Renovate/Dependabot can keep it current). Empty, the tag is used as is: fine for a local
# build, not for a release.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim
ARG PYTHON_DIGEST=""

# ---- build: wheels for Sundial and its dependencies, installed into a virtualenv ----------
FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@}${PYTHON_DIGEST} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY core ./core
COPY kube ./kube
COPY cli ./cli
COPY operator ./operator
COPY worker ./worker
COPY launcher ./launcher
COPY dashboard ./dashboard
COPY migrations ./migrations
# The page's static files ship inside the wheel (package data of sundial.dashboard): fail the
# build, not the first page load, when they are missing.
# Dependencies at the versions CI tested (constraints.txt), never whatever is newest today.
RUN pip wheel --wheel-dir /wheels -c constraints.txt . \
 && python -m venv /opt/sundial \
 && /opt/sundial/bin/pip install --no-index --find-links /wheels sundial \
 && /opt/sundial/bin/sundial --help >/dev/null \
 && /opt/sundial/bin/python -c "import sys; from importlib.resources import files; \
static = files('sundial.dashboard') / 'static'; \
sys.exit(0 if static.is_dir() and any(static.iterdir()) else 'sundial.dashboard static files missing from the wheel')"

# ---- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@}${PYTHON_DIGEST} AS runtime
LABEL org.opencontainers.image.title="sundial" \
      org.opencontainers.image.description="Kubernetes-native recurring-job scheduler: operator, workers, dashboard and CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode is compiled at install time: the chart mounts the root filesystem read-only.
ENV PATH=/opt/sundial/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 sundial \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sundial
COPY --from=build /opt/sundial /opt/sundial
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# 9090: worker /metrics, /healthz, /readyz; 8080: operator liveness, or the dashboard
# (SUNDIAL_DASHBOARD_PORT: /api, /agendamentos, /healthz, /readyz); 9443: admission webhook.
EXPOSE 9090 8080 9443
CMD ["sundial", "--help"]
