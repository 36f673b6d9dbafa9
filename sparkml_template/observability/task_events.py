"""One run's Spark tasks, from the event log: which events are the run's, and one row per task.

A session can host several runs (a notebook, the test suite), so a run's jobs carry a job tag
(``mlflow-run-<run id>``) and only jobs with that tag, the stages they submitted and those
stages' tasks are kept. ``RunEvents.feed`` sees the log one line at a time and says which lines
belong to the run, so the same pass builds the task table and the run's copy of the log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sparkml_template.observability.eventlog import ReadStats, event_name, parse_event

TAG_PREFIX = "mlflow-run-"
NS_PER_MS = 1_000_000

TASK_COLUMNS = [
    "job_id", "stage_id", "stage_attempt", "task_id", "partition_id", "attempt", "executor_id",
    "host", "launch_time", "finish_time", "duration_ms", "executor_run_time_ms",
    "executor_cpu_time_ms", "jvm_gc_time_ms", "executor_deserialize_time_ms",
    "executor_deserialize_cpu_time_ms", "result_serialization_time_ms", "result_size_bytes",
    "peak_execution_memory_bytes", "memory_bytes_spilled", "disk_bytes_spilled", "input_bytes",
    "input_records", "shuffle_read_bytes", "shuffle_local_bytes_read", "shuffle_remote_bytes_read",
    "shuffle_remote_bytes_read_to_disk", "shuffle_read_records", "shuffle_local_blocks_fetched",
    "shuffle_remote_blocks_fetched", "shuffle_fetch_wait_time_ms", "shuffle_write_bytes",
    "shuffle_write_records", "shuffle_write_time_ms", "output_bytes", "output_records",
    "speculative", "locality", "status", "failure_reason",
]  # fmt: skip

# Events about the application as a whole: kept in the run's copy of the log for the History
# Server. Events tied to a job, stage or task are kept only when they are the run's.
APP_EVENTS = {
    "SparkListenerLogStart", "SparkListenerApplicationStart", "SparkListenerApplicationEnd",
    "SparkListenerEnvironmentUpdate", "SparkListenerResourceProfileAdded",
    "SparkListenerExecutorAdded", "SparkListenerExecutorRemoved", "SparkListenerBlockManagerAdded",
    "SparkListenerBlockManagerRemoved", "SparkListenerUnpersistRDD",
    "SparkListenerExecutorExcluded", "SparkListenerExecutorUnexcluded",
    "SparkListenerNodeExcluded", "SparkListenerNodeUnexcluded", "SparkListenerExecutorBlacklisted",
    "SparkListenerExecutorUnblacklisted", "SparkListenerNodeBlacklisted",
    "SparkListenerNodeUnblacklisted", "SparkListenerMiscellaneousProcessAdded",
}  # fmt: skip
STAGE_EVENTS = {
    "SparkListenerTaskStart", "SparkListenerTaskEnd", "SparkListenerTaskGettingResult",
    "SparkListenerSpeculativeTaskSubmitted", "SparkListenerStageExecutorMetrics",
    "SparkListenerExecutorExcludedForStage", "SparkListenerNodeExcludedForStage",
    "SparkListenerExecutorBlacklistedForStage", "SparkListenerNodeBlacklistedForStage",
    "SparkListenerUnschedulableTaskSetAdded", "SparkListenerUnschedulableTaskSetRemoved",
}  # fmt: skip
_SQL = "org.apache.spark.sql.execution.ui."
SQL_START = _SQL + "SparkListenerSQLExecutionStart"
_STAGE_KEY = re.compile(r'"Stage ID":(\d+),"Stage Attempt ID":(\d+)')
_EXECUTION_ID = re.compile(r'"executionId":(\d+)')


def run_tag(run_id: str) -> str:
    """The Spark job tag that marks a run's jobs (tags may not contain commas)."""
    return f"{TAG_PREFIX}{run_id}"


def has_run_tag(job_tags: Iterable[str], tag: str) -> bool:
    """Whether a job's tags include the run's: as set in a classic session, or as a Spark
    Connect server rewrites a client's session tag (``SparkConnect_SessionTag_…_Tag_<tag>``)."""
    return any(t == tag or t.endswith(f"_Tag_{tag}") for t in job_tags)


def _tags(properties: dict[str, Any] | None) -> set[str]:
    raw = (properties or {}).get("spark.job.tags") or ""
    return {t for t in str(raw).split(",") if t}


def _slim_task_end(line: str) -> str:
    """Drop the per-task accumulator list and executor gauges before parsing: they double the
    line and the table needs neither. The cut points are structural (a quote cannot occur
    unescaped inside a JSON string), and a line that does not fit is parsed whole."""
    start = line.find(',"Accumulables":[')
    end = line.find(']},"Task ', start) if start >= 0 else -1
    if end < 0:
        return line
    line = line[:start] + line[end + 1 :]
    gauges = line.find(',"Task Executor Metrics":{')
    metrics = line.find('},"Task Metrics":', gauges) if gauges >= 0 else -1
    return line[:gauges] + line[metrics + 1 :] if metrics >= 0 else line


def _parse_task_end(line: str, stats: ReadStats) -> dict[str, Any] | None:
    try:
        event = json.loads(_slim_task_end(line))
        stats.events += 1
        return event
    except ValueError:
        return parse_event(line, stats)  # counts it if the whole line does not parse either


def _num(d: dict[str, Any] | None, *names: str) -> int:
    """The first present field of ``d`` among ``names`` (names differ across Spark versions)."""
    if d:
        for name in names:
            value = d.get(name)
            if isinstance(value, int | float):
                return int(value)
    return 0


def headline(detail: str) -> str:
    """The line of an error that says what went wrong: for a Python worker's traceback, its
    last line ("RuntimeError: ..."), not "Traceback (most recent call last):"."""
    lines = [line for line in str(detail).splitlines() if line.strip()]
    if "Traceback (most recent call last)" in detail:
        own = [
            line.strip()
            for line in lines
            if not line.startswith((" ", "\t")) and not line.strip().startswith("SQLSTATE")
        ]
        if own:
            return own[-1]
    return lines[0].strip() if lines else ""


def failure_text(reason: dict[str, Any]) -> str:
    """One line saying why a task attempt did not succeed."""
    kind = str(reason.get("Reason", "Unknown"))
    detail = headline(
        reason.get("Description")
        or reason.get("Kill Reason")
        or reason.get("Loss Reason")
        or reason.get("Message")
        or ""
    )
    if reason.get("Class Name"):
        detail = f"{reason['Class Name']}: {detail}"
    return f"{kind}: {detail}"[:1000] if detail else kind


def _ms(ns: Any) -> float:
    return ns / NS_PER_MS if isinstance(ns, int | float) else 0.0


def task_row(event: dict[str, Any], job_id: int | None) -> dict[str, Any]:
    """One task attempt as a flat row in ms, bytes and counts (CPU and write time come in ns).

    Plain ``dict.get`` with a default on purpose: this runs for every task (100 000 in the
    benchmark); values of the wrong type are coerced to 0 once per column by ``tasks_frame``.
    Where Spark versions named a field differently, both names are tried.
    """
    info = event.get("Task Info") or {}
    m = event.get("Task Metrics") or {}
    sr = m.get("Shuffle Read Metrics") or {}
    sw = m.get("Shuffle Write Metrics") or {}
    inp = m.get("Input Metrics") or {}
    out = m.get("Output Metrics") or {}
    reason = event.get("Task End Reason") or {}
    ok = reason.get("Reason") == "Success"
    launch, finish = info.get("Launch Time", 0), info.get("Finish Time", 0)
    local, remote = sr.get("Local Bytes Read", 0), sr.get("Remote Bytes Read", 0)
    status = "SUCCESS" if ok else "KILLED" if info.get("Killed") else "FAILED"
    return {
        "job_id": job_id,
        "stage_id": event.get("Stage ID", 0),
        "stage_attempt": event.get("Stage Attempt ID", 0),
        "task_id": info.get("Task ID", 0),
        "partition_id": info.get("Partition ID", info.get("Index", 0)),
        "attempt": info.get("Attempt", 0),
        "executor_id": str(info.get("Executor ID", "")),
        "host": str(info.get("Host", "")),
        "launch_time": launch,
        "finish_time": finish,
        "duration_ms": max(finish - launch, 0) if finish else 0,
        "executor_run_time_ms": m.get("Executor Run Time", 0),
        "executor_cpu_time_ms": _ms(m.get("Executor CPU Time", 0)),
        "jvm_gc_time_ms": m.get("JVM GC Time", 0),
        "executor_deserialize_time_ms": m.get("Executor Deserialize Time", 0),
        "executor_deserialize_cpu_time_ms": _ms(m.get("Executor Deserialize CPU Time", 0)),
        "result_serialization_time_ms": m.get("Result Serialization Time", 0),
        "result_size_bytes": m.get("Result Size", 0),
        "peak_execution_memory_bytes": m.get("Peak Execution Memory", 0),
        "memory_bytes_spilled": m.get("Memory Bytes Spilled", 0),
        "disk_bytes_spilled": m.get("Disk Bytes Spilled", 0),
        "input_bytes": inp.get("Bytes Read", 0),
        "input_records": inp.get("Records Read", 0),
        "shuffle_read_bytes": local + remote,
        "shuffle_local_bytes_read": local,
        "shuffle_remote_bytes_read": remote,
        "shuffle_remote_bytes_read_to_disk": sr.get("Remote Bytes Read To Disk", 0),
        "shuffle_read_records": sr.get("Total Records Read", sr.get("Records Read", 0)),
        "shuffle_local_blocks_fetched": sr.get("Local Blocks Fetched", 0),
        "shuffle_remote_blocks_fetched": sr.get("Remote Blocks Fetched", 0),
        "shuffle_fetch_wait_time_ms": sr.get("Fetch Wait Time", 0),
        "shuffle_write_bytes": sw.get("Shuffle Bytes Written", sw.get("Bytes Written", 0)),
        "shuffle_write_records": sw.get("Shuffle Records Written", sw.get("Records Written", 0)),
        "shuffle_write_time_ms": _ms(sw.get("Shuffle Write Time", sw.get("Write Time", 0))),
        "output_bytes": out.get("Bytes Written", 0),
        "output_records": out.get("Records Written", 0),
        "speculative": bool(info.get("Speculative", False)),
        "locality": str(info.get("Locality", "")),
        "status": status,
        "failure_reason": "" if ok else failure_text(reason),
    }


@dataclass
class StageAttempt:
    """What the run needs to know about one stage attempt besides its tasks."""

    stage_id: int
    attempt: int
    job_id: int | None
    name: str = ""
    num_tasks: int = 0
    submission_time: int | None = None
    completion_time: int | None = None
    failure_reason: str = ""
    accumulables: dict[str, float] = field(default_factory=dict)  # Spark's own stage totals


@dataclass
class RunEvents:
    """The part of an application's event log that belongs to one run (every job if no tag)."""

    tag: str | None
    stats: ReadStats = field(default_factory=ReadStats)
    app: dict[str, Any] = field(default_factory=dict)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    stages: dict[tuple[int, int], StageAttempt] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    executors: dict[str, dict[str, Any]] = field(default_factory=dict)
    sql_executions: set[int] = field(default_factory=set)
    fetch_failed_from: dict[int, str] = field(default_factory=dict)  # task id -> executor id
    unknown_events: int = 0
    last_time: int = 0
    _latest_job: dict[int, int] = field(default_factory=dict)

    def feed(self, line: str) -> tuple[str, dict[str, Any] | None] | None:
        """Take one line; return (line, parsed event or None) if it belongs in the run's log.

        Spark writes compact JSON with "Event" first, so most lines are routed by their prefix
        and only the run's are parsed; any other JSON layout is parsed first, then routed.
        """
        if not line.strip():
            return None
        name, event = event_name(line), None
        if name is None:
            event = parse_event(line, self.stats)
            if event is None:
                return None
            name = event["Event"]
        if name in STAGE_EVENTS:
            return self._stage_event(name, line, event)
        if name.startswith(_SQL) and name != SQL_START:
            match = _EXECUTION_ID.search(line) if event is None else None
            execution = int(match.group(1)) if match else (event or {}).get("executionId")
            return (line, None) if execution in self.sql_executions else None
        event = event if event is not None else parse_event(line, self.stats)
        if event is None:
            return None
        try:
            return self._dispatch(event["Event"], event, line)
        except (KeyError, TypeError, AttributeError):  # a known event missing its core fields
            self.stats.corrupt_lines += 1
            return None

    def _stage_event(self, name: str, line: str, event: dict[str, Any] | None):
        if event is None:
            match = _STAGE_KEY.search(line, 0, 300)
            key = (int(match.group(1)), int(match.group(2))) if match else None
        else:
            key = (event.get("Stage ID"), event.get("Stage Attempt ID"))
        if key not in self.stages:
            return None
        if name != "SparkListenerTaskEnd":
            return line, None
        event = event if event is not None else _parse_task_end(line, self.stats)
        if event is None:
            return None
        try:
            self.tasks.append(task_row(event, self.stages[key].job_id))
        except (TypeError, AttributeError):  # e.g. a timestamp that is not a number
            self.stats.corrupt_lines += 1
            return None
        self.last_time = max(self.last_time, self.tasks[-1]["finish_time"])
        if self.tasks[-1]["failure_reason"].startswith("FetchFailed"):
            self._blame_fetch_failure(event)
        return line, None

    def _blame_fetch_failure(self, event: dict[str, Any]) -> None:
        """Remember whose shuffle output a task could not fetch: the executor that was lost."""
        reason = event.get("Task End Reason") or {}
        address = reason.get("Block Manager Address") or {}
        task_id = (event.get("Task Info") or {}).get("Task ID")
        if address.get("Executor ID") is not None and task_id is not None:
            self.fetch_failed_from[task_id] = str(address["Executor ID"])

    def _dispatch(self, name: str, event: dict[str, Any], line: str):
        if name == "SparkListenerJobStart":
            if not self._ours(event.get("Properties")):
                return None
            job_id = event["Job ID"]
            stage_ids = event.get("Stage IDs") or [s["Stage ID"] for s in event["Stage Infos"]]
            self.jobs[job_id] = {
                "submission_time": event.get("Submission Time"),
                "stages": stage_ids,
            }
            for stage_id in stage_ids:
                self._latest_job[stage_id] = job_id
        elif name == "SparkListenerStageSubmitted":
            if not self._ours(event.get("Properties")):
                return None
            info = event["Stage Info"]
            sid, attempt = info["Stage ID"], info.get("Stage Attempt ID", 0)
            self.stages[(sid, attempt)] = StageAttempt(
                sid, attempt, self._latest_job.get(sid), str(info.get("Stage Name", ""))
            )
        elif name == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            stage = self.stages.get((info["Stage ID"], info.get("Stage Attempt ID", 0)))
            if stage is None:
                return None
            stage.num_tasks = _num(info, "Number of Tasks")
            stage.submission_time = info.get("Submission Time")
            stage.completion_time = info.get("Completion Time")
            stage.failure_reason = str(info.get("Failure Reason") or "")
            for acc in info.get("Accumulables") or []:
                if isinstance(acc.get("Value"), int | float):
                    stage.accumulables[str(acc.get("Name"))] = acc["Value"]
        elif name == "SparkListenerJobEnd":
            job = self.jobs.get(event.get("Job ID"))
            if job is None:
                return None
            job["completion_time"] = event.get("Completion Time")
            job["result"] = (event.get("Job Result") or {}).get("Result", "")
        elif name == SQL_START:
            # Spark 4 records the job tags of the statement; older logs cannot be attributed.
            if self.tag is not None and self.tag not in set(event.get("jobTags") or []):
                return None
            self.sql_executions.add(event.get("executionId"))
        elif name in APP_EVENTS:
            self._app_event(name, event)
        else:
            self.unknown_events += 1
            return None
        return line, event

    def _ours(self, properties: dict[str, Any] | None) -> bool:
        return self.tag is None or has_run_tag(_tags(properties), self.tag)

    def _app_event(self, name: str, event: dict[str, Any]) -> None:
        if name == "SparkListenerApplicationStart":
            self.app.update(app_id=event.get("App ID"), app_name=event.get("App Name"))
            self.app["start_time"] = event.get("Timestamp")
        elif name == "SparkListenerLogStart":
            self.app["spark_version"] = event.get("Spark Version")
        elif name == "SparkListenerApplicationEnd":
            self.app["end_time"] = event.get("Timestamp")
        elif name == "SparkListenerExecutorAdded":
            info = event.get("Executor Info") or {}
            self.executors[str(event.get("Executor ID"))] = {
                "host": info.get("Host", ""),
                "cores": info.get("Total Cores"),
                "added_time": event.get("Timestamp"),
            }
        elif name == "SparkListenerExecutorRemoved":
            executor = self.executors.setdefault(str(event.get("Executor ID")), {})
            executor["removed_time"] = event.get("Timestamp")
            executor["removed_reason"] = event.get("Removed Reason", "")

    def complete(self) -> bool:
        """True once every job the run started has ended (a live log may lag behind)."""
        return all("completion_time" in job for job in self.jobs.values())


def collect_run_events(lines, tag: str | None, stats: ReadStats | None = None) -> RunEvents:
    """Feed every line to a fresh ``RunEvents`` (no copy of the log is written)."""
    run = RunEvents(tag, stats if stats is not None else ReadStats())
    for line in lines:
        run.feed(line)
    return run


def application_end_line(timestamp: int) -> str:
    """The closing event a live application has not written yet (the History Server wants it)."""
    end = {"Event": "SparkListenerApplicationEnd", "Timestamp": timestamp}
    return json.dumps(end, separators=(",", ":"))  # compact, as Spark writes
