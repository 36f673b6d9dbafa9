"""Helpers for the lifecycle tests (registry, predict, tune, serving): a tracking store that lives
for one test module, and the entry-point scripts run in-process exactly as `python <file>.py`."""

from __future__ import annotations

import contextlib
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, Tracking


@contextlib.contextmanager
def module_tracking(tmp_path: Path) -> Iterator[Tracking]:
    """A SQLite store with one experiment, set for the in-process entry points and subprocesses."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    artifacts = tmp_path / "artifacts"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mlflow.set_tracking_uri(uri)
        experiment_id = mlflow.MlflowClient(uri).create_experiment(
            "lifecycle", artifact_location=artifacts.as_uri()
        )
        mp.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        try:
            yield Tracking(uri, artifacts, experiment_id)
        finally:
            mlflow.set_tracking_uri(None)


def run_script(entry_point: str, *argv: str) -> int:
    """Run `<entry_point>.py argv…` in this process (sharing the tests' SparkSession); the exit
    code it would return."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [f"{entry_point}.py", *argv])
        try:
            runpy.run_path(str(PROJECT_ROOT / f"{entry_point}.py"), run_name="__main__")
        except SystemExit as exc:
            return int(exc.code or 0)
    raise AssertionError(f"{entry_point}.py did not exit")


def newest_run(tracking: Tracking):
    """The most recently started top-level run of the store's experiment."""
    runs = tracking.client().search_runs(
        [tracking.experiment_id], order_by=["attributes.start_time DESC"]
    )
    return next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)


def train_registered(tracking: Tracking, name: str, *extra: str) -> str:
    """Train in-process with registration; the new version's number."""
    code = run_script("train", "--registeredModelName", name, "--master", "local[2]", *extra)
    assert code == 0, newest_run(tracking).data.tags.get("sparkml_template.error")
    return tracking.client().get_model_version_by_alias(name, "challenger").version


def train_champion(tracking: Tracking, name: str):
    """Train and register ``name`` in-process and make the new version @champion; the version."""
    version = train_registered(tracking, name)
    tracking.client().set_registered_model_alias(name, "champion", version)
    return tracking.client().get_model_version(name, version)


def child_runs(tracking: Tracking, parent_id: str) -> list:
    """The runs nested under ``parent_id`` (tune's one per grid point)."""
    return tracking.client().search_runs(
        [tracking.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def error_lines(capsys: pytest.CaptureFixture[str], entry_point: str) -> list[str]:
    """The entry point's own stderr lines (Spark's log lines share the stream); no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith(f"{entry_point}: ")]
