"""The lifecycle entry points through the real `mlflow run` CLI: `predict` with a registered
champion, and `tune` with CrossValidator (their in-process cases: tests/unit/workflows)."""

from __future__ import annotations

import pytest
from conftest import mlflow_run
from lifecycle_support import child_runs, module_tracking, newest_run, train_champion

from sparkml_template.workflows.tune import CV_METRIC

pytestmark = pytest.mark.cli
NAME = "bc_cli_lifecycle"


@pytest.fixture(scope="module")
def model(spark, tmp_path_factory):
    """A version of NAME trained in-process on the shared session and made @champion."""
    with module_tracking(tmp_path_factory.mktemp("cli_lifecycle")) as tracking:
        yield tracking, train_champion(tracking, NAME)


def test_mlflow_run_predict(model, tmp_path):
    tracking, version = model
    out = tmp_path / "cli_scored"
    result = mlflow_run(
        tracking,
        "-e",
        "predict",
        "-P",
        f"modelUri=models:/{NAME}@champion",
        "-P",
        f"output={out}",
        "-P",
        "master=local[2]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = newest_run(tracking)
    assert run.info.status == "FINISHED"
    assert run.data.params["output"] == str(out)
    assert run.data.tags["predict.model_run_id"] == version.run_id
    assert run.data.metrics["output_rows"] == run.data.metrics["input_rows"] > 0
    assert any(out.glob("*.parquet"))


def test_mlflow_run_tune_with_cross_validation(model):
    tracking = model[0]
    result = mlflow_run(
        tracking,
        "-e",
        "tune",
        "-P",
        "regParam=0.0,0.1",
        "-P",
        "elasticNetParam=0.0",
        "-P",
        "numFolds=2",
        "-P",
        "parallelism=2",
        "-P",
        "master=local[2]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parent = newest_run(tracking)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["regParam"] == "0.0,0.1"  # logged by `mlflow run` as given
    children = child_runs(tracking, parent.info.run_id)
    assert len(children) == 2
    for child in children:  # each grid point: the folds' mean accuracy and its spread
        assert {CV_METRIC, f"{CV_METRIC}_std"} <= set(child.data.metrics)
        assert 0.8 < child.data.metrics[CV_METRIC] <= 1.0
    assert parent.data.metrics["grid_size"] == 2
