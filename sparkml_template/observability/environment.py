"""Each executor's environment: one small Spark job with a task on every executor, run in the
background while the run's body works, compared with the driver, graded, compared with the last
successful run of the experiment, and logged (``spark/environment.csv``, a UI table, tags).

Grades, from worst: ``fatal`` (the Python minor or the pyspark feature release differs: the
Python worker cannot run the driver's functions), ``numeric`` (``NUMERIC`` below: numpy, the BLAS
numpy or Spark's netlib use, the numeric canary, ``MKL_CBWR``: results may differ), ``cosmetic``
(any other ``COSMETIC`` field), ``same``, and ``unknown`` when the probe did not finish in time.
The machine's shape (cores, CPU quota) and thread counts are recorded, not graded: hosts of
a cluster may differ in size. Nothing here fails a run; every problem is one line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkml_template.observability import environment_probe as probe
from sparkml_template.runtime.job_tags import add_job_tag, cancel_jobs_with_tag, clear_job_tags
from sparkml_template.runtime.session import is_connect_session
from sparkml_template.runtime.switches import switched_on
from sparkml_template.runtime.tracking import log_artifact_files, log_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SWITCH_ENV = "SPARKML_ENV_PROBE"  # "off": no probe, no environment tags
TIMEOUT_ENV = "SPARKML_ENV_PROBE_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0  # counted from the run's start; the body usually outlasts it
TAG = "spark.environment"
GRADE_TAG = "spark.environment.grade"
SINCE_TAG = "spark.environment.since"
FINGERPRINT_TAG = "spark.environment.fingerprint"  # compact per-host JSON, read by later runs
PROBE_MS_METRIC = "spark/environment_probe_ms"
EXECUTORS_METRIC = "spark/environment_executors"
CSV_PATH = "spark/environment.csv"
TABLE_PATH = "spark/environment_table.json"
JOB_TAG_PREFIX = "sparkml-env-probe-"
GRADES = ("same", "cosmetic", "numeric", "fatal")  # increasing; "unknown" stands apart
FATAL = ("python", "pyspark")  # compared on major.minor
NUMERIC = ("numpy", "blas_threadpoolctl", "blas_netlib", "canary", "MKL_CBWR")
# Thread counts are recorded, not graded: Spark sets OMP_NUM_THREADS to the executor's cores
# in every Python worker (BasePythonRunner), so they differ from the driver's by design.
COSMETIC = (
    "pandas", "pyarrow", "scikit_learn", "mlflow", "java", "os", "kernel", "cpu_model",
    "timezone",
)  # fmt: skip
# Compared only where both sides could read them: mlflow and scikit-learn need not be installed
# on executors, threadpoolctl may not be, a Spark Connect client has no JVM (the canary still
# compares the arithmetic itself).
READ_WHERE_POSSIBLE = ("mlflow", "scikit_learn", "blas_threadpoolctl", "java")
FINGERPRINT = ("python", "numpy", "blas_threadpoolctl", "blas_netlib", "canary")
PARTITIONS_PER_CORE = 3  # enough tasks that every executor gets at least one
MAX_PARTITIONS = 1024
MAX_ROUNDS = 3  # a late executor gets a second (third) chance within the timeout
MAX_HOSTS_NAMED = 3
MAX_LINE = 480
MAX_FINGERPRINT = 5000
HISTORY_RUNS = 5


def warn(message: str) -> None:
    print(f"environment: {message}", file=sys.stderr)


def probe_enabled() -> bool:
    return switched_on(SWITCH_ENV)


def _timeout_s() -> float:
    try:
        return max(0.0, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _comparable(name: str, value: str) -> str:
    """What of a value is compared: thread counts and the JVM's class name are only shown."""
    if name in FATAL:
        return ".".join(value.split(".")[:2])  # major.minor
    if name == "blas_threadpoolctl":
        return "; ".join(part.split(", ")[0] for part in value.split("; "))
    if name == "blas_netlib":  # the kind, and a native library's file; not the JVM's class
        return "java" if value.startswith("java") else value.split(" (")[0]
    return value


# --- comparing and grading: pure functions of records ------------------------------------


@dataclass
class Verdict:
    grade: str
    line: str
    differences: list[tuple[str, str, str, list[str]]] = field(default_factory=list)


def _hosts_named(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:MAX_HOSTS_NAMED])
    more = len(hosts) - MAX_HOSTS_NAMED
    return shown + (f" (+{more} more)" if more > 0 else "")


def grade_environment(driver: dict[str, str], executors: list[dict[str, str]]) -> Verdict:
    """Compare every executor's record with the driver's; name what differs and where."""
    if not executors:
        return Verdict("unknown", "unknown: no executor answered the probe")
    differences = []
    for grade, names in (("fatal", FATAL), ("numeric", NUMERIC), ("cosmetic", COSMETIC)):
        for name in names:
            if name in READ_WHERE_POSSIBLE and not driver.get(name):
                continue
            want = _comparable(name, driver.get(name, ""))
            by_value: dict[str, list[str]] = {}
            for record in executors:
                value = record.get(name, "")
                if not value and name in READ_WHERE_POSSIBLE:
                    continue
                if _comparable(name, value) != want:
                    hosts = by_value.setdefault(value, [])
                    if record.get("host", "?") not in hosts:
                        hosts.append(record.get("host", "?"))
            for value, hosts in by_value.items():
                differences.append((grade, name, value, hosts))
    hosts = {r.get("host", "?") for r in executors}
    if not differences:
        count = f"{len(executors)} executor{'s' if len(executors) != 1 else ''}"
        line = f"same on {count}, {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
        return Verdict("same", line)
    grade = max((d[0] for d in differences), key=GRADES.index)
    clauses = []
    for _, name, value, where in differences:
        if name == "canary":
            clauses.append(f"canary differs on {_hosts_named(where)}")
        else:
            shown = value or "none"
            clauses.append(
                f"{name} {shown} on {_hosts_named(where)} (driver {driver.get(name) or 'none'})"
            )
    return Verdict(grade, _bounded(f"{grade}: " + "; ".join(clauses)), differences)


def _bounded(line: str, limit: int = MAX_LINE) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- history: the last successful run's fingerprint ---------------------------------------


def fingerprint(driver: dict[str, str], executors: list[dict[str, str]]) -> dict[str, dict]:
    """Per host (and ``driver``): the numeric-relevant facts, small enough for a tag."""

    def facts(record: dict[str, str]) -> dict[str, str]:
        kept = {k: record.get(k, "") for k in FINGERPRINT}
        return {k: (v if k == "python" else _comparable(k, v)) for k, v in kept.items()}

    out = {"driver": facts(driver)}
    for record in executors:
        out.setdefault(record.get("host", "?"), facts(record))
    return out


def fingerprint_tag(prints: dict[str, dict]) -> str:
    text = json.dumps(prints, separators=(",", ":"), sort_keys=True)
    while len(text) > MAX_FINGERPRINT and len(prints) > 1:  # drop hosts rather than cut JSON
        prints = dict(list(prints.items())[:-1])
        text = json.dumps(prints, separators=(",", ":"), sort_keys=True)
    return text


def since_line(before: dict[str, dict], now: dict[str, dict], run_id: str) -> str:
    """``host H: numpy A -> B since run <id>`` for each host whose facts changed ("" if none)."""
    clauses = []
    for host in sorted(set(before) & set(now)):
        changes = [
            f"{name} {before[host].get(name) or 'none'} -> {now[host].get(name) or 'none'}"
            for name in FINGERPRINT
            if before[host].get(name, "") != now[host].get(name, "")
        ]
        if changes:
            clauses.append(f"host {host}: {', '.join(changes)} since run {run_id}")
    return _bounded("; ".join(clauses), 2 * MAX_LINE) if clauses else ""


def last_fingerprint(experiment_id: str, run_id: str) -> tuple[str, dict[str, dict]] | None:
    """The newest FINISHED run of the experiment with a fingerprint tag (a bounded search)."""
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        max_results=HISTORY_RUNS,
        order_by=["attributes.start_time DESC"],
    )
    for run in runs:
        text = run.data.tags.get(FINGERPRINT_TAG)
        if run.info.run_id != run_id and text:
            with contextlib.suppress(ValueError):
                return run.info.run_id, json.loads(text)
    return None


# --- the probe ----------------------------------------------------------------------------


@dataclass
class EnvironmentProbe:
    """``start()`` right after the run's Spark is up, ``finish()`` after the body."""

    spark: Any = None
    run_id: str = ""
    experiment_id: str = ""
    job_tag: str = ""
    started: float = 0.0
    elapsed_ms: float | None = None
    driver: dict[str, str] | None = None
    rows: list[dict[str, str]] = field(default_factory=list)
    error: str = ""
    _thread: threading.Thread | None = None
    _connect: bool = False
    _in_process: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _published: bool = False  # its tags are written: by the thread, or by finish() on timeout

    @classmethod
    def start(
        cls, spark: SparkSession, run_id: str, experiment_id: str, *, use_job: bool = False
    ) -> EnvironmentProbe:
        """Start the probe in a daemon thread; never raises. ``use_job`` runs the Spark job
        in local mode too (where the driver is the executor and its record is enough)."""
        self = cls(spark, run_id, experiment_id, JOB_TAG_PREFIX + run_id, time.monotonic())
        if not probe_enabled():
            return self
        try:
            self._connect = is_connect_session(spark)
            master = "" if self._connect else spark.sparkContext.master
            self._in_process = master.startswith("local") and not use_job
            self._thread = threading.Thread(target=self._work, name="env-probe", daemon=True)
            self._thread.start()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        return self

    def _work(self) -> None:
        """Collect, then grade and log at once (off the run's critical path) unless
        ``finish()`` has given up on it meanwhile."""
        try:
            self.driver = probe.driver_record(self.spark, self._connect)
            if self._in_process:
                local = dict(self.driver, role="executor", executor_id="driver", host="localhost")
                self.rows = [local]
            else:
                self.rows = self._run_job()
        except Exception as exc:
            self.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        finally:
            self.elapsed_ms = (time.monotonic() - self.started) * 1000
        with self._lock:
            if not self._published:
                self._publish()

    def _run_job(self) -> list[dict[str, str]]:
        """Rounds of one job each, until every registered executor answered (classic)."""
        from pyspark import cloudpickle

        cloudpickle.register_pickle_by_value(probe)  # executors need not have this package
        spark = self.spark
        n = probe.partition_count(spark, self._connect, PARTITIONS_PER_CORE, MAX_PARTITIONS)
        clear_job_tags(spark)  # the run's tag is thread-local; this job must not carry it
        add_job_tag(spark, self.job_tag)
        if not self._connect:
            description = "sparkml-template: environment probe"
            spark.sparkContext.setLocalProperty("spark.job.description", description)
        rows: list[dict[str, str]] = []
        for _ in range(MAX_ROUNDS):
            frame = spark.range(n, numPartitions=n).mapInPandas(
                probe.probe_partitions, probe.SCHEMA
            )
            rows = probe.dedupe_executors(rows + [r.asDict() for r in frame.collect()])
            expected = None if self._connect else probe.executor_count(spark)
            if expected is None or len(rows) >= expected or self._published:
                break  # all answered, or finish() gave up on the probe: no further round
        return rows

    def _cancel(self) -> None:
        with contextlib.suppress(Exception):
            cancel_jobs_with_tag(self.spark, self.job_tag)

    def finish(self) -> None:
        """Wait for the probe until its timeout (counted from ``start``); one that has not
        finished is cancelled and graded ``unknown``. Never raises."""
        if not probe_enabled() or not self.run_id:
            return
        if self._thread is not None:
            self._thread.join(max(0.0, self.started + _timeout_s() - time.monotonic()))
        with self._lock:  # the thread may be logging right now: wait for it, never log twice
            if self._published:
                return
            if self._thread is not None and self._thread.is_alive():
                self._cancel()
                self.error = f"the probe did not finish within {_timeout_s():g} s"
            self._publish()

    def _publish(self) -> None:
        self._published = True
        try:
            self._log()
        except Exception as exc:
            warn(f"not recorded ({type(exc).__name__}: {str(exc).strip()[:300]})")

    def _log(self) -> None:
        done = self.driver is not None and self.rows and not self.error
        if not done:
            warn(f"unknown ({self.error or 'no executor answered'})")
            verdict = Verdict("unknown", _bounded(f"unknown: {self.error or 'no answer'}"))
            log_environment(self.run_id, self.driver, [], verdict, "", "", self.elapsed_ms)
            return
        verdict = grade_environment(self.driver, self.rows)  # type: ignore[arg-type]
        prints = fingerprint(self.driver, self.rows)  # type: ignore[arg-type]
        since = ""
        try:
            previous = last_fingerprint(self.experiment_id, self.run_id)
            if previous is not None:
                since = since_line(previous[1], prints, previous[0])
        except Exception as exc:
            warn(f"no comparison with earlier runs ({type(exc).__name__})")
        classic_cluster = not (self._connect or self._in_process)
        expected = probe.executor_count(self.spark) if classic_cluster else None
        if expected is not None and expected > len(self.rows):
            missing = expected - len(self.rows)
            verdict.line = _bounded(f"{verdict.line}; {missing} executor(s) not reached")
        log_environment(
            self.run_id, self.driver, self.rows, verdict, since, fingerprint_tag(prints),
            self.elapsed_ms,
        )  # fmt: skip


def log_environment(
    run_id: str,
    driver: dict[str, str] | None,
    executors: list[dict[str, str]],
    verdict: Verdict,
    since: str,
    prints: str,
    probe_ms: float | None,
) -> None:
    """The CSV, the UI table, the tags and the probe's duration, in three calls."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from sparkml_template.runtime.tracking import log_batch

    tags = {TAG: verdict.line, GRADE_TAG: verdict.grade}
    if since:
        tags[SINCE_TAG] = since
    if prints:
        tags[FINGERPRINT_TAG] = prints
    metrics = {EXECUTORS_METRIC: float(len(executors))}
    if probe_ms is not None:
        metrics[PROBE_MS_METRIC] = probe_ms
    log_batch(run_id, metrics=metrics, tags=tags)
    rows = ([driver] if driver else []) + executors
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=list(probe.COLUMNS)).fillna("")
    with tempfile.TemporaryDirectory(prefix="sparkml-environment-") as tmp:
        path = Path(tmp) / Path(CSV_PATH).name
        frame.to_csv(path, index=False)
        log_artifact_files(run_id, path, str(Path(CSV_PATH).parent))
    log_table(run_id, frame, TABLE_PATH)
