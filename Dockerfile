# The environment image of the Kubernetes variant (its docker_env.image): Python 3.11, Java 17 and
# the pinned runtime dependencies. MLflow's `-b kubernetes` builds the project image FROM it, adding
# the project code under /mlflow/projects/code, and pushes that to your registry.
#
#   make docker                    # this file on a local base (tests/docker_support.py), tagged
#                                  # pyspark-mlflow-template-env:latest
#   docker build -t <registry>/pyspark-mlflow-template-env:<tag> .
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -t ... .
#
# BASE_IMAGE must be Debian bookworm based (apt); Python 3.11 is installed from Debian when the
# base has none. Behind a TLS-intercepting proxy, put the proxy's CA bundle next to this file as
# pip-ca.crt (and un-ignore it in .dockerignore): pip uses it in the `deps` stage only, and that
# stage's layers never reach the final image (only /opt/venv is copied out of it).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- deps: the pinned packages in a virtualenv (Debian's own Python refuses system-wide pip) ---
FROM ${BASE_IMAGE} AS deps
RUN if ! python3 -c 'import ensurepip' 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# pip-ca.cr[t]: the glob lets the build go on when there is no CA file.
COPY requirements.txt pip-ca.cr[t] /tmp/build/
RUN cert=""; if [ -f /tmp/build/pip-ca.crt ]; then cert="--cert /tmp/build/pip-ca.crt"; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check $cert \
        -r /tmp/build/requirements.txt \
    && rm -rf /tmp/build

# --- the image: Java 17 for Spark 4, Python, the venv; not root ---
FROM ${BASE_IMAGE}
# JAVA_HOME through a fixed link, whatever the CPU architecture.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
        $(command -v python3 >/dev/null || echo python3) \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /opt/java
COPY --from=deps /opt/venv /opt/venv
# No git in the image (MLflow's GitPython would warn at every start); caches go to /tmp, the Job's
# emptyDir, so a read-only root file system works too.
ENV JAVA_HOME=/opt/java \
    PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    SPARK_LOCAL_IP=127.0.0.1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GIT_PYTHON_REFRESH=quiet \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib

# Not root: the Job template asks for uid 1000.
RUN useradd --uid 1000 --create-home --shell /bin/sh spark
USER 1000
WORKDIR /mlflow/projects/code
