"""Task metrics inside real runs: on a session someone else created (the test session's, which
has no event log) through Spark's REST API, after a body that raised, per-partition data and
accuracy. End to end through `mlflow run`, with the event log and its copy:
tests/e2e/test_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import artifact_paths, only_run

from sparkml_template.dataset.validation import profile_dataset
from sparkml_template.errors import UserError
from sparkml_template.observability.capture import SOURCE_TAG, TaskCapture
from sparkml_template.observability.partitions import (
    data_partitions,
    log_partitions,
    prediction_partitions,
)
from sparkml_template.workflows.runner import RunContext, run_entry_point
from sparkml_template.workflows.train import prepare_training


def test_a_shared_session_without_event_log_falls_back_to_the_rest_api(spark, tracking):
    import mlflow

    sc = spark.sparkContext
    sc.parallelize(range(10), 2).count()  # before the run: not the run's
    with mlflow.start_run() as run:
        capture = TaskCapture(enabled=True)
        capture.begin(spark, run.info.run_id)
        assert sc.parallelize(range(1000), 3).map(lambda x: x % 4).distinct().count() == 4
        capture.finish()
    sc.parallelize(range(10), 2).count()  # after: not tagged any more
    client = tracking.client()
    data = client.get_run(run.info.run_id).data
    assert data.tags[SOURCE_TAG] == "status_api"
    assert data.metrics["spark/jobs"] == 1
    assert data.metrics["spark/tasks"] == 3 + 3  # map side and reduce side of distinct()
    assert data.metrics["spark/stages"] == 2
    assert data.metrics["spark/shuffle_write_bytes"] == data.metrics["spark/shuffle_read_bytes"]
    assert data.metrics["spark/shuffle_read_bytes"] > 0
    files = artifact_paths(client, run.info.run_id)
    assert {"spark/tasks.csv", "spark/stages.csv", "spark/timeline.png"} <= files
    assert "spark/eventlog" not in files  # nothing to copy without an event log
    assert run_tag_removed(sc)


def run_tag_removed(sc) -> bool:
    return not any(t.startswith("mlflow-run-") for t in sc.getJobTags())


def test_metrics_are_captured_when_the_body_raises(spark, tracking):
    def body(ctx: RunContext) -> None:
        ctx.spark.sparkContext.parallelize(range(100), 4).sum()
        raise UserError("the body failed after one Spark job")

    code = run_entry_point("train", ["--master", "local[2]"], prepare_training, body)
    assert code == UserError.exit_code
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert run.data.metrics["spark/tasks"] == 4
    assert run.data.metrics["spark/task_failures"] == 0
    assert run.data.tags[SOURCE_TAG] == "status_api"
    assert run_tag_removed(spark.sparkContext)


def test_capture_problems_are_a_warning_never_an_exception(spark, capsys):
    capture = TaskCapture(enabled=True)
    capture.begin(spark, "no-such-run-id")
    spark.sparkContext.parallelize(range(10), 2).count()
    capture.finish()  # logging to a run that does not exist: warns, does not raise
    assert "task metrics: not recorded" in capsys.readouterr().err
    assert run_tag_removed(spark.sparkContext)
    assert TaskCapture(enabled=False).spark_conf() == {}


def test_per_partition_rows_labels_nulls_and_accuracy(spark, tracking):
    import mlflow

    rows = [(i, None if i % 10 == 0 else float(i), "a" if i < 30 else "b") for i in range(40)]
    # partition 0 holds `rows`, partition 1 nothing, partition 2 one row without a label
    data = [rows, [], [(99, None, None)]]
    parts = spark.sparkContext.parallelize(data, 3).flatMap(lambda p: p)
    df = spark.createDataFrame(parts, "id int, x double, label string")
    table = data_partitions(profile_dataset(df, "label"))
    assert [r["partition_id"] for r in table] == [0, 1, 2]
    first, empty, second = table
    assert (empty["rows"], empty["label_a"]) == (0, 0)
    assert (first["rows"], first["label_a"], first["label_b"]) == (40, 30, 10)
    assert (first["null_feature_cells"], first["null_label_rows"]) == (4, 0)
    assert (second["rows"], second["null_label_rows"], second["label_a"]) == (1, 1, 0)

    scored = spark.createDataFrame(
        [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), (None, "a")], "label string, p string"
    ).coalesce(1)
    (only,) = prediction_partitions(scored, "label", "p")
    assert (only["rows"], only["correct"], only["accuracy"]) == (4, 3, 0.75)
    assert only["attempt"] == 0  # from TaskContext on the executor

    with mlflow.start_run() as run:
        log_partitions(run.info.run_id, "train", table)
    client = tracking.client()
    history = client.get_metric_history(run.info.run_id, "partition/train_rows")
    assert sorted((m.step, m.value) for m in history) == [(0, 40.0), (1, 0.0), (2, 1.0)]
    logged = client.download_artifacts(run.info.run_id, "spark/partitions/train.json")
    columns = json.loads(Path(logged).read_text())["columns"]
    assert columns[:2] == ["partition_id", "rows"] and "label_a" in columns
