"""The fallback when a session has no event log we can read: Spark's REST API on the driver.

A session someone else created (Databricks, a notebook, the test suite's) may log events
somewhere we cannot read, or not at all. While it lives, the driver's status store answers the
same questions over ``<spark.ui>/api/v1`` (Spark's monitoring API): the run's jobs by tag, their
stages, and every task attempt with its metrics. Rows come out exactly as the event log's do.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sparkml_template.observability.task_events import (
    NS_PER_MS,
    RunEvents,
    StageAttempt,
    has_run_tag,
    headline,
)

TIMEOUT_S = 10


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}/api/v1/{path}", timeout=TIMEOUT_S) as response:
        return json.load(response)


def _millis(text: str | None) -> int | None:
    """Spark's REST dates ("2026-01-02T03:04:05.678GMT") as epoch milliseconds."""
    if not text:
        return None
    stamp = datetime.strptime(text.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(stamp.timestamp() * 1000)


def _n(d: dict[str, Any] | None, name: str) -> int:
    value = (d or {}).get(name)
    return int(value) if isinstance(value, int | float) else 0


def rest_task_row(task: dict[str, Any], stage_id: int, attempt: int, job_id: int | None) -> dict:
    """One task attempt from the REST API, in the event log table's columns and units."""
    m = task.get("taskMetrics") or {}
    sr, sw = m.get("shuffleReadMetrics") or {}, m.get("shuffleWriteMetrics") or {}
    inp, out = m.get("inputMetrics") or {}, m.get("outputMetrics") or {}
    launch = _millis(task.get("launchTime")) or 0
    duration = _n(task, "duration")
    status = str(task.get("status", "")).upper()
    local, remote = _n(sr, "localBytesRead"), _n(sr, "remoteBytesRead")
    error = headline(str(task.get("errorMessage") or ""))
    return {
        "job_id": job_id,
        "stage_id": stage_id,
        "stage_attempt": attempt,
        "task_id": _n(task, "taskId"),
        "partition_id": _n(task, "partitionId") if "partitionId" in task else _n(task, "index"),
        "attempt": _n(task, "attempt"),
        "executor_id": str(task.get("executorId", "")),
        "host": str(task.get("host", "")),
        "launch_time": launch,
        "finish_time": launch + duration,
        "duration_ms": duration,
        "executor_run_time_ms": _n(m, "executorRunTime"),
        "executor_cpu_time_ms": _n(m, "executorCpuTime") / NS_PER_MS,
        "jvm_gc_time_ms": _n(m, "jvmGcTime"),
        "executor_deserialize_time_ms": _n(m, "executorDeserializeTime"),
        "executor_deserialize_cpu_time_ms": _n(m, "executorDeserializeCpuTime") / NS_PER_MS,
        "result_serialization_time_ms": _n(m, "resultSerializationTime"),
        "result_size_bytes": _n(m, "resultSize"),
        "peak_execution_memory_bytes": _n(m, "peakExecutionMemory"),
        "memory_bytes_spilled": _n(m, "memoryBytesSpilled"),
        "disk_bytes_spilled": _n(m, "diskBytesSpilled"),
        "input_bytes": _n(inp, "bytesRead"),
        "input_records": _n(inp, "recordsRead"),
        "shuffle_read_bytes": local + remote,
        "shuffle_local_bytes_read": local,
        "shuffle_remote_bytes_read": remote,
        "shuffle_remote_bytes_read_to_disk": _n(sr, "remoteBytesReadToDisk"),
        "shuffle_read_records": _n(sr, "recordsRead"),
        "shuffle_local_blocks_fetched": _n(sr, "localBlocksFetched"),
        "shuffle_remote_blocks_fetched": _n(sr, "remoteBlocksFetched"),
        "shuffle_fetch_wait_time_ms": _n(sr, "fetchWaitTime"),
        "shuffle_write_bytes": _n(sw, "bytesWritten"),
        "shuffle_write_records": _n(sw, "recordsWritten"),
        "shuffle_write_time_ms": _n(sw, "writeTime") / NS_PER_MS,
        "output_bytes": _n(out, "bytesWritten"),
        "output_records": _n(out, "recordsWritten"),
        "speculative": bool(task.get("speculative", False)),
        "locality": str(task.get("taskLocality", "")),
        "status": status,
        "failure_reason": error[:1000],
    }


def collect_from_rest(ui_url: str, app_id: str, tag: str) -> RunEvents:
    """The run's jobs, stages and tasks from a live driver's REST API."""
    run = RunEvents(tag)
    app = quote(app_id, safe="")
    jobs = [
        j
        for j in _get(ui_url, f"applications/{app}/jobs")
        if has_run_tag(j.get("jobTags") or [], tag)
    ]
    stage_job: dict[int, int] = {}
    for job in sorted(jobs, key=lambda j: j["jobId"]):
        run.jobs[job["jobId"]] = {
            "submission_time": _millis(job.get("submissionTime")),
            "completion_time": _millis(job.get("completionTime")),
            "result": job.get("status", ""),
            "stages": job.get("stageIds", []),
        }
        for stage_id in job.get("stageIds", []):
            stage_job.setdefault(stage_id, job["jobId"])
    for stage_id, job_id in sorted(stage_job.items()):
        for data in _get(ui_url, f"applications/{app}/stages/{stage_id}?details=true"):
            if data.get("status") == "SKIPPED" or not data.get("tasks"):
                continue
            attempt = int(data.get("attemptId", 0))
            run.stages[(stage_id, attempt)] = StageAttempt(
                stage_id,
                attempt,
                job_id,
                str(data.get("name", "")),
                _n(data, "numTasks"),
                _millis(data.get("submissionTime")),
                _millis(data.get("completionTime")),
                str(data.get("failureReason") or ""),
            )
            for task in data["tasks"].values():
                if str(task.get("status", "")).upper() != "RUNNING":
                    run.tasks.append(rest_task_row(task, stage_id, attempt, job_id))
    run.app = {"app_id": app_id}
    return run
