# The environment image of the Kubernetes variant (its docker_env.image): Python, Java 17 and the
# pinned runtime dependencies. MLflow's `-b kubernetes` builds the project image FROM it, adding
# the project code under /mlflow/projects/code, and pushes that to your registry.
#
#   docker build -t <registry>/pyspark-mlflow-template-env:<tag> .
#   docker build --build-arg BASE_IMAGE=<your python 3.11 Debian image> -t ... .
#
# BASE_IMAGE must be Debian-based (apt) with Python 3.11 (the version conda.yaml pins).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# Java 17 for Spark 4. JAVA_HOME through a fixed link, whatever the CPU architecture.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /opt/java
ENV JAVA_HOME=/opt/java

# The runtime pins, from requirements.txt (the file conda.yaml mirrors), in a virtualenv:
# Debian's own Python refuses system-wide pip installs.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    SPARK_LOCAL_IP=127.0.0.1 \
    PYTHONUNBUFFERED=1

# Not root: the Job template asks for uid 1000.
RUN useradd --uid 1000 --create-home --shell /bin/sh spark
USER 1000
WORKDIR /mlflow/projects/code
