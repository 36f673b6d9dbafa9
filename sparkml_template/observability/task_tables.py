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

# A straggler is slow for no reason in its data: see find_stragglers and docs/task-metrics.md.
DEFAULT_STRAGGLER_FACTOR = 2.5  # x the median time per record of the task's peers (throttled: 2-4x)
DEFAULT_STRAGGLER_MIN_MS = 1000  # a task shorter than this is never worth flagging
DEFAULT_STRAGGLER_MIN_TASKS = 2  # peers (same stage attempt and wave, itself included) to compare

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


def warm_tasks(done: pd.DataFrame) -> pd.Series:
    """False for a task of its executor's first wave in the stage: the first wave pays for code
    generation, JIT, Python workers and file footers, on every executor alike, and is not what a
    straggler means. The next wave starts as the first tasks end, but the driver records a
    task's end after it has launched the next one, so "after" is taken as "after half of the
    executor's first task in the stage had run"."""
    key = done.groupby([*STAGE_KEY, "executor_id"])
    first_launch = key["launch_time"].transform("min")
    first_finish = key["finish_time"].transform("min")
    return done["launch_time"] >= first_launch + (first_finish - first_launch) / 2


def _median_of_others(groups: pd.Series, values: pd.Series) -> pd.Series:
    """For each value, the median of the *other* values of its group (NaN alone): with two or
    three tasks, a median that includes the task itself would hide how slow it is. Vectorised:
    a run can have 100 000 tasks in thousands of stages."""
    import numpy as np
    import pandas as pd

    group, value = groups.to_numpy(), values.to_numpy(dtype=float)
    order = np.lexsort((value, group))
    sorted_group, sorted_value = group[order], value[order]
    _, start, size = np.unique(sorted_group, return_index=True, return_counts=True)
    which = np.searchsorted(start, np.arange(len(order)), side="right") - 1
    first, n = start[which], size[which]
    rank = np.arange(len(order)) - first  # the task's place in its group

    def without_self(i: np.ndarray) -> np.ndarray:  # the i-th smallest once the task is out
        j = np.clip(np.where(i < rank, i, i + 1), 0, n - 1)
        return sorted_value[first + j]

    half = (n - 1) // 2
    even = without_self(half)
    odd = (without_self(np.maximum(half - 1, 0)) + without_self(half)) / 2
    middle = np.where(n < 2, np.nan, np.where(n % 2 == 0, even, odd))
    out = np.empty(len(order))
    out[order] = middle
    return pd.Series(out, index=values.index)


def find_stragglers(
    tasks: pd.DataFrame,
    factor: float = DEFAULT_STRAGGLER_FACTOR,
    min_duration_ms: float = DEFAULT_STRAGGLER_MIN_MS,
    min_tasks: int = DEFAULT_STRAGGLER_MIN_TASKS,
) -> pd.DataFrame:
    """Successful tasks slow for no reason in their data (see docs/task-metrics.md).

    A task is compared with the other tasks of its stage attempt *and wave* (first wave or not,
    ``warm_tasks``; at least ``min_tasks`` tasks in all): flagged when its time per unit of work
    (records, else bytes; ``hosts.task_rates``) is ``factor`` x their median, and it ran longer
    than their median task and ``min_duration_ms``. A stage without any measure of work
    compares durations. ``ratio_to_median`` is the ratio that decided.
    """
    import pandas as pd

    from sparkml_template.observability.hosts import task_rates

    done = _succeeded(tasks)
    if done.empty:
        return done.assign(stage_median_ms=[], ratio_to_median=[])
    done = done.assign(warm=warm_tasks(done))
    rated = task_rates(done)
    sized = done.set_index(STAGE_KEY).index.isin(rated.set_index(STAGE_KEY).index.unique())
    unsized = done[~sized].assign(rate=lambda f: f["duration_ms"])
    both = pd.concat([rated.drop(columns="work"), unsized])  # empty partitions of sized stages out
    peers = both.groupby([*STAGE_KEY, "warm"])
    group = pd.Series(peers.ngroup(), index=both.index)
    median = _median_of_others(group, both["duration_ms"])
    ratio = both["rate"] / _median_of_others(group, both["rate"]).clip(lower=1e-9)
    flagged = (peers["duration_ms"].transform("size") >= min_tasks) & (ratio >= factor)
    flagged &= (both["duration_ms"] > median) & (both["duration_ms"] >= min_duration_ms)
    out = both[flagged].drop(columns=["rate", "warm"])
    out = out.assign(stage_median_ms=median[flagged], ratio_to_median=ratio[flagged])
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
    min_tasks: int = DEFAULT_STRAGGLER_MIN_TASKS,
    stragglers: pd.DataFrame | None = None,
) -> dict[str, float]:
    """The ``spark/...`` metrics of a run (names without the prefix). ``stragglers``: what
    ``find_stragglers`` already found with the same settings (found here when not given)."""
    done = _succeeded(tasks)
    if stragglers is None:
        stragglers = find_stragglers(tasks, factor, min_duration_ms, min_tasks)
    out: dict[str, float] = {
        "jobs": jobs,
        "stages": len(stages),
        "tasks": len(tasks),
        "task_failures": int((tasks["status"] != "SUCCESS").sum()),
        "task_retries": int((tasks["attempt"] > 0).sum()),
        "executors": tasks["executor_id"].nunique(),
        "stragglers": len(stragglers),
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
