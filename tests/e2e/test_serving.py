"""The logged model works with MLflow's own tools: `mlflow models predict` and `mlflow models
serve` (a real server on 127.0.0.1, stopped by its process-group id, every wait bounded).

The server starts right after the module's one training run, so it warms up (a JVM and the
model) while `mlflow models predict` runs.
"""

from __future__ import annotations

import json
import math
import subprocess

import pandas as pd
import pytest
from conftest import SHIPPED_DATA, VENV_BIN, subprocess_env
from lifecycle_support import module_tracking, train_registered
from servers import invoke, model_server, wait_until_serving

NAME = "bc_served"
MODEL_URI = f"models:/{NAME}@champion"
ROWS = 8
MODELS_CLI = [str(VENV_BIN / "mlflow"), "models"]
LOCAL = ["--env-manager", "local"]  # this venv's Python: no environment is built


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory):
    """Train and crown one model, then start `mlflow models serve` on it."""
    tmp = tmp_path_factory.mktemp("serving")
    with module_tracking(tmp) as tracking:
        version = train_registered(tracking, NAME)
        tracking.client().set_registered_model_alias(NAME, "champion", version)
        log = tmp / "serve.log"
        with model_server(MODEL_URI, tracking.uri, log) as (base, proc):
            yield tracking, tmp, base, proc, log


@pytest.fixture(scope="module")
def sample(spark, served):
    """A few feature rows (no label) and what the Spark model itself predicts for them."""
    import mlflow

    frame = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).limit(ROWS)
    features = frame.drop("diagnosis")
    model = mlflow.spark.load_model(MODEL_URI)
    expected = [r["prediction"] for r in model.transform(features).select("prediction").collect()]
    return features.toPandas(), expected


def test_mlflow_models_predict(served, sample):
    tracking, tmp, *_ = served
    frame, expected = sample
    inputs, outputs = tmp / "input.csv", tmp / "predictions.json"
    frame.to_csv(inputs, index=False)
    files = ["-i", str(inputs), "-t", "csv", "-o", str(outputs)]
    result = subprocess.run(
        [*MODELS_CLI, "predict", "-m", MODEL_URI, *LOCAL, *files],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking.uri),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(outputs.read_text())["predictions"] == expected


def test_mlflow_models_serve_answers_invocations(served, sample):
    _, _, base, proc, log = served
    frame, expected = sample
    wait_until_serving(base, proc, log)
    status, body = invoke(base, frame)
    assert status == 200, body
    assert json.loads(body)["predictions"] == expected
    assert set(expected) <= {"benign", "malignant"}

    status, body = invoke(base, frame.drop(columns=["mean_radius"]))
    assert status == 400
    assert "mean_radius" in body


def _awkward_regression_csv(path) -> None:
    """Integers, nulls in a number and in text, a date, and a row id (excluded) next to
    scikit-learn's diabetes features."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame.head(120).rename(columns={"target": "y"})
    n = len(frame)
    frame["visits"] = np.arange(n) % 7  # int64: Spark reads int
    frame["dose"] = (np.arange(n) % 4 + 1).astype(float)
    frame.loc[frame.index % 9 == 0, "dose"] = np.nan
    frame["site"] = np.where(frame.index % 2 == 0, "north", "south")
    frame.loc[frame.index % 11 == 0, "site"] = None
    frame["seen"] = pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    frame["row_id"] = [f"id{i:05d}" for i in range(n)]
    frame.to_csv(path, index=False)


def test_a_regression_model_serves_rows_read_csv_gives(served):
    """The awkward CSV's own rows, as `pd.read_csv` reads them, sent as JSON: a number each."""
    tracking, tmp, *_ = served
    data = tmp / "awkward.csv"
    _awkward_regression_csv(data)
    name = "diabetes_served"
    train_registered(tracking, name, "--data", str(data), "--label", "y",
                     "--excludeColumns", "row_id", "--estimator", "gbt",
                     "--maxIter", "5")  # fmt: skip
    rows = pd.read_csv(data).drop(columns=["y"])
    assert rows["visits"].dtype == "int64" and rows["dose"].isna().any()
    assert rows["site"].isna().any()
    dated = pd.read_csv(data, parse_dates=["seen"]).drop(columns=["y"])  # datetime64
    with model_server(f"models:/{name}/1", tracking.uri, tmp / "serve_regression.log") as (
        base,
        proc,
    ):
        wait_until_serving(base, proc, tmp / "serve_regression.log")
        status, body = invoke(base, rows)
        dated_status, dated_body = invoke(base, dated)
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == len(rows)
    assert all(isinstance(p, float) and math.isfinite(p) for p in predictions), predictions[:5]
    assert dated_status == 200, dated_body
    assert json.loads(dated_body)["predictions"] == predictions
