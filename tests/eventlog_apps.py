"""Real Spark applications that write event logs for the task-metrics tests.

The test session's shared SparkSession has no event log (and is ``local[2]``), so these run in a
subprocess: ``python tests/eventlog_apps.py OUT_DIR`` starts three SparkContexts one after the
other (one JVM start) and writes ``OUT_DIR/manifest.json``:

- ``rolling``: Spark 4's default log (rolling directory, zstd), with an untagged job from
  "another run", a skewed job (one partition 10x the others), a shuffle and a DataFrame query;
  a secret in the Hadoop conf that must never reach an artifact.
- ``plain``: the same deterministic workload with ``spark.eventLog.rolling.enabled=false`` and
  ``spark.eventLog.compress=false``.
- ``retry``: master ``local[2,3]`` (3 attempts per task); partition 1 fails on attempt 0.

``python tests/eventlog_apps.py OUT_DIR lost`` instead runs ``lost`` alone: master
``local-cluster[2,1,1024]`` (two real executor JVMs); a shuffle whose reduce task
``KILL_PARTITION`` ``kill -9``s its own executor JVM on its first attempt, so the log holds a
real executor loss, the tasks it failed and the re-runs.

``shared_manifest`` runs it once per test session and hands the manifest to the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "0123456789abcdef"
OTHER_RUN_ID = "fedcba9876543210"
SECRET = "s3cr3t-VALUE-4bX9"
SKEW_ROWS = [4, 4, 4, 40]  # partition 3 is 10x the others
SLEEP_PER_ROW_S = 0.075
FAILING_PARTITION = 1
KILL_PARTITION = 0
EXECUTOR_MAIN = "CoarseGrainedExecutorBackend"


def _slow_rows(index, _rows):
    """Partition ``index`` yields SKEW_ROWS[index] rows, each costing the same time."""
    for row in range(SKEW_ROWS[index]):
        time.sleep(SLEEP_PER_ROW_S)
        yield row


def _fail_first_attempt(index, rows):
    from pyspark import TaskContext

    if index == FAILING_PARTITION and TaskContext.get().attemptNumber() == 0:
        raise RuntimeError("deliberate failure on the first attempt")
    return rows


def _executor_jvm_pid() -> int | None:
    """The executor JVM above this Python worker (worker -> pyspark daemon -> JVM), from /proc."""
    import os

    pid = os.getpid()
    for _ in range(4):
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])  # ppid, after the command name
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if EXECUTOR_MAIN.encode() in cmdline.read():
                return pid
    return None


def _kill_own_executor_once(marker: str):
    """Partition ``KILL_PARTITION`` SIGKILLs the executor running it, the first time only (the
    marker file, on this machine's disk, says it happened: a resubmitted stage starts its
    attempts at 0 again)."""

    def kill(index, rows):
        import os
        import signal

        if index != KILL_PARTITION:
            return rows
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return rows
        time.sleep(1.0)  # the other executor is busy with its own reduce tasks meanwhile
        pid = _executor_jvm_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(30)  # never returns: the JVM is gone and takes this worker along
        return rows

    return kill


def lost_executor_app(out: Path) -> dict:
    """The ``lost`` application (see the module docstring); returns its manifest entry."""
    from sparkml_template.observability.task_events import run_tag

    spark = _session("local-cluster[2,1,1024]", out / "lost", {"spark.task.maxFailures": "4"})
    sc = spark.sparkContext
    sc.addJobTag(run_tag(RUN_ID))
    pairs = sc.parallelize(range(20_000), 6).map(lambda x: (x % 12, x))
    reduced = pairs.reduceByKey(lambda a, b: a + b, 4).mapPartitionsWithIndex(
        _kill_own_executor_once(str(out / "killed"))
    )
    total = sum(v for _, v in reduced.collect())
    entry = {"app_id": sc.applicationId, "result": {"sum": total}, "log_dir": str(out / "lost")}
    spark.stop()
    return entry


def _workload(spark, tag: str) -> dict:
    """Jobs tagged as one run's, after one job of another run; returns what they computed."""
    from sparkml_template.observability.task_events import run_tag

    sc = spark.sparkContext
    sc.addJobTag(run_tag(OTHER_RUN_ID))
    sc.parallelize(range(100), 3).sum()
    sc.removeJobTag(run_tag(OTHER_RUN_ID))

    sc.addJobTag(tag)
    parts = len(SKEW_ROWS)
    skewed = sc.parallelize(range(parts), parts).mapPartitionsWithIndex(_slow_rows).count()
    pairs = sc.parallelize(range(10_000), 4).map(lambda x: (x % 7, 1))
    counts = dict(pairs.reduceByKey(lambda a, b: a + b, 3).collect())
    frame = spark.range(0, 50_000, numPartitions=4).selectExpr("id % 5 AS k", "id")
    grouped = frame.groupBy("k").count().collect()
    sc.removeJobTag(tag)
    return {"skewed": skewed, "counts": len(counts), "groups": len(grouped)}


def _session(master: str, log_dir: Path, extra: dict[str, str]):
    from sparkml_template.runtime.session import get_spark

    log_dir.mkdir(parents=True, exist_ok=True)
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": log_dir.as_uri(), **extra}
    return get_spark(master, "eventlog-test-app", conf)


def main(out: Path) -> None:
    from sparkml_template.observability.task_events import run_tag

    tag = run_tag(RUN_ID)
    manifest: dict[str, dict] = {}
    apps = {
        "rolling": ("local[2]", {"spark.hadoop.fs.s3a.secret.key": SECRET}),
        "plain": (
            "local[2]",
            {"spark.eventLog.rolling.enabled": "false", "spark.eventLog.compress": "false"},
        ),
    }
    for name, (master, extra) in apps.items():
        spark = _session(master, out / name, extra)
        result = _workload(spark, tag)
        manifest[name] = {"app_id": spark.sparkContext.applicationId, "result": result}
        spark.stop()

    spark = _session("local[2,3]", out / "retry", {})
    sc = spark.sparkContext
    sc.addJobTag(tag)
    total = sc.parallelize(range(1000), 4).mapPartitionsWithIndex(_fail_first_attempt).sum()
    manifest["retry"] = {"app_id": sc.applicationId, "result": {"sum": total}}
    spark.stop()
    for name, entry in manifest.items():
        entry["log_dir"] = str(out / name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def run_apps(out: Path, python: str = sys.executable, only: str | None = None) -> dict:
    """Run ``main`` (or the ``only`` app) in a subprocess (its own JVM); return the manifest."""
    proc = subprocess.run(
        [python, str(Path(__file__)), str(out), *([only] if only else [])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"event log apps failed:\n{proc.stderr[-4000:]}")
    return json.loads((out / "manifest.json").read_text())


_MANIFESTS: dict[str, dict] = {}  # one run per test session, whichever module asks first


def shared_manifest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The manifest of the three applications (run once per test session, by whichever test
    module's fixture asks first), with their event logs on disk."""
    if "apps" not in _MANIFESTS:
        _MANIFESTS["apps"] = run_apps(tmp_path_factory.mktemp("eventlog-apps"))
    return _MANIFESTS["apps"]


def lost_manifest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The manifest of the ``lost`` application (run once per test session, on first use)."""
    if "lost" not in _MANIFESTS:
        _MANIFESTS["lost"] = run_apps(tmp_path_factory.mktemp("eventlog-lost"), only="lost")
    return _MANIFESTS["lost"]


def app_log(manifest: dict, name: str) -> Path:
    """The event log (rolling directory or single file) of one application."""
    from sparkml_template.observability.eventlog import locate_event_log

    path = locate_event_log(manifest[name]["log_dir"], manifest[name]["app_id"])
    assert path is not None, manifest[name]
    return path


def app_run(manifest: dict, name: str):
    """The test run's part of one application's log (``RunEvents``)."""
    from sparkml_template.observability.capture import read_run_log
    from sparkml_template.observability.task_events import run_tag

    return read_run_log(app_log(manifest, name), run_tag(RUN_ID))


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))
    if sys.argv[2:] == ["lost"]:
        entry = lost_executor_app(Path(sys.argv[1]))
        (Path(sys.argv[1]) / "manifest.json").write_text(json.dumps({"lost": entry}, indent=2))
    else:
        main(Path(sys.argv[1]))
