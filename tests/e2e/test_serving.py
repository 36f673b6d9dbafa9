"""The logged model works with MLflow's own tools: `mlflow models predict` and `mlflow models
serve` (a real server on 127.0.0.1, stopped by its process-group id, every wait bounded).

The server starts right after the module's one training run, so it warms up (a JVM and the
model) while `mlflow models predict` runs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import SHIPPED_DATA, VENV_BIN, subprocess_env
from lifecycle_support import module_tracking, train_registered
from servers import free_port, stop_group

NAME = "bc_served"
MODEL_URI = f"models:/{NAME}@champion"
STARTUP_SECONDS = 300
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
        port = free_port()
        log = tmp / "serve.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*MODELS_CLI, "serve", "-m", MODEL_URI, *LOCAL, "-h", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=subprocess_env(MLFLOW_TRACKING_URI=tracking.uri),
                start_new_session=True,  # its own process group, so _stop reaches the workers
            )
        try:
            yield tracking, tmp, f"http://127.0.0.1:{port}", proc, log
        finally:
            stop_group(proc)


@pytest.fixture(scope="module")
def sample(spark, served):
    """A few feature rows (no label) and what the Spark model itself predicts for them."""
    import mlflow

    frame = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).limit(ROWS)
    features = frame.drop("diagnosis")
    model = mlflow.spark.load_model(MODEL_URI)
    expected = [r["prediction"] for r in model.transform(features).select("prediction").collect()]
    return features.toPandas(), expected


def _wait_until_ready(base: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    for _ in range(STARTUP_SECONDS):
        if proc.poll() is not None:
            pytest.fail(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base}/ping", timeout=5) as response,
        ):
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    pytest.fail(f"server not ready after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


def _invoke(base: str, frame) -> tuple[int, str]:
    body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
    request = urllib.request.Request(
        f"{base}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
    _wait_until_ready(base, proc, log)
    status, body = _invoke(base, frame)
    assert status == 200, body
    assert json.loads(body)["predictions"] == expected
    assert set(expected) <= {"benign", "malignant"}

    status, body = _invoke(base, frame.drop(columns=["mean_radius"]))
    assert status == 400
    assert "mean_radius" in body
