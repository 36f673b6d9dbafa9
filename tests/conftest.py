"""Shared fixtures: one local SparkSession per test session, throw-away MLflow stores, and a
helper that drives the real `mlflow run` CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SHIPPED_DATA = PROJECT_ROOT / "data" / "breast_cancer.csv"
E2E_TESTS = PROJECT_ROOT / "tests" / "e2e"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is marked `e2e` (they start real processes), so that
    `make test-fast` (`-m "not e2e and not slow and not cli"`) leaves them out."""
    for item in items:
        if E2E_TESTS in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def spark():
    """The test session's SparkSession (2 local cores), created by the template's own code.

    The driver JVM's class-data archive is built first if missing (as `make setup` does), so
    the tests run on the start-up path users get.
    """
    from sparkml_template.runtime import jvm_cache
    from sparkml_template.runtime.session import get_spark
    from sparkml_template.workflows import warmup

    if jvm_cache.enabled():
        warmup.build()

    session = get_spark("local[2]", "pyspark-mlflow-template-tests")
    yield session
    session.stop()


@dataclass
class Tracking:
    """A throw-away tracking store: a SQLite file and an artifact folder under tmp_path."""

    uri: str
    artifacts: Path
    experiment_id: str

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> Tracking:
    """A fresh SQLite store with one experiment whose artifacts live under tmp_path."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.MlflowClient(uri).create_experiment(
        "tests", artifact_location=artifacts.as_uri()
    )
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    yield Tracking(uri, artifacts, experiment_id)
    mlflow.set_tracking_uri(None)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment a CLI subprocess gets: this venv first on PATH (as `--env-manager local`
    expects), quieter Python, and the caller's additions."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MLFLOW_RUN_ID", None)
    env.update(extra)
    return env


def mlflow_run(
    tracking: Tracking,
    *args: str,
    project: str | Path = PROJECT_ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 420,
) -> subprocess.CompletedProcess[str]:
    """`mlflow run <project> --env-manager local --experiment-id <id> <args>` in a subprocess."""
    cmd = [
        str(VENV_BIN / "mlflow"),
        "run",
        str(project),
        "--env-manager",
        "local",
        "--experiment-id",
        tracking.experiment_id,
        *args,
    ]
    run_env = subprocess_env(MLFLOW_TRACKING_URI=tracking.uri, **(env or {}))
    run_env.pop("MLFLOW_EXPERIMENT_ID", None)
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=run_env, cwd=PROJECT_ROOT
    )


def only_run(tracking: Tracking):
    """The single run of the tracking fixture's experiment (fails if there are more or none)."""
    runs = tracking.client().search_runs([tracking.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def artifact_paths(client, run_id: str, folder: str = "spark") -> set[str]:
    """The paths a run logged directly under ``folder`` (files and folders)."""
    return {a.path for a in client.list_artifacts(run_id, folder)}


@pytest.fixture(scope="session")
def spark_apps(tmp_path_factory):
    """The manifest of the Spark applications ``tests/eventlog_apps.py`` runs once per session
    (a subprocess) to write real event logs."""
    from eventlog_apps import shared_manifest

    return shared_manifest(tmp_path_factory)
