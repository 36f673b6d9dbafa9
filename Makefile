# The two commands the README promises:
#   make run    set up the pinned environment, then `mlflow run .` on the shipped data
#   make test   set up the pinned environment (with test tools), then the whole test suite
# `make test-fast` is the edit-test loop: the suite without real processes or whole entry-point runs.
# The virtualenv is rebuilt only when the pins change (a stamp keyed on their hash).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_PIN := $(shell grep '^uv==' requirements-dev.txt)
PINS_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.pins-$(PINS_HASH)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run test test-fast lint bench browser docker clean

# The driver JVM's class-data archive (a faster start for local runs; see runtime/jvm_cache.py):
# built once per Java + Spark install, a no-op when it exists.
setup: $(STAMP)
	@python -m sparkml_template.workflows.warmup

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(UV_PIN)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-dev.txt
	@rm -f $(VENV)/.pins-* && touch $@

run: setup
	mlflow run . --env-manager local

# pytest exits 5 when it collected no test: that must fail, not pass silently.
test: setup
	@python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The fast loop: no `mlflow run`, no servers (tests/e2e is marked e2e by tests/conftest.py), no
# whole entry points run in-process (marked slow). `make test` still runs all of them.
FAST := not e2e and not slow and not cli
test-fast: setup
	@python -m pytest -m "$(FAST)" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Debian's chromium, for the test that opens report.html in a headless browser (it skips
# without one outside CI). Needs root or sudo; a no-op when chromium is there.
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

# The container tools the Kubernetes tests use (tests/docker_support.py starts the daemon itself
# and builds the image once per session): Debian's docker.io when no Docker engine is installed,
# debootstrap (a base image made offline when none can be pulled) and docker-registry (a real
# registry on 127.0.0.1). Needs root or sudo; installs only what is missing.
docker:
	@missing=""; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@dockerd --version && command -v debootstrap && command -v docker-registry

lint: setup
	ruff check . && ruff format --check . && lint-imports

bench: setup
	python scripts/benchmark.py

clean:
	rm -rf $(VENV) mlruns mlartifacts mlflow.db spark-warehouse
