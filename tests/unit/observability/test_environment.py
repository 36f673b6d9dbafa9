"""Each executor's environment: recorded in a real local run, the probe job on real Python
workers (and not counted as the run's work), grading on crafted records, the comparison with
the last successful run, and a probe that does not finish in time. On hosts that really differ:
tests/e2e/test_hosts.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
from conftest import artifact_paths, only_run

from sparkml_template.observability import environment_probe
from sparkml_template.observability.capture import TaskCapture
from sparkml_template.observability.environment import (
    FINGERPRINT_TAG,
    GRADE_TAG,
    PROBE_MS_METRIC,
    SINCE_TAG,
    TAG,
    TIMEOUT_ENV,
    EnvironmentProbe,
    fingerprint,
    fingerprint_tag,
    grade_environment,
    log_environment,
    since_line,
)
from sparkml_template.workflows.runner import RunContext, run_entry_point
from sparkml_template.workflows.train import prepare_training


def test_a_local_run_records_the_driver_and_its_executor(spark, tracking):
    import numpy
    import pyspark

    def body(ctx: RunContext) -> None:
        ctx.spark.range(10).count()

    assert run_entry_point("train", ["--master", "local[2]"], prepare_training, body) == 0
    run = only_run(tracking)
    tags, client = run.data.tags, tracking.client()
    assert tags[GRADE_TAG] == "same"
    assert tags[TAG] == "same on 1 executor, 1 host"
    assert PROBE_MS_METRIC in run.data.metrics
    assert SINCE_TAG not in tags  # no earlier run to compare with
    assert {"spark/environment.csv", "spark/environment_table.json"} <= artifact_paths(
        client, run.info.run_id
    )
    table = pd.read_csv(
        client.download_artifacts(run.info.run_id, "spark/environment.csv"), dtype=str
    )
    assert list(table["role"]) == ["driver", "executor"]
    assert list(table["executor_id"]) == ["driver", "driver"]
    assert table["host"].iloc[1] == "localhost"  # what Spark's event log says in local mode
    assert set(table["numpy"]) == {numpy.__version__}
    assert set(table["pyspark"]) == {pyspark.__version__}
    assert (
        table["java"].iloc[0].split(".")[0]
        == spark.sparkContext._jvm.java.lang.System.getProperty("java.version").split(".")[0]
    )
    assert table["canary"].iloc[0] == environment_probe.canary()
    assert json.loads(tags[FINGERPRINT_TAG])["localhost"]["numpy"] == numpy.__version__


def test_the_probe_job_runs_on_python_workers_and_is_not_the_runs_work(spark, tracking):
    import mlflow
    import numpy

    sc = spark.sparkContext
    with mlflow.start_run() as run:
        capture = TaskCapture(enabled=True)
        capture.begin(spark, run.info.run_id)  # tags this thread's jobs with the run
        probe = EnvironmentProbe.start(spark, run.info.run_id, tracking.experiment_id, use_job=True)
        sc.parallelize(range(100), 3).sum()  # the run's one job
        probe._thread.join(120)
        capture.finish()
        probe.finish()
    assert not probe.error, probe.error
    (executor,) = probe.rows  # many tasks, one executor
    assert (executor["role"], executor["executor_id"], executor["host"]) == (
        "executor", "driver", "localhost"
    )  # fmt: skip
    assert executor["numpy"] == numpy.__version__
    assert executor["java"]  # read from the JVM's own release file, not from Py4J
    assert executor["canary"] == probe.driver["canary"]
    data = tracking.client().get_run(run.info.run_id).data
    assert data.metrics["spark/jobs"] == 1  # the probe's job carried its own tag only
    assert data.metrics["spark/tasks"] == 3
    assert data.tags[GRADE_TAG] == "same", data.tags.get("spark.environment")


def _record(host: str, **changed: str) -> dict[str, str]:
    base = {
        "role": "executor", "executor_id": "1", "host": host, "python": "3.11.7",
        "pyspark": "4.3.0", "numpy": "2.3.5", "pandas": "2.3.3", "timezone": "UTC (+0000)",
        "blas_threadpoolctl": "openblas 0.3.29 (libopenblas.so), 2 threads",
        "blas_netlib": "java", "canary": "aaaa", "OMP_NUM_THREADS": "",
    }  # fmt: skip
    return {**base, **changed}


def test_grades_name_what_differs_and_where():
    driver = _record("192.0.2.2", role="driver", executor_id="driver", OMP_NUM_THREADS="")
    same = [_record("198.51.100.11"), _record("198.51.100.12", OMP_NUM_THREADS="1")]
    assert grade_environment(driver, same).line == "same on 2 executors, 2 hosts"

    fatal = grade_environment(driver, [_record("198.51.100.12", python="3.12.1")])
    assert fatal.grade == "fatal"
    assert fatal.line == "fatal: python 3.12.1 on 198.51.100.12 (driver 3.11.7)"
    assert grade_environment(driver, [_record("h", python="3.11.9")]).grade == "same"

    numeric = grade_environment(
        driver,
        [
            _record("198.51.100.11"),
            _record("198.51.100.12", numpy="1.26.4", timezone="CET (+0100)"),
            _record("198.51.100.13", canary="bbbb"),
        ],
    )
    assert numeric.grade == "numeric"
    assert numeric.line == (
        "numeric: numpy 1.26.4 on 198.51.100.12 (driver 2.3.5); canary differs on "
        "198.51.100.13; timezone CET (+0100) on 198.51.100.12 (driver UTC (+0000))"
    )
    blas = _record("h", blas_threadpoolctl="mkl 2024.1 (libmkl_rt.so), 2 threads")
    assert grade_environment(driver, [blas]).grade == "numeric"
    threads = _record("h", blas_threadpoolctl="openblas 0.3.29 (libopenblas.so), 1 threads")
    assert grade_environment(driver, [threads]).grade == "same"
    native = _record("h", blas_netlib="native: /usr/lib/libopenblas.so.0")
    assert grade_environment({**driver, "blas_netlib": "java: VectorBLAS"}, [native]).grade == (
        "numeric"
    )
    no_mlflow = _record("h", mlflow="")  # recorded where installed, not required
    assert grade_environment({**driver, "mlflow": "3.17.2"}, [no_mlflow]).grade == "same"
    no_threadpoolctl = _record("h", blas_threadpoolctl="")  # the canary still compares
    assert grade_environment(driver, [no_threadpoolctl]).grade == "same"
    connect_client = {**driver, "java": ""}  # no JVM in a Spark Connect client
    assert grade_environment(connect_client, [_record("h", java="17.0.15")]).grade == "same"
    tz = grade_environment(driver, [_record("198.51.100.12", timezone="CET (+0100)")])
    assert tz.grade == "cosmetic"
    assert grade_environment(driver, []).grade == "unknown"


def test_since_names_the_host_whose_numeric_facts_changed(tracking):
    import mlflow

    driver = _record("192.0.2.2", role="driver", executor_id="driver")
    client = tracking.client()
    first = client.create_run(tracking.experiment_id).info.run_id
    before = fingerprint(driver, [_record("198.51.100.12")])
    verdict = grade_environment(driver, [_record("198.51.100.12")])
    log_environment(
        first, driver, [_record("198.51.100.12")], verdict, "", fingerprint_tag(before), 5.0
    )
    client.set_terminated(first, "FINISHED")
    failed = client.create_run(tracking.experiment_id).info.run_id  # newer, but not successful
    changed = fingerprint(driver, [_record("198.51.100.12", numpy="9.9.9")])
    client.set_tag(failed, FINGERPRINT_TAG, fingerprint_tag(changed))
    client.set_terminated(failed, "FAILED")

    with mlflow.start_run() as run:
        probe = EnvironmentProbe(
            None, run.info.run_id, tracking.experiment_id, "", time.monotonic(), 12.0,
            driver=driver, rows=[_record("198.51.100.12", numpy="1.26.4")],
        )  # fmt: skip
        probe.finish()
    tags = client.get_run(run.info.run_id).data.tags
    assert tags[SINCE_TAG] == f"host 198.51.100.12: numpy 2.3.5 -> 1.26.4 since run {first}"
    assert tags[GRADE_TAG] == "numeric"
    assert since_line(before, before, first) == ""


def test_a_probe_that_does_not_finish_in_time_is_unknown_and_never_raises(
    spark, tracking, monkeypatch, capsys
):
    import mlflow

    release = threading.Event()
    real = environment_probe.driver_record

    def stuck(spark, connect):
        release.wait(60)
        return real(spark, connect)

    monkeypatch.setattr(environment_probe, "driver_record", stuck)
    monkeypatch.setenv(TIMEOUT_ENV, "0")
    with mlflow.start_run() as run:
        probe = EnvironmentProbe.start(spark, run.info.run_id, tracking.experiment_id)
        probe.finish()  # the thread is still waiting: cancelled, graded unknown
    release.set()
    probe._thread.join(60)
    tags = tracking.client().get_run(run.info.run_id).data.tags
    assert tags[GRADE_TAG] == "unknown"
    assert tags[TAG] == "unknown: the probe did not finish within 0 s"
    assert "environment: unknown" in capsys.readouterr().err
    assert not Path(tracking.artifacts, run.info.run_id, "artifacts", "spark").exists()


def test_switched_off_records_nothing(spark, tracking, monkeypatch):
    import mlflow

    monkeypatch.setenv("SPARKML_ENV_PROBE", "off")
    with mlflow.start_run() as run:
        probe = EnvironmentProbe.start(spark, run.info.run_id, tracking.experiment_id)
        probe.finish()
    assert probe._thread is None
    assert GRADE_TAG not in tracking.client().get_run(run.info.run_id).data.tags
