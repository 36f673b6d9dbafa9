"""A real remote tracking server: `mlflow server` on 127.0.0.1 with a SQLite backend store and
proxied artifacts (``--serve-artifacts``). Runs reach it only over HTTP, and what they logged
comes back through it; an unreachable server fails a run in seconds, before Spark starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import (
    PROJECT_ROOT,
    SHIPPED_DATA,
    VENV_BIN,
    Tracking,
    mlflow_run,
    only_run,
    subprocess_env,
)
from servers import free_port, mlflow_server

from sparkml_template.errors import UserError
from sparkml_template.runtime.preflight import check_tracking_server

CONCURRENT_RUNS = 8


@dataclass
class Server:
    url: str
    artifacts: Path
    pid: int


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with two workers sharing one SQLite file; stopped by PID afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    url = f"http://127.0.0.1:{free_port()}"
    cmd = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        url.rsplit(":", 1)[1],
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "2",
    ]
    # The GenAI job runner (huey consumers) is not needed to track runs; it only costs start-up.
    env = subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with mlflow_server(cmd, url, root, env) as proc:
        yield Server(url, root / "artifacts", proc.pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def server_experiment(server: Server, name: str) -> Tracking:
    """A new experiment on the server; its artifact root is the server's proxy."""
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(server.url).create_experiment(name)
    return Tracking(server.url, server.artifacts, experiment_id)


@pytest.fixture(scope="module")
def trained(server):
    """One `mlflow run -e train` logged through the server, for the tests that read it back."""
    tracking = server_experiment(server, "cli")
    result = mlflow_run(tracking, "-e", "train", "-P", "maxIter=10", "-P", "master=local[2]")
    assert result.returncode == 0, result.stderr[-3000:]
    return tracking, only_run(tracking)  # read back over HTTP


@pytest.mark.cli
def test_mlflow_run_logs_through_the_server(server, trained, spark, tmp_path, monkeypatch):
    import mlflow

    _, run = trained
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied, not a local path
    assert run.data.params["maxIter"] == "10"
    assert run.data.params["label"] == "diagnosis"
    assert 0.8 < run.data.metrics["accuracy"] <= 1.0
    assert run.data.metrics["test_rows"] > 0

    # MLflow resolves runs:/<id>/model to the run's logged model through the *default*
    # tracking URI (its tracking_uri argument does not reach that step): set it, as users do.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "model")
    )
    meta = yaml.safe_load((Path(local) / "MLmodel").read_text())
    assert meta["run_id"] == run.info.run_id and "spark" in meta["flavors"]
    # The server wrote it to its destination; the client only ever spoke HTTP.
    assert any(meta["model_id"] in str(p) for p in server.artifacts.rglob("MLmodel"))

    model = mlflow.spark.load_model(local)
    data = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).limit(20)
    predictions = {row.prediction for row in model.transform(data).select("prediction").collect()}
    assert predictions <= {"malignant", "benign"} and predictions


@pytest.mark.cli
def test_predict_without_output_logs_its_rows_through_the_server(
    server, trained, spark, monkeypatch
):
    """The proxied store takes no Spark writer: the rows are staged, logged over HTTP as the
    run's ``predictions/``, and read back (pandas and Spark) through the server."""
    from sparkml_template.workflows.predict_results import IN_RUN_TAG, read_predictions

    tracking, run = trained
    model_uri = f"runs:/{run.info.run_id}/model"
    args = ("-e", "predict", "-P", f"modelUri={model_uri}", "-P", "master=local[2]")
    result = mlflow_run(tracking, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    predict = next(
        r
        for r in tracking.client().search_runs([tracking.experiment_id])
        if r.data.tags.get("mlflow.project.entryPoint") == "predict"
    )
    assert predict.info.status == "FINISHED"
    assert predict.data.tags[IN_RUN_TAG] == "logged"
    assert predict.data.tags["predict.output"].startswith("mlflow-artifacts:/")
    rows = int(predict.data.metrics["output_rows"])
    assert rows == predict.data.metrics["input_rows"] > 0
    # the server holds the files; no Hadoop checksum or _SUCCESS file was logged
    on_server = [p for p in server.artifacts.rglob("*") if predict.info.run_id in str(p)]
    names = {p.name for p in on_server if p.is_file()}
    assert any(n.endswith(".parquet") for n in names)
    assert not any(n.startswith((".", "_")) for n in names), names

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    scored = read_predictions(predict.info.run_id)
    assert len(scored) == rows
    assert set(scored["prediction"]) <= {"malignant", "benign"}
    assert set(scored["model_run_id"]) == {run.info.run_id}
    assert read_predictions(predict.info.run_id, spark=spark).count() == rows


def test_eight_runs_at_once_are_all_recorded(server, spark, monkeypatch, tmp_path):
    """Eight training runs of the real entry point at once, on one Spark session, each its own
    MLflow run talking to the server: every one lands, with its params, metrics and model."""
    import mlflow

    from sparkml_template.workflows.runner import run_entry_point
    from sparkml_template.workflows.train import prepare_training
    from train import body

    tracking = server_experiment(server, "concurrent")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", tracking.experiment_id)
    mlflow.set_tracking_uri(server.url)
    try:
        with ThreadPoolExecutor(max_workers=CONCURRENT_RUNS) as pool:
            codes = list(
                pool.map(
                    lambda seed: run_entry_point(
                        "train",
                        ["--seed", str(seed), "--maxIter", "5", "--master", "local[2]"],
                        prepare_training,
                        body,
                    ),
                    range(CONCURRENT_RUNS),
                )
            )
        assert codes == [0] * CONCURRENT_RUNS

        runs = tracking.client().search_runs([tracking.experiment_id])
        assert len(runs) == CONCURRENT_RUNS
        assert {r.data.params["seed"] for r in runs} == {str(s) for s in range(CONCURRENT_RUNS)}
        for run in runs:
            assert run.info.status == "FINISHED"
            assert {"accuracy", "test_rows", "train_rows"} <= set(run.data.metrics)
            model = mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{run.info.run_id}/model/MLmodel",
                dst_path=str(tmp_path / run.info.run_id),
            )
            assert f"run_id: {run.info.run_id}" in Path(model).read_text()
    finally:
        mlflow.set_tracking_uri(None)  # (also unsets the env var; monkeypatch restores it)


def test_unreachable_server_fails_before_spark_starts():
    closed = free_port()
    env = subprocess_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{closed}")
    result = subprocess.run(
        [sys.executable, "train.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"train: error: MLflow tracking server http://127.0.0.1:{closed} is unreachable "
        "(connection refused): start it, or point MLFLOW_TRACKING_URI at a running one"
    ]  # nothing else: no JVM was launched, no retry loop ran


@pytest.mark.cli
def test_mlflow_run_cli_fails_fast_with_retries_off(tmp_path):
    """`mlflow run` itself contacts the server before the project runs; with MLflow's HTTP
    retries turned off (as docs/tracking-server.md advises) it stops at the first refusal."""
    closed = free_port()
    tracking = Tracking(f"http://127.0.0.1:{closed}", tmp_path, "0")
    result = mlflow_run(
        tracking,
        "-e",
        "train",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"},
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{closed}" in last and "Connection refused" in last


class _Unauthorized(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_probe_counts_any_http_answer_and_never_prints_credentials():
    """A server behind authentication answers 401: reachable, MLflow reports the rest."""
    httpd = HTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        check_tracking_server(f"http://user:s3cret@127.0.0.1:{httpd.server_port}/prefix/")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    closed = free_port()
    with pytest.raises(UserError) as raised:
        check_tracking_server(f"https://user:s3cret@127.0.0.1:{closed}")
    assert "s3cret" not in str(raised.value)
    assert f"https://127.0.0.1:{closed} is unreachable (connection refused)" in str(raised.value)
