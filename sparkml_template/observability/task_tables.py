"""From one run's task rows to what a person reads: per-stage and per-executor summaries, the
run's ``spark/...`` metrics, stragglers, and retries with their reasons.

Durations are wall time on the executor (finish - launch). Quantiles and skew look at attempts
that succeeded: a failed attempt's duration says when it died, not how heavy its partition was.
Totals add every attempt, as Spark's own stage totals do (its task metrics count failed values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sparkml_template.observability.task_events import TASK_COLUMNS, StageAttempt

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_STRAGGLER_FACTOR = 1.5  # Spark's own spark.speculation.multiplier
DEFAULT_STRAGGLER_MIN_MS = 1000  # a task shorter than this is never worth flagging

# Summed over every task attempt, logged as spark/<name>; sparkMeasure's stage-metric names where
# it has one (executorRunTime -> executor_run_time_ms, ...).
SUMMED = {
    "executor_run_time_ms": "executor_run_time_ms",
    "executor_cpu_time_ms": "executor_cpu_time_ms",
    "executor_deserialize_time_ms": "executor_deserialize_time_ms",
    "executor_deserialize_cpu_time_ms": "executor_deserialize_cpu_time_ms",
    "result_serialization_time_ms": "result_serialization_time_ms",
    "gc_time_ms": "jvm_gc_time_ms",
    "shuffle_fetch_wait_time_ms": "shuffle_fetch_wait_time_ms",
    "shuffle_write_time_ms": "shuffle_write_time_ms",
    "disk_bytes_spilled": "disk_bytes_spilled",
    "memory_bytes_spilled": "memory_bytes_spilled",
    "spill_bytes": "disk_bytes_spilled",
    "records_read": "input_records",
    "bytes_read": "input_bytes",
    "records_written": "output_records",
    "bytes_written": "output_bytes",
    "shuffle_records_read": "shuffle_read_records",
    "shuffle_local_blocks_fetched": "shuffle_local_blocks_fetched",
    "shuffle_remote_blocks_fetched": "shuffle_remote_blocks_fetched",
    "shuffle_read_bytes": "shuffle_read_bytes",
    "shuffle_local_bytes_read": "shuffle_local_bytes_read",
    "shuffle_remote_bytes_read": "shuffle_remote_bytes_read",
    "shuffle_remote_bytes_read_to_disk": "shuffle_remote_bytes_read_to_disk",
    "shuffle_write_bytes": "shuffle_write_bytes",
    "shuffle_records_written": "shuffle_write_records",
}
STAGE_KEY = ["stage_id", "stage_attempt"]
_FIRST_NUMERIC = TASK_COLUMNS.index("launch_time")
_AFTER_NUMERIC = TASK_COLUMNS.index("speculative")
_STAGE_TOTALS = [
    "executor_run_time_ms", "executor_cpu_time_ms", "jvm_gc_time_ms", "shuffle_read_bytes",
    "shuffle_read_records", "shuffle_write_bytes", "shuffle_write_records", "input_bytes",
    "input_records", "output_bytes", "memory_bytes_spilled", "disk_bytes_spilled",
]  # fmt: skip


def tasks_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The task table, one row per attempt, in a fixed column order (empty if no task ran)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=TASK_COLUMNS)  # the fastest of pandas' ways here
    for column in TASK_COLUMNS[_FIRST_NUMERIC:_AFTER_NUMERIC]:  # a foreign log's odd values -> 0
        if frame[column].dtype == object:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0)
    return frame.sort_values(["launch_time", "task_id"], kind="stable").reset_index(drop=True)


def _succeeded(tasks: pd.DataFrame) -> pd.DataFrame:
    return tasks[tasks["status"] == "SUCCESS"]


def stage_summary(
    tasks: pd.DataFrame, stages: Mapping[tuple[int, int], StageAttempt] | None = None
) -> pd.DataFrame:
    """Per stage attempt: task counts, duration quantiles and skew, and totals."""
    import pandas as pd

    if tasks.empty:
        return pd.DataFrame(columns=[*STAGE_KEY, "job_id", "tasks"])
    grouped = tasks.groupby(STAGE_KEY)
    out = grouped.agg(
        job_id=("job_id", "first"),
        tasks=("task_id", "size"),
        failed_tasks=("status", lambda s: int((s != "SUCCESS").sum())),
        executors=("executor_id", "nunique"),
        first_launch_time=("launch_time", "min"),
        last_finish_time=("finish_time", "max"),
        **{f"{c}_total": (c, "sum") for c in _STAGE_TOTALS},
    )
    durations = _succeeded(tasks).groupby(STAGE_KEY)["duration_ms"]
    for name, q in (("min", 0.0), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95), ("max", 1.0)):
        out[f"duration_{name}_ms"] = durations.quantile(q)
    out["task_skew"] = out["duration_max_ms"] / out["duration_p50_ms"].clip(lower=1)
    out = out.reset_index()
    if stages:
        meta = {key: (s.name, s.submission_time, s.completion_time) for key, s in stages.items()}
        keys = list(zip(out["stage_id"], out["stage_attempt"], strict=True))
        out.insert(3, "name", [meta.get(k, ("",))[0] for k in keys])
        out["stage_duration_ms"] = [
            (meta[k][2] - meta[k][1]) if k in meta and meta[k][1] and meta[k][2] else None
            for k in keys
        ]
    return out


def executor_summary(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per executor: tasks, failures, run time, GC and shuffle, to spot a bad worker."""
    import pandas as pd

    if tasks.empty:
        return pd.DataFrame(columns=["executor_id", "host", "tasks"])
    out = tasks.groupby("executor_id").agg(
        host=("host", "first"),
        tasks=("task_id", "size"),
        failed_tasks=("status", lambda s: int((s != "SUCCESS").sum())),
        duration_p50_ms=("duration_ms", "median"),
        duration_max_ms=("duration_ms", "max"),
        executor_run_time_ms=("executor_run_time_ms", "sum"),
        executor_cpu_time_ms=("executor_cpu_time_ms", "sum"),
        jvm_gc_time_ms=("jvm_gc_time_ms", "sum"),
        shuffle_read_bytes=("shuffle_read_bytes", "sum"),
        shuffle_write_bytes=("shuffle_write_bytes", "sum"),
        input_bytes=("input_bytes", "sum"),
        disk_bytes_spilled=("disk_bytes_spilled", "sum"),
    )
    return out.reset_index()


def find_stragglers(
    tasks: pd.DataFrame,
    factor: float = DEFAULT_STRAGGLER_FACTOR,
    min_duration_ms: float = DEFAULT_STRAGGLER_MIN_MS,
) -> pd.DataFrame:
    """Successful tasks slower than ``factor`` x their stage attempt's median (and not short)."""
    done = _succeeded(tasks)
    if done.empty:
        return done.assign(stage_median_ms=[], ratio_to_median=[])
    median = done.groupby(STAGE_KEY)["duration_ms"].transform("median")
    count = done.groupby(STAGE_KEY)["duration_ms"].transform("size")
    flagged = (count > 1) & (done["duration_ms"] > factor * median)
    flagged &= done["duration_ms"] >= min_duration_ms
    out = done[flagged].assign(stage_median_ms=median[flagged])
    out = out.assign(ratio_to_median=out["duration_ms"] / out["stage_median_ms"].clip(lower=1))
    return out.sort_values("ratio_to_median", ascending=False).reset_index(drop=True)


def retries_and_failures(tasks: pd.DataFrame) -> pd.DataFrame:
    """Attempts that did not succeed, and retries (attempt > 0) whatever their outcome."""
    return tasks[(tasks["status"] != "SUCCESS") | (tasks["attempt"] > 0)].reset_index(drop=True)


def run_metrics(
    tasks: pd.DataFrame,
    stages: pd.DataFrame,
    jobs: int,
    factor: float = DEFAULT_STRAGGLER_FACTOR,
    min_duration_ms: float = DEFAULT_STRAGGLER_MIN_MS,
) -> dict[str, float]:
    """The ``spark/...`` metrics of a run (names without the prefix)."""
    done = _succeeded(tasks)
    out: dict[str, float] = {
        "jobs": jobs,
        "stages": len(stages),
        "tasks": len(tasks),
        "task_failures": int((tasks["status"] != "SUCCESS").sum()),
        "task_retries": int((tasks["attempt"] > 0).sum()),
        "executors": tasks["executor_id"].nunique(),
        "stragglers": len(find_stragglers(tasks, factor, min_duration_ms)),
    }
    if tasks.empty:
        return out
    for name, column in SUMMED.items():
        out[name] = float(tasks[column].sum())
    out["shuffle_total_blocks_fetched"] = (
        out["shuffle_local_blocks_fetched"] + out["shuffle_remote_blocks_fetched"]
    )
    out["result_size_bytes"] = float(tasks["result_size_bytes"].max())
    out["peak_execution_memory_bytes"] = float(tasks["peak_execution_memory_bytes"].max())
    out["elapsed_time_ms"] = float(tasks["finish_time"].max() - tasks["launch_time"].min())
    if "stage_duration_ms" in stages:
        out["stage_duration_ms"] = float(stages["stage_duration_ms"].fillna(0).sum())
    if not done.empty:
        out["task_duration_p50_ms"] = float(done["duration_ms"].median())
        out["task_duration_p95_ms"] = float(done["duration_ms"].quantile(0.95))
        out["task_duration_max_ms"] = float(done["duration_ms"].max())
        ranked = stages.dropna(subset=["task_skew"])  # stages with a successful task
        if not ranked.empty:
            heaviest = ranked.loc[ranked["executor_run_time_ms_total"].idxmax()]
            out["task_skew"] = float(heaviest["task_skew"])
    return out
