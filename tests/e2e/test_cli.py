"""The real `mlflow run` CLI, end to end, against a throw-away SQLite tracking store."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import zstandard
from conftest import (
    PROJECT_ROOT,
    VENV_BIN,
    artifact_paths,
    mlflow_run,
    only_run,
    subprocess_env,
)
from servers import free_port

from sparkml_template.observability.capture import SOURCE_TAG
from sparkml_template.runtime.redaction import REDACTED
from sparkml_template.runtime.tracking import ERROR_TAG

pytestmark = pytest.mark.cli
FAKE_SECRET = "FAKE-s3a-SECRET-0123456789"


def _artifact_files(tracking, run_id: str, model: bool = False) -> list[Path]:
    """The run's artifacts, plus (``model=True``) those of the MLflow 3 logged model it made.

    ``runs:/<id>/model`` resolves to the logged model through the default tracking URI.
    """
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=tracking.uri))
    files = [p for p in local.rglob("*") if p.is_file()]
    if model:
        mlflow.set_tracking_uri(tracking.uri)
        try:
            where = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
        finally:
            mlflow.set_tracking_uri(None)
        files += [p for p in where.rglob("*") if p.is_file()]
    return files


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    """One default `mlflow run .` (the main entry point), with a fake secret in Spark conf."""
    import mlflow
    from conftest import Tracking

    tmp = tmp_path_factory.mktemp("main_run")
    uri = f"sqlite:///{tmp}/mlflow.db"
    exp = mlflow.MlflowClient(uri).create_experiment("cli", artifact_location=(tmp / "a").as_uri())
    tracking = Tracking(uri, tmp / "a", exp)
    submit = f"--conf spark.hadoop.fs.s3a.secret.key={FAKE_SECRET} pyspark-shell"
    result = mlflow_run(tracking, env={"PYSPARK_SUBMIT_ARGS": submit})
    assert result.returncode == 0, result.stderr[-3000:]
    return tracking, only_run(tracking), result


def test_main_run_logs_params_metrics_and_tags(main_run):
    _, run, _ = main_run
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    for name in ("regParam", "elasticNetParam", "maxIter", "data", "label", "seed", "master"):
        assert name in params
    assert params["LogisticRegressionModel.regParam"] == params["regParam"]
    assert "VectorAssembler.inputCols" in params
    for name in ("accuracy", "f1", "weightedPrecision", "weightedRecall", "areaUnderROC"):
        assert 0.8 < metrics[name] <= 1.0, name
    assert metrics["train_rows"] + metrics["test_rows"] == 569
    for tag in (
        "spark.version",
        "pyspark.version",
        "java.version",
        "python.version",
        "mlflow.version",
        "spark.master",
        "spark.app_id",
    ):
        assert tags[tag], tag
    assert tags["spark.master"].startswith("local")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head


def test_a_default_run_prints_no_warning_a_user_cannot_act_on(main_run):
    """No Spark/Hadoop logger warning and no netlib native-library line on a default local run;
    the JVM's own incubator-module notice is the one line left (docs/what-a-run-logs.md)."""
    _, _, result = main_run
    lines = result.stderr.splitlines()
    logged = [ln for ln in lines if " WARN " in ln or " ERROR " in ln]
    assert not logged, logged[:5]
    netlib = [ln for ln in lines if ln.startswith("netlib-")]  # native BLAS/LAPACK attempts
    assert not netlib, netlib
    assert [ln for ln in lines if ln.startswith("WARNING:")] in (
        [],
        ["WARNING: Using incubator modules: jdk.incubator.vector"],
    )


def test_main_run_logs_lineage_and_artifacts(main_run):
    tracking, run, _ = main_run
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source_type == "spark"
    assert "breast_cancer.csv" in dataset_input.dataset.source
    assert dataset_input.dataset.digest == run.data.tags["data.digest"]
    # the exact training row count, not MLflow's approximate count over Python workers
    assert json.loads(dataset_input.dataset.profile) == {"num_rows": run.data.metrics["train_rows"]}
    names = {p.name for p in _artifact_files(tracking, run.info.run_id, model=True)}
    for name in (
        "spark_conf.json",
        "MLmodel",
        "confusion_matrix.png",
        "roc_curve.png",
        "per_class_report.json",
        "requirements.txt",
        "input_example.json",
    ):
        assert name in names, name


def test_fake_secret_never_reaches_the_artifact_store(main_run):
    import json

    tracking, run, _ = main_run
    files = _artifact_files(tracking, run.info.run_id, model=True)
    conf_file = next(p for p in files if p.name == "spark_conf.json")
    conf = json.loads(conf_file.read_text())
    assert conf["spark.hadoop.fs.s3a.secret.key"] == REDACTED
    for path in files:
        assert FAKE_SECRET.encode() not in path.read_bytes(), path
    for stored in tracking.artifacts.rglob("*"):
        if stored.is_file():
            assert FAKE_SECRET.encode() not in stored.read_bytes(), stored


def test_logged_model_reloads_and_predicts_label_strings(main_run, spark):
    import mlflow
    import pandas as pd

    tracking, run, _ = main_run
    mlflow.set_tracking_uri(tracking.uri)
    uri = f"runs:/{run.info.run_id}/model"
    data = pd.read_csv(PROJECT_ROOT / "data" / "breast_cancer.csv").head(20)
    features = data.drop(columns=["diagnosis"])

    spark_model = mlflow.spark.load_model(uri)
    predicted = spark_model.transform(spark.createDataFrame(features)).select("prediction")
    spark_labels = [r["prediction"] for r in predicted.collect()]
    pyfunc_labels = list(mlflow.pyfunc.load_model(uri).predict(features))
    assert spark_labels == pyfunc_labels
    assert set(pyfunc_labels) <= {"benign", "malignant"}
    agreement = sum(p == a for p, a in zip(pyfunc_labels, data["diagnosis"], strict=True))
    assert agreement >= 16
    info = mlflow.models.get_model_info(uri)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == list(features.columns)
    mlflow.set_tracking_uri(None)


def test_evaluate_defaults_to_the_newest_trained_model_and_gates(main_run):
    tracking, train_run, _ = main_run
    result = mlflow_run(tracking, "-e", "evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tracking.client().search_runs(
        [tracking.experiment_id], order_by=["attributes.start_time DESC"]
    )
    evaluation = runs[0]
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["evaluated_model_uri"] == f"runs:/{train_run.info.run_id}/model"
    assert evaluation.data.metrics["eval_rows"] == 569
    assert evaluation.data.metrics["accuracy"] > 0.9
    names = {p.name for p in _artifact_files(tracking, evaluation.info.run_id)}
    assert {"confusion_matrix.png", "roc_curve.png", "per_class_report.json"} <= names

    gated = mlflow_run(tracking, "-e", "evaluate", "-P", "minAccuracy=0.9999")
    assert gated.returncode != 0
    lines = [ln for ln in gated.stderr.splitlines() if "evaluate: error:" in ln]
    assert len(lines) == 1 and "below minAccuracy 0.9999" in lines[0]
    latest = tracking.client().search_runs(
        [tracking.experiment_id], order_by=["attributes.start_time DESC"]
    )[0]
    assert latest.info.status == "FAILED"
    assert latest.data.metrics["accuracy"] == evaluation.data.metrics["accuracy"]  # logged first


@pytest.fixture
def git_daemon(tmp_path):
    """This working tree, committed into a bare repo and served by `git daemon` on 127.0.0.1."""
    work = tmp_path / "work"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (PROJECT_ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, work / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], cwd=work, check=True)
    base = tmp_path / "served"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(base / "template.git")], check=True
    )
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):  # bounded: up to ~5 s
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("git daemon did not start")
        yield f"git://127.0.0.1:{port}/template.git"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_git_url_run_with_a_parameter(tracking, git_daemon):
    result = mlflow_run(tracking, "-e", "train", "-P", "regParam=0.1", project=git_daemon)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tracking)
    assert run.info.status == "FINISHED"
    assert run.data.params["regParam"] == "0.1"
    assert run.data.params["LogisticRegressionModel.regParam"] == "0.1"
    assert run.data.tags["mlflow.source.name"] == git_daemon
    assert run.data.tags["data.uri"].endswith("data/breast_cancer.csv")


def test_uv_env_manager_builds_the_pinned_env_offline(tracking):
    """`--env-manager uv` turns conda.yaml into a uv env with pyenv's Python, no downloads."""
    assert (VENV_BIN / "uv").exists()  # pinned in requirements-dev.txt
    result = subprocess.run(
        [
            str(VENV_BIN / "mlflow"),
            "run",
            str(PROJECT_ROOT),
            "--env-manager",
            "uv",
            "-e",
            "train",
            "--experiment-id",
            tracking.experiment_id,
            "-P",
            "maxIter=5",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=PROJECT_ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking.uri, UV_PYTHON_DOWNLOADS="never"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tracking)
    assert run.info.status == "FINISHED"
    assert run.data.tags["python.version"] == "3.11.7"
    assert "accuracy" in run.data.metrics


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-P", "learningRate=0.1"], "unknown parameter 'learningRate'"),
        (["-P", "regParam=abc"], "regParam must be a number, got 'abc'"),
        (["-P", "data=missing/file.csv"], "data not found: missing/file.csv"),
    ],
)
def test_bad_input_is_one_line_and_a_failed_run(tracking, args, expected):
    result = mlflow_run(tracking, "-e", "train", *args)
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if "train: error:" in ln]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert expected in run.data.tags[ERROR_TAG]


def test_train_entry_point_logs_task_metrics_from_its_event_log(tracking, tmp_path):
    secret = "Zx9-not-for-artifacts-77"
    proc = mlflow_run(
        tracking,
        "-e",
        "train",
        "-P",
        "master=local[2]",
        env={
            "PYSPARK_SUBMIT_ARGS": f"--conf spark.hadoop.fs.s3a.secret.key={secret} pyspark-shell",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(tracking)
    metrics, tags = run.data.metrics, run.data.tags
    assert tags[SOURCE_TAG] == "event_log"
    assert metrics["spark/tasks"] >= metrics["spark/stages"] >= 1
    assert metrics["spark/jobs"] >= 1 and metrics["spark/executors"] == 1
    assert metrics["spark/executor_run_time_ms"] > 0
    assert "spark/stragglers" in metrics and "spark/task_duration_p95_ms" in metrics
    assert metrics["partition/data_rows"] == 569  # the shipped data: one partition
    assert metrics["partition/data_label_benign"] == 357
    client = tracking.client()
    files = artifact_paths(client, run.info.run_id)
    assert {f"spark/{n}" for n in ("tasks.csv", "timeline.png", "stage_durations.png")} <= files
    assert {"spark/tasks_table.json", "spark/stages_table.json", "spark/eventlog"} <= files
    (log,) = artifact_paths(client, run.info.run_id, "spark/eventlog")
    local = client.download_artifacts(run.info.run_id, log, str(tmp_path))
    text = zstandard.decompress(Path(local).read_bytes(), max_output_size=1 << 30).decode()
    assert '"spark.hadoop.fs.s3a.secret.key"' in text and secret not in text
    assert text.rstrip().splitlines()[-1].startswith('{"Event":"SparkListenerApplicationEnd"')
    for artifact in client.list_artifacts(run.info.run_id, "spark"):
        if not artifact.is_dir and artifact.path.endswith((".csv", ".json")):
            path = client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path))
            assert secret not in Path(path).read_text(), artifact.path
