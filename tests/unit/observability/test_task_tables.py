"""The task table is right: it adds up to Spark's own stage totals, keeps only the run's jobs,
flags a skewed partition, shows a retried task with its reason, and its copy of the log keeps
no secret and replays as a complete application."""

from __future__ import annotations

import pytest
from eventlog_apps import (
    FAILING_PARTITION,
    OTHER_RUN_ID,
    RUN_ID,
    SECRET,
    SKEW_ROWS,
    app_log,
    app_run,
)

from sparkml_template.observability import task_tables
from sparkml_template.observability.capture import (
    FACTOR_ENV,
    FAILURES_TAG,
    MIN_MS_ENV,
    MIN_TASKS_ENV,
    SLOWNESS_TAG,
    SOURCE_TAG,
    STRAGGLERS_TAG,
    log_run_metrics,
    read_run_log,
)
from sparkml_template.observability.eventlog import ReadStats, iter_lines, read_events
from sparkml_template.observability.eventlog_copy import RunLogWriter, redact_event, secret_values
from sparkml_template.observability.task_events import RunEvents, collect_run_events, run_tag
from sparkml_template.runtime.redaction import REDACTED

# Task-table total -> Spark's accumulator(s) for the same stage total (CPU and write time in ns).
ACCUMULABLES = {
    "executor_run_time_ms_total": (["executorRunTime"], 1),
    "jvm_gc_time_ms_total": (["jvmGCTime"], 1),
    "executor_cpu_time_ms_total": (["executorCpuTime"], 1e-6),
    "shuffle_read_bytes_total": (
        ["shuffle.read.localBytesRead", "shuffle.read.remoteBytesRead"],
        1,
    ),
    "shuffle_read_records_total": (["shuffle.read.recordsRead"], 1),
    "shuffle_write_bytes_total": (["shuffle.write.bytesWritten"], 1),
    "shuffle_write_records_total": (["shuffle.write.recordsWritten"], 1),
    "input_records_total": (["input.recordsRead"], 1),
}


@pytest.mark.parametrize("app", ["rolling", "retry"])
def test_per_stage_sums_equal_sparks_stage_totals(spark_apps, app):
    run = app_run(spark_apps, app)
    stages = task_tables.stage_summary(task_tables.tasks_frame(run.tasks), run.stages)
    assert len(stages) == len(run.stages) > 0
    checked = 0
    for row in stages.to_dict("records"):
        spark_totals = run.stages[(row["stage_id"], row["stage_attempt"])].accumulables
        assert spark_totals, row  # StageCompleted carried the accumulables
        for column, (names, scale) in ACCUMULABLES.items():
            expected = sum(spark_totals.get(f"internal.metrics.{n}", 0) for n in names) * scale
            assert row[column] == pytest.approx(expected, rel=1e-9, abs=1e-6), (column, row)
            checked += expected > 0
    assert checked >= len(stages)  # the comparison was not all zeros


def test_only_the_runs_jobs_stages_and_tasks_are_kept(spark_apps):
    path = app_log(spark_apps, "rolling")
    ours = app_run(spark_apps, "rolling")
    other = read_run_log(path, run_tag(OTHER_RUN_ID))
    everything = collect_run_events(iter_lines(path), tag=None)
    assert ours.jobs and other.jobs
    assert set(ours.jobs).isdisjoint(other.jobs)
    assert set(ours.jobs) | set(other.jobs) == set(everything.jobs)
    assert len(ours.tasks) + len(other.tasks) == len(everything.tasks)
    assert {(t["stage_id"], t["stage_attempt"]) for t in ours.tasks} == set(ours.stages)
    assert ours.sql_executions and ours.complete()


def test_a_skewed_partition_of_an_unsized_stage_is_flagged_against_its_wave(spark_apps):
    run = app_run(spark_apps, "rolling")
    tasks = task_tables.tasks_frame(run.tasks)
    skewed_job = min(run.jobs)  # the workload's first job is the skewed one
    stage = tasks[tasks["job_id"] == skewed_job]
    assert sorted(stage["partition_id"]) == list(range(len(SKEW_ROWS)))
    heavy = SKEW_ROWS.index(max(SKEW_ROWS))
    stages = task_tables.stage_summary(tasks, run.stages)
    assert stages.loc[stages["job_id"] == skewed_job, "task_skew"].iloc[0] > 3
    # Its tasks read no records (a Python job over generated rows), so nothing tells skew from
    # slowness: durations are compared, within the wave. On local[2] partitions 0 and 1 are the
    # first wave; the heavy partition 3 is compared with partition 2 only.
    warm = set(stage.loc[task_tables.warm_tasks(stage), "partition_id"])
    assert warm == {2, 3}
    flagged = task_tables.find_stragglers(stage)
    assert list(flagged["partition_id"]) == [heavy]
    assert flagged["ratio_to_median"].iloc[0] >= task_tables.DEFAULT_STRAGGLER_FACTOR
    # A sized stage of the same shape is not flagged: tests/unit/observability/test_per_host.py.


def test_a_task_that_failed_once_shows_its_retry_reason_and_success_totals(spark_apps):
    run = app_run(spark_apps, "retry")
    tasks = task_tables.tasks_frame(run.tasks)
    retried = task_tables.retries_and_failures(tasks)
    rows = zip(retried["partition_id"], retried["attempt"], retried["status"], strict=True)
    assert list(rows) == [
        (FAILING_PARTITION, 0, "FAILED"),
        (FAILING_PARTITION, 1, "SUCCESS"),
    ]
    reason = retried["failure_reason"].iloc[0]
    assert reason.startswith("ExceptionFailure: ")
    assert "RuntimeError: deliberate failure on the first attempt" in reason
    done = tasks[tasks["status"] == "SUCCESS"]
    assert sorted(done["partition_id"]) == [0, 1, 2, 3]  # each partition succeeded once
    metrics = task_tables.run_metrics(tasks, task_tables.stage_summary(tasks, run.stages), 1)
    assert (metrics["tasks"], metrics["task_failures"], metrics["task_retries"]) == (5, 1, 1)
    assert spark_apps["retry"]["result"]["sum"] == sum(range(1000))  # the job still succeeded
    stage = task_tables.stage_summary(tasks, run.stages).iloc[0]
    assert (stage["tasks"], stage["failed_tasks"]) == (5, 1)


def test_the_logged_copy_has_no_secret_and_replays_as_a_finished_application(
    spark_apps, tmp_path, monkeypatch
):
    path = app_log(spark_apps, "rolling")
    raw = "\n".join(iter_lines(path))
    assert SECRET not in raw  # Spark redacts its environment event itself...
    assert "spark.hadoop.fs.s3a.secret.key" in raw
    # ...but a secret in the environment or a job's local property is ours to catch.
    monkeypatch.setenv("SPARKML_TEST_API_TOKEN", "tok-3141592653")
    leaky = tmp_path / "leaky"
    tags = f'"spark.job.tags":"{run_tag(RUN_ID)}"'
    assert tags in raw
    leaky.write_text(raw.replace(tags, f'{tags},"my.note":"tok-3141592653"') + "\n")
    secrets = secret_values([("spark.hadoop.fs.s3a.secret.key", SECRET)])
    assert {SECRET, "tok-3141592653"} <= set(secrets)
    app_id = spark_apps["rolling"]["app_id"]
    copy = RunLogWriter(tmp_path / "out", app_id, secrets, None)
    run = read_run_log(leaky, run_tag(RUN_ID), copy)
    text = "\n".join(iter_lines(copy.path))
    assert copy.path.name == f"{app_id}.zstd"
    assert SECRET not in text and "tok-3141592653" not in text and REDACTED in text
    replay = list(read_events(copy.path))
    names = [e["Event"] for e in replay]
    assert names[0] == "SparkListenerLogStart" and names[-1] == "SparkListenerApplicationEnd"
    assert "SparkListenerEnvironmentUpdate" in names and "SparkListenerApplicationStart" in names
    replayed = collect_run_events(iter_lines(copy.path), tag=run_tag(RUN_ID))
    assert task_tables.tasks_frame(replayed.tasks).equals(task_tables.tasks_frame(run.tasks))
    other_jobs = read_run_log(path, run_tag(OTHER_RUN_ID)).jobs
    assert not set(other_jobs) & {e.get("Job ID") for e in replay if "Job ID" in e}


def test_local_properties_are_redacted_by_key_and_value():
    event = {
        "Event": "SparkListenerJobStart",
        "Properties": {"spark.job.tags": "mlflow-run-1", "db.password": "hunter2", "x": "ok"},
    }
    redacted = redact_event(event)
    assert redacted["Properties"]["db.password"] == REDACTED
    assert redacted["Properties"]["spark.job.tags"] == "mlflow-run-1"
    env = {"Event": "SparkListenerEnvironmentUpdate", "System Properties": [["a.token", "v"]]}
    assert redact_event(env)["System Properties"] == [["a.token", REDACTED]]


def test_summaries_and_metrics_have_the_issues_names(spark_apps):
    run = app_run(spark_apps, "rolling")
    tasks = task_tables.tasks_frame(run.tasks)
    stages = task_tables.stage_summary(tasks, run.stages)
    metrics = task_tables.run_metrics(tasks, stages, len(run.jobs))
    for name in (
        "tasks", "task_failures", "stages", "task_duration_p50_ms", "task_duration_p95_ms",
        "task_duration_max_ms", "task_skew", "shuffle_read_bytes", "shuffle_write_bytes",
        "gc_time_ms", "executor_run_time_ms", "spill_bytes", "executors",
    ):  # fmt: skip
        assert name in metrics, name
    assert metrics["tasks"] == len(tasks) and metrics["stages"] == len(run.stages)
    assert metrics["shuffle_write_bytes"] == tasks["shuffle_write_bytes"].sum() > 0
    assert metrics["task_duration_p50_ms"] <= metrics["task_duration_p95_ms"]
    assert metrics["task_duration_p95_ms"] <= metrics["task_duration_max_ms"]
    executors = task_tables.executor_summary(tasks)
    assert executors["tasks"].sum() == len(tasks)
    assert list(tasks.columns[:6]) == [
        "job_id", "stage_id", "stage_attempt", "task_id", "partition_id", "attempt",
    ]  # fmt: skip
    assert (tasks["executor_cpu_time_ms"] < tasks["executor_run_time_ms"] + 1000).all()


def test_an_empty_run_gives_empty_tables_not_errors():
    run = RunEvents("mlflow-run-nothing", ReadStats())
    tasks = task_tables.tasks_frame(run.tasks)
    stages = task_tables.stage_summary(tasks, run.stages)
    metrics = task_tables.run_metrics(tasks, stages, 0)
    assert metrics["tasks"] == 0 and "task_skew" not in metrics
    assert task_tables.find_stragglers(tasks).empty


def test_stragglers_and_failures_are_flagged_on_the_run(
    spark_apps, tracking, monkeypatch, tmp_path
):
    import mlflow

    monkeypatch.setenv(FACTOR_ENV, "1.5")
    monkeypatch.setenv(MIN_MS_ENV, "0")
    monkeypatch.setenv(MIN_TASKS_ENV, "2")  # the default; the variable is read
    client = tracking.client()
    for app in ("rolling", "retry"):
        with mlflow.start_run() as run:
            (tmp_path / app).mkdir()
            log_run_metrics(run.info.run_id, app_run(spark_apps, app), "event_log", tmp_path / app)
        tags = client.get_run(run.info.run_id).data.tags
        assert tags[SOURCE_TAG] == "event_log"
        if app == "rolling":  # the skewed job; the retry app's timing is Python start-up noise
            assert ">= 1.5x stage median" in tags[STRAGGLERS_TAG]
        assert tags.get(FAILURES_TAG) == ("1" if app == "retry" else None)
        files = {a.path for a in client.list_artifacts(run.info.run_id, "spark")}
        assert {"spark/stragglers.csv", "spark/failures.csv", "spark/timeline.png"} <= files
        assert {"spark/hosts.csv", "spark/lost_executors.csv", "spark/hosts_table.json"} <= files
        metrics = client.get_run(run.info.run_id).data.metrics
        assert metrics["spark/hosts"] == 1 and metrics["spark/lost_executors"] == 0
        assert metrics["spark/slowest_host_ratio"] == 1.0 and tags[SLOWNESS_TAG].startswith("{")


def test_only_real_looking_secret_values_are_scrubbed_from_lines():
    conf = [("a.token.enabled", "true"), ("b.secret.port", "12345678"), ("c.password", "pw-1")]
    conf.append(("d.password", "longer-secret-1"))
    assert secret_values(conf, environ={"MY_API_TOKEN": "tok-abcdefgh"}) == [
        "longer-secret-1",
        "tok-abcdefgh",
    ]
