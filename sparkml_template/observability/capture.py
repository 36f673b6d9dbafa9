"""Wiring task metrics into a run: event log conf before Spark starts, a job tag while the body
runs, and after it (also when it raised) the tables, charts, metrics and log copy in MLflow.

Nothing here may fail a run: every problem becomes one warning on stderr and a tag saying where
the metrics came from (``event_log``, ``status_api`` or ``none``).

Event logs go to a per-run directory under ``<tmp>/sparkml-template-eventlogs``. The live JVM
keeps writing there until the process exits (Spark finalises the log in its shutdown hook), so a
run cannot delete its own; each run deletes the finished logs of earlier ones instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sparkml_template.observability import host_history, hosts, task_tables
from sparkml_template.observability.eventlog import ReadStats, iter_lines, locate_event_log
from sparkml_template.observability.eventlog_copy import RunLogWriter, secret_values
from sparkml_template.observability.task_events import RunEvents, application_end_line, run_tag
from sparkml_template.runtime.job_tags import add_job_tag, remove_job_tag
from sparkml_template.runtime.session import is_connect_session
from sparkml_template.runtime.switches import switched_on
from sparkml_template.runtime.tracking import log_artifact_files, log_batch, log_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DISABLE_ENV = "SPARKML_TASK_METRICS"  # "off" turns the capture off (benchmarks, debugging)
FACTOR_ENV = "SPARKML_STRAGGLER_FACTOR"
MIN_MS_ENV = "SPARKML_STRAGGLER_MIN_MS"
MIN_TASKS_ENV = "SPARKML_STRAGGLER_MIN_TASKS"
SOURCE_TAG = "spark.task_metrics.source"
STRAGGLERS_TAG = "spark.stragglers"
FAILURES_TAG = "spark.task_failures"
SLOWNESS_TAG = host_history.SLOWNESS_TAG
SLOW_HOSTS_TAG = "spark.slow_hosts"
LOST_EXECUTORS_TAG = "spark.lost_executors"
ARTIFACT_DIR = "spark"
LOG_ROOT = Path(tempfile.gettempdir()) / "sparkml-template-eventlogs"
MAX_UI_TABLE_ROWS = 10_000  # the CSV has every row; the UI table stays loadable
STALE_AFTER_S = 30 * 24 * 3600
MIN_AGE_S = 3600  # never race a run that is starting or just ended
LISTENER_WAIT_MS = 10_000
REMOTE_FLUSH_WAIT_S = 1.0
UI_URL_ENV = "SPARKML_SPARK_UI_URL"  # a Spark Connect server's UI, when not at its conf's port


def warn(message: str) -> None:
    print(f"task metrics: {message}", file=sys.stderr)


def capture_enabled() -> bool:
    """False when ``SPARKML_TASK_METRICS`` switches the capture off."""
    return switched_on(DISABLE_ENV)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default


def _clean_old_logs(root: Path) -> None:
    """Remove earlier runs' log directories once their application has finished.

    Nothing younger than an hour is touched (a run may be starting its Spark right now), and a
    directory with an ``.inprogress`` file belongs to a live application unless abandoned for
    weeks.
    """
    if not root.is_dir():
        return
    now = time.time()
    for run_dir in root.iterdir():
        try:
            files = [p for p in run_dir.rglob("*") if p.is_file()]
            live = any(p.name.endswith(".inprogress") for p in files)
            age = now - run_dir.stat().st_mtime
            if age > MIN_AGE_S and (not live or age > STALE_AFTER_S):
                shutil.rmtree(run_dir, ignore_errors=True)
        except OSError:
            continue


@dataclass
class TaskCapture:
    """One run's capture: ``spark_conf()`` before Spark starts, ``begin()``, then ``finish()``."""

    enabled: bool = field(default_factory=capture_enabled)
    log_dir: Path | None = None
    spark: SparkSession | None = None
    run_id: str | None = None
    _conf: dict[str, str] = field(default_factory=dict)
    _app_id: str = ""
    _ui_url: str | None = None

    def spark_conf(self) -> dict[str, str]:
        """Conf for a session the entry point creates: the event log into a fresh directory."""
        if not self.enabled:
            return {}
        try:
            _clean_old_logs(LOG_ROOT)
            LOG_ROOT.mkdir(parents=True, exist_ok=True)
            self.log_dir = Path(tempfile.mkdtemp(prefix="run-", dir=LOG_ROOT))
        except OSError as exc:
            warn(f"no event log directory ({exc}); will use the Spark UI's API instead")
            return {}
        return {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": self.log_dir.as_uri(),
            "spark.eventLog.compression.codec": "zstd",  # the one codec Python reads here
        }

    def begin(self, spark: SparkSession, run_id: str) -> None:
        """Tag every job this thread starts from now on with the run id."""
        if not self.enabled:
            return
        self.spark, self.run_id = spark, run_id
        try:
            add_job_tag(spark, run_tag(run_id))
            if not is_connect_session(spark):
                sc = spark.sparkContext
                # Read now what finding the log needs: a driver that dies mid-run answers
                # nothing later, and its event log on disk holds every task up to the failure.
                self._conf = dict(sc.getConf().getAll())
                self._app_id, self._ui_url = sc.applicationId, sc.uiWebUrl
        except Exception as exc:
            warn(f"cannot tag Spark jobs ({type(exc).__name__}); task metrics skipped")
            self.spark = None

    def finish(self) -> None:
        """Collect and log the run's task metrics; never raises."""
        if self.spark is None or self.run_id is None:
            return
        spark = self.spark
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="sparkml-task-metrics-") as tmp:
                run, source = self._collect(Path(tmp))
                log_run_metrics(
                    self.run_id, run, source, Path(tmp), master=self._conf.get("spark.master")
                )
            elapsed_ms = (time.perf_counter() - started) * 1000
            log_batch(self.run_id, metrics={"spark/capture_time_ms": elapsed_ms})
        except Exception as exc:
            warn(f"not recorded ({type(exc).__name__}: {str(exc).strip()[:300]})")
            _set_source(self.run_id, "none")
        finally:
            with contextlib.suppress(Exception):
                remove_job_tag(spark, run_tag(self.run_id))
            with contextlib.suppress(OSError):
                if self.log_dir is not None and not any(self.log_dir.iterdir()):
                    self.log_dir.rmdir()  # the session was not ours: Spark never used it

    def _collect(self, out_dir: Path) -> tuple[RunEvents | None, str]:
        if is_connect_session(self.spark):
            return self._collect_remote(out_dir)
        sc = self.spark.sparkContext  # type: ignore[union-attr]
        tag = run_tag(self.run_id)  # type: ignore[arg-type]
        with contextlib.suppress(Exception):  # the log is written on its own listener thread
            sc._jsc.sc().listenerBus().waitUntilEmpty(LISTENER_WAIT_MS)  # type: ignore[union-attr]
        conf, app_id = self._conf, self._app_id
        enabled = conf.get("spark.eventLog.enabled", "false").lower() == "true"
        log_dir = conf.get("spark.eventLog.dir", "") if enabled else ""
        local = log_dir.startswith(("/", "file:"))
        path = locate_event_log(log_dir, app_id) if local else None
        if path is not None:
            regex = conf.get("spark.redaction.regex")
            secrets = secret_values(conf.items(), pattern=regex)
            copy = RunLogWriter(out_dir, app_id, secrets, regex)
            return read_run_log(path, tag, copy), "event_log"
        if self._ui_url:
            from sparkml_template.observability.status_api import collect_from_rest

            return collect_from_rest(self._ui_url.rstrip("/"), app_id, tag), "status_api"
        warn("the session has no readable event log and no Spark UI; task metrics skipped")
        return None, "none"

    def _collect_remote(self, out_dir: Path) -> tuple[RunEvents | None, str]:
        """Over Spark Connect: the server's event log if this machine can read it (a shared
        disk), else the server's UI REST API, else nothing (one warning)."""
        conf = dict(self.spark.conf.getAll)  # type: ignore[union-attr]
        tag = run_tag(self.run_id)  # type: ignore[arg-type]
        app_id = conf.get("spark.app.id", "")
        pattern = conf.get("spark.redaction.regex")
        enabled = conf.get("spark.eventLog.enabled", "false").lower() == "true"
        log_dir = conf.get("spark.eventLog.dir", "") if enabled else ""
        path = None
        if log_dir.startswith(("/", "file:")):
            time.sleep(REMOTE_FLUSH_WAIT_S)  # the server's listener writes the log after the job
            path = locate_event_log(log_dir, app_id)
        if path is not None:
            copy = RunLogWriter(out_dir, app_id, secret_values(conf.items(), pattern), pattern)
            return read_run_log(path, tag, copy), "event_log"
        ui_url = remote_ui_url(conf)
        if ui_url:
            from sparkml_template.observability.status_api import collect_from_rest

            try:
                return collect_from_rest(ui_url, app_id, tag), "status_api"
            except OSError as exc:
                warn(f"the server's Spark UI {ui_url} did not answer ({exc}); task metrics skipped")
                return None, "none"
        warn("the Spark Connect server has no event log readable here and no Spark UI; skipped")
        return None, "none"


def remote_ui_url(conf: dict[str, str]) -> str | None:
    """The Spark UI of a Spark Connect server: ``SPARKML_SPARK_UI_URL`` if set, else the
    driver's host and ``spark.ui.port`` from the server's conf (None when the UI is off)."""
    given = os.environ.get(UI_URL_ENV, "").strip()
    if given:
        return given.rstrip("/")
    if conf.get("spark.ui.enabled", "true").lower() == "false":
        return None
    host = conf.get("spark.driver.host", "")
    port = conf.get("spark.ui.port", "4040")
    return f"http://{host}:{port}" if host else None


def read_run_log(path: Path, tag: str, copy: RunLogWriter | None = None) -> RunEvents:
    """Parse the run's part of the log at ``path``, copying its lines to ``copy`` if given."""
    stats = ReadStats()
    run = RunEvents(tag, stats)
    try:
        for line in iter_lines(path, stats):
            kept = run.feed(line)
            if kept is not None and copy is not None:
                copy.write(*kept)
        if copy is not None and not copy.has_end:  # a live application: end it for the HS
            copy.write(application_end_line(run.last_time or int(time.time() * 1000)), None)
    finally:
        if copy is not None:
            copy.close()
    if stats.skipped or run.unknown_events:
        unknown = f"; {run.unknown_events} event(s) of unknown type" if run.unknown_events else ""
        warn(f"event log {path.name}: skipped {stats.describe() or 'nothing'}{unknown}")
    if not run.complete():
        warn("some of the run's jobs had not ended in the event log; their tasks may be missing")
    return run


def _set_source(run_id: str, source: str) -> None:
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient().set_tag(run_id, SOURCE_TAG, source)
    except Exception:
        pass


def _host_view(
    run_id: str, tasks, run: RunEvents, out_dir: Path, master: str | None
) -> tuple[dict, dict, dict]:
    """The per-host table, lost executors and slow hosts: (metrics, tags, UI tables).

    Never raises: a problem is one warning, and the rest of the run's metrics are logged.
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    try:
        names = hosts.executor_hosts(tasks, run.executors)
        lost = hosts.lost_executors(tasks, run.executors, run.fetch_failed_from)
        slowness = hosts.host_slowness(tasks, names)
        table = hosts.host_table(tasks, names, lost, slowness)
        table.to_csv(out_dir / "hosts.csv", index=False)
        lost.to_csv(out_dir / "lost_executors.csv", index=False)
        metrics["hosts"] = len(table)
        metrics["lost_executors"] = len(lost)
        metrics["rerun_tasks"] = int(lost["rerun_tasks"].sum()) if len(lost) else 0
        metrics["rerun_time_ms"] = float(lost["cost_ms"].sum()) if len(lost) else 0.0
        if slowness:
            metrics["slowest_host_ratio"] = max(slowness.values())
            tags[SLOWNESS_TAG] = hosts.slowness_tag(slowness)
        if len(lost):
            tags[LOST_EXECUTORS_TAG] = "; ".join(map(hosts.lost_clause, lost.to_dict("records")))
        line = _slow_across_runs(run_id, slowness, master)
        if line:
            tags[SLOW_HOSTS_TAG] = line
        return metrics, tags, {"hosts": table}
    except Exception as exc:
        warn(f"per-host view skipped ({type(exc).__name__}: {str(exc).strip()[:200]})")
        return metrics, tags, {}


def _slow_across_runs(run_id: str, slowness: dict[str, float], master: str | None) -> str:
    """``spark.slow_hosts``: hosts slow here and in k of the last n runs ("" if none)."""
    rule = host_history.SlowHostRule.from_env()
    if not any(v >= rule.factor for v in slowness.values()):
        return ""  # nothing slow now: no need to ask the tracking store
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    info = client.get_run(run_id)
    master = master or info.data.tags.get(host_history.MASTER_TAG, "")
    if not master:
        return ""
    history = host_history.lookup_with_timeout(
        client, info.info.experiment_id, master, run_id, rule.last_runs
    )
    if history is None:
        warn("the slow-host history lookup did not answer in time; skipped")
        return ""
    found = host_history.slow_hosts(slowness, history, rule)
    return host_history.slow_hosts_line(found, len(history), rule)


def log_run_metrics(
    run_id: str, run: RunEvents | None, source: str, out_dir: Path, master: str | None = None
) -> None:
    """Tables, charts, ``spark/...`` metrics, straggler, failure and host tags, the log copy.

    ``master`` decides which earlier runs count as the same cluster (default: the run's
    ``spark.master`` tag)."""

    if run is None:
        _set_source(run_id, source)
        return
    factor = _env_float(FACTOR_ENV, task_tables.DEFAULT_STRAGGLER_FACTOR)
    min_ms = _env_float(MIN_MS_ENV, task_tables.DEFAULT_STRAGGLER_MIN_MS)
    min_tasks = int(_env_float(MIN_TASKS_ENV, task_tables.DEFAULT_STRAGGLER_MIN_TASKS))
    tasks = task_tables.tasks_frame(run.tasks)
    stages = task_tables.stage_summary(tasks, run.stages)
    executors = task_tables.executor_summary(tasks)
    stragglers = task_tables.find_stragglers(tasks, factor, min_ms, min_tasks)
    failures = task_tables.retries_and_failures(tasks)
    metrics = task_tables.run_metrics(
        tasks, stages, len(run.jobs), factor, min_ms, min_tasks, stragglers=stragglers
    )
    tags = {SOURCE_TAG: source}
    if metrics["stragglers"]:
        tags[STRAGGLERS_TAG] = (
            f"{metrics['stragglers']} task(s) >= {factor:g}x stage median time per record"
        )
    if metrics["task_failures"]:
        tags[FAILURES_TAG] = str(metrics["task_failures"])
    if run.stats.skipped:
        metrics["eventlog_skipped"] = run.stats.skipped
    host_metrics, host_tags, host_tables = _host_view(run_id, tasks, run, out_dir, master)
    metrics.update(host_metrics)
    tags.update(host_tags)

    tables = {"tasks": tasks, "stages": stages, "executors": executors}
    for name, frame in {**tables, "stragglers": stragglers, "failures": failures}.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False)
    if not tasks.empty:
        from sparkml_template.observability.timeline import save_stage_durations, save_task_timeline

        save_task_timeline(tasks, out_dir / "timeline.png", title=f"tasks of run {run_id[:8]}")
        save_stage_durations(stages, out_dir / "stage_durations.png")
    log_batch(run_id, metrics={f"spark/{k}": v for k, v in metrics.items()}, tags=tags)
    log_artifact_files(run_id, out_dir, ARTIFACT_DIR)
    for name, frame in {**tables, **host_tables}.items():
        if not frame.empty:
            shown = frame.head(MAX_UI_TABLE_ROWS).astype(object).where(frame.notna(), None)
            log_table(run_id, shown, f"{ARTIFACT_DIR}/{name}_table.json")
