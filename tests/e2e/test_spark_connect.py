"""Every entry point over Spark Connect: a real Connect server from the pip pyspark on
127.0.0.1 (stopped by its process-group id), driven by `mlflow run . -P master=sc://…`, and the
model it logged served by `mlflow models serve`.

The main server writes its event log where this machine reads it (the task metrics' first
source), and the model goes through the default exchange directory (server and client share the
disk). Two more servers, each started only for its own test: one with no event log but its UI
on (task metrics from the UI's REST API), and one without spark-mllib on its classpath (no ML).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHIPPED_DATA, VENV_BIN, Tracking, mlflow_run, subprocess_env
from servers import free_port, invoke, model_server, stop_group, wait_until_serving

from sparkml_template.observability.capture import SOURCE_TAG, UI_URL_ENV
from sparkml_template.runtime.tracking import ERROR_TAG
from sparkml_template.workflows.promote import FIRST_CHAMPION

pytestmark = pytest.mark.cli
STARTUP_SECONDS = 180
NAME = "bc_connect"  # the model `main` registers over Connect
LABELS = {"benign", "malignant"}


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Connect server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(1)
    pytest.fail(f"Connect server not up after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _connect_server(
    tmp: Path, conf: dict[str, str], spark_home: Path | None = None
) -> Iterator[str]:
    """`sbin/start-connect-server.sh` of the pip pyspark (or of ``spark_home``), in the
    foreground, on a free port, with ``conf`` over the loopback defaults; its sc:// URL."""
    import pyspark

    spark_home = spark_home or Path(pyspark.__file__).parent
    port = free_port()
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": (tmp / "warehouse").as_uri(),
        **conf,
    }
    args = [f"--conf={k}={v}" for k, v in conf.items()]
    env = subprocess_env(
        SPARK_HOME=str(spark_home),
        SPARK_NO_DAEMONIZE="1",
        SPARK_LOG_DIR=str(tmp),
        SPARK_PID_DIR=str(tmp),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=str(VENV_BIN / "python"),
    )
    log = tmp / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(spark_home / "sbin" / "start-connect-server.sh"), "--master", "local[2]", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
            start_new_session=True,  # its own process group, so _stop reaches the JVM
        )
    try:
        _wait_for_port(port, proc, log)
        yield f"sc://127.0.0.1:{port}"
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    """The module's server: event log into a temp dir this machine reads."""
    tmp = tmp_path_factory.mktemp("connect")
    events = tmp / "events"
    events.mkdir()
    conf = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compression.codec": "zstd",
    }
    with _connect_server(tmp, conf) as url:
        yield url


@pytest.fixture(scope="module")
def connect_tracking(tmp_path_factory):
    import mlflow

    tmp = tmp_path_factory.mktemp("connect_runs")
    uri = f"sqlite:///{tmp}/mlflow.db"
    exp = mlflow.MlflowClient(uri).create_experiment(
        "connect", artifact_location=(tmp / "a").as_uri()
    )
    return Tracking(uri, tmp / "a", exp), tmp


def _newest_run(tracking: Tracking, entry_point: str):
    runs = tracking.client().search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.`mlflow.project.entryPoint` = '{entry_point}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert runs, f"no {entry_point} run"
    return runs[0]


@pytest.fixture(scope="module")
def connect_main(connect_url, connect_tracking):
    """One `mlflow run . -P master=sc://…` (train, then evaluate on the held-out split)."""
    tracking, _ = connect_tracking
    trained = mlflow_run(
        tracking, "-P", f"master={connect_url}", "-P", f"registeredModelName={NAME}"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    return _newest_run(tracking, "main"), trained


def test_main_over_connect(connect_main):
    run, trained = connect_main
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["spark.connect"] == "true"
    assert tags["spark.master"] == "local[2]"  # the server's master, not sc://
    assert tags[SOURCE_TAG] == "event_log", trained.stderr[-2000:]
    assert metrics["spark/tasks"] > 0
    assert metrics["accuracy"] > 0.9


def test_evaluate_over_connect(connect_url, connect_tracking, connect_main):
    tracking, _ = connect_tracking
    run, _ = connect_main
    master = f"master={connect_url}"
    uri = f"modelUri=runs:/{run.info.run_id}/model"
    evaluated = mlflow_run(tracking, "-e", "evaluate", "-P", master, "-P", uri)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    evaluation = _newest_run(tracking, "evaluate")
    expected = run.data.metrics["accuracy"]
    assert evaluation.data.metrics["accuracy"] == pytest.approx(expected, abs=0.1)
    # per-partition accuracy ran on the server's Python workers, which lack this package
    assert "per-partition eval not recorded" not in evaluated.stderr, evaluated.stderr[-2000:]
    rows = evaluation.data.metrics["partition/eval_rows"]
    assert rows > 0 and "partition/eval_accuracy" in evaluation.data.metrics


def test_predict_over_connect_and_refuses_an_existing_output(
    connect_url, connect_tracking, connect_main
):
    tracking, tmp = connect_tracking
    run, _ = connect_main
    args = ["-e", "predict", "-P", f"master={connect_url}"]
    args += ["-P", f"modelUri=runs:/{run.info.run_id}/model", "-P", f"output={tmp / 'scored'}"]
    scored = mlflow_run(tracking, *args)
    assert scored.returncode == 0, scored.stderr[-3000:]
    predict = _newest_run(tracking, "predict")
    assert predict.data.metrics["output_rows"] == predict.data.metrics["input_rows"] > 0
    written = pd.read_parquet(tmp / "scored")
    assert set(written["prediction"]) <= {"benign", "malignant"}

    again = mlflow_run(tracking, *args)
    assert again.returncode != 0
    assert "already exists" in again.stderr


def test_predict_over_connect_without_output_keeps_its_rows_in_the_run(
    connect_url, connect_tracking, connect_main, monkeypatch
):
    """The Connect server's executors are not this client's: the rows are streamed to the
    client a partition at a time, logged as the run's ``predictions/`` and read back."""
    from sparkml_template.workflows.predict_results import IN_RUN_TAG, read_predictions

    tracking, _ = connect_tracking
    run, _ = connect_main
    args = ["-e", "predict", "-P", f"master={connect_url}"]
    scored = mlflow_run(tracking, *args, "-P", f"modelUri=runs:/{run.info.run_id}/model")
    assert scored.returncode == 0, scored.stderr[-3000:]
    predict = _newest_run(tracking, "predict")
    assert predict.data.tags[IN_RUN_TAG] == "logged"
    rows = int(predict.data.metrics["output_rows"])
    assert rows == predict.data.metrics["input_rows"] > 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    written = read_predictions(predict.info.run_id)
    assert len(written) == rows
    assert set(written["prediction"]) <= {"benign", "malignant"}


def test_model_logged_over_connect_is_served_without_connect(connect_tracking, connect_main):
    """`mlflow models serve` of the logged model (its own local Spark, no Connect): rows of the
    shipped CSV posted as JSON come back as label strings, mostly the true ones."""
    tracking, tmp = connect_tracking
    run, _ = connect_main
    frame = pd.read_csv(SHIPPED_DATA).head(8)
    log = tmp / "serve.log"
    with model_server(f"runs:/{run.info.run_id}/model", tracking.uri, log) as (base, proc):
        wait_until_serving(base, proc, log)
        status, body = invoke(base, frame.drop(columns=["diagnosis"]))
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == len(frame)
    assert set(predictions) <= LABELS
    right = sum(p == d for p, d in zip(predictions, frame["diagnosis"], strict=True))
    assert right >= len(frame) - 2  # labels mapped back the right way round (accuracy > 0.9)


def test_promote_over_connect_crowns_the_first_model(connect_url, connect_tracking, connect_main):
    tracking, _ = connect_tracking
    run, _ = connect_main
    args = ["-e", "promote", "-P", f"master={connect_url}", "-P", f"registeredModelName={NAME}"]
    promoted = mlflow_run(tracking, *args)  # the candidate: @challenger, set by main
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    promotion = _newest_run(tracking, "promote")
    assert promotion.info.status == "FINISHED"
    assert promotion.data.tags["promotion.decision"] == FIRST_CHAMPION
    assert promotion.data.metrics["candidate_accuracy"] > 0.9  # scored over Connect
    champion = tracking.client().get_model_version_by_alias(NAME, "champion")
    assert (str(champion.version), champion.run_id) == ("1", run.info.run_id)


def test_tune_over_connect(connect_url, connect_tracking):
    """A small grid (2 x 1, 2 folds): cross-validation and the best model over sc://."""
    tracking, _ = connect_tracking
    grid = ["-P", "regParam=0.0,0.1", "-P", "elasticNetParam=0.0", "-P", "numFolds=2"]
    tuned = mlflow_run(tracking, "-e", "tune", "-P", f"master={connect_url}", *grid)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    (parent,) = [
        r
        for r in tracking.client().search_runs([tracking.experiment_id])
        if r.data.tags.get("mlflow.project.entryPoint") == "tune"
        and "mlflow.parentRunId" not in r.data.tags
    ]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["grid_size"] == 2
    assert parent.data.tags["spark.connect"] == "true"
    children = tracking.client().search_runs(
        [tracking.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 2
    models = tracking.client().search_logged_models([tracking.experiment_id])
    assert any(m.source_run_id == parent.info.run_id for m in models)


def test_unreachable_connect_url_is_one_line_in_seconds(connect_tracking):
    tracking, _ = connect_tracking
    port = free_port()  # nothing listens there
    result = mlflow_run(tracking, "-e", "train", "-P", f"master=sc://127.0.0.1:{port}")
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if "train: error:" in ln]
    assert len(errors) == 1 and "is unreachable" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    run = _newest_run(tracking, "train")
    assert run.info.status == "FAILED"
    assert "Spark Connect server" in run.data.tags[ERROR_TAG]


def test_serverless_without_a_volume_stops_before_training(connect_url, connect_tracking):
    """Databricks serverless, emulated: a runtime version and a Spark Connect session given by
    the platform (here through SPARK_REMOTE), but no MLFLOW_DFS_TMP volume for the model."""
    tracking, _ = connect_tracking
    env = subprocess_env(
        DATABRICKS_RUNTIME_VERSION="client.4.0",
        SPARK_REMOTE=connect_url,
        MLFLOW_TRACKING_URI=tracking.uri,
        MLFLOW_EXPERIMENT_ID=tracking.experiment_id,
    )
    for name in ("MLFLOW_DFS_TMP", "SPARKML_CONNECT_MODEL_DIR"):
        env.pop(name, None)
    result = subprocess.run(
        [str(VENV_BIN / "python"), "train.py", "--data", str(SHIPPED_DATA)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [ln for ln in result.stderr.splitlines() if "train: error:" in ln]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Unity Catalog volume" in errors[0] and "MLFLOW_DFS_TMP=/Volumes/" in errors[0]
    runs = tracking.client().search_runs(
        [tracking.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert runs[0].info.status == "FAILED"
    assert "Unity Catalog volume" in runs[0].data.tags[ERROR_TAG]


@pytest.fixture(scope="module")
def connect_ui_url(tmp_path_factory):
    """A second server: no event log, its UI on a free port."""
    tmp = tmp_path_factory.mktemp("connect_ui")
    conf = {"spark.eventLog.enabled": "false", "spark.ui.enabled": "true"}
    conf["spark.ui.port"] = str(free_port())
    with _connect_server(tmp, conf) as url:
        yield url


def _evaluate_on(url: str, tracking: Tracking, run, env: dict[str, str] | None = None):
    uri = f"modelUri=runs:/{run.info.run_id}/model"
    result = mlflow_run(tracking, "-e", "evaluate", "-P", f"master={url}", "-P", uri, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return _newest_run(tracking, "evaluate"), result


def test_task_metrics_from_the_servers_ui_when_its_event_log_is_not_readable(
    connect_ui_url, connect_tracking, connect_main, tmp_path
):
    """The run finds the server's UI from its conf (driver host, spark.ui.port) and reads the
    run's tasks from the UI's REST API."""
    tracking, _ = connect_tracking
    run, result = _evaluate_on(connect_ui_url, tracking, connect_main[0])
    assert run.data.tags[SOURCE_TAG] == "status_api", result.stderr[-2000:]
    assert run.data.metrics["spark/tasks"] > 0
    tasks_csv = tracking.client().download_artifacts(run.info.run_id, "spark/tasks.csv", tmp_path)
    assert len(pd.read_csv(tasks_csv)) == run.data.metrics["spark/tasks"]


def test_task_metrics_are_one_warning_when_the_ui_does_not_answer(
    connect_ui_url, connect_tracking, connect_main
):
    tracking, _ = connect_tracking
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run, result = _evaluate_on(connect_ui_url, tracking, connect_main[0], env={UI_URL_ENV: nowhere})
    assert run.info.status == "FINISHED"  # the run never fails for metrics
    assert run.data.tags[SOURCE_TAG] == "none"
    lines = result.stderr.splitlines()
    warnings = [ln for ln in lines if ln.startswith("task metrics:") and "Spark UI" in ln]
    assert len(warnings) == 1 and nowhere in warnings[0], result.stderr[-2000:]


def _spark_home_without_mllib(home: Path) -> Path:
    """The pip pyspark's Spark home with every jar but spark-mllib's: Spark without its ML."""
    import pyspark

    real = Path(pyspark.__file__).parent
    (home / "jars").mkdir(parents=True)
    for name in ("bin", "sbin", "python"):
        (home / name).symlink_to(real / name)
    for jar in (real / "jars").iterdir():
        if not jar.name.startswith("spark-mllib_"):
            (home / "jars" / jar.name).symlink_to(jar)
    return home


def test_a_server_without_spark_ml_is_one_line_before_training(connect_tracking, tmp_path):
    tracking, _ = connect_tracking
    home = _spark_home_without_mllib(tmp_path / "spark_home")
    with _connect_server(tmp_path, {}, spark_home=home) as url:
        result = mlflow_run(tracking, "-e", "train", "-P", f"master={url}")
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if "train: error:" in ln]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "cannot run Spark ML" in errors[0] and "spark/ml" in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    run = _newest_run(tracking, "train")
    assert run.info.status == "FAILED"
    assert "cannot run Spark ML" in run.data.tags[ERROR_TAG]
    assert "accuracy" not in run.data.metrics  # stopped before training
