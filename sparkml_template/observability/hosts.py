"""Per host: what its executors did, how slow it is next to the other hosts, and executors lost.

Executors are grouped by the host Spark reports for them (``SparkListenerExecutorAdded``, else
the task's own host). Everything here is pure pandas on the task table and ``RunEvents``.

**Slowness** of a host is a ratio, 1.0 = as fast as the rest of the cluster. Per successful task,
time per unit of work (duration / records, see ``WORK_UNITS``) is divided by the median of the
same figure over the *other* hosts' tasks of the same stage attempt; the host's slowness is the
median of those ratios over all its tasks, weighted by the time each would have taken elsewhere.
Dividing by work keeps a skewed partition (10x the records, 10x the time) at 1.0; comparing
within a stage keeps the job's size and kind out of it; comparing with the other hosts (not the
whole stage) keeps a slow half of a two-host cluster from pulling the median it is compared with.

**Lost executors** are executors removed while the run's tasks ran. What they cost is task time:
the attempts that failed because of the loss (``ExecutorLostFailure`` on it, ``FetchFailed`` of
its shuffle output) plus every later attempt of those partitions and of the partitions whose
finished output it took along (``Resubmitted``): work done in vain plus the work to redo it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

HOST_COLUMNS = [
    "host", "executors", "tasks", "failed_tasks", "run_time_ms", "cpu_time_ms", "gc_time_ms",
    "shuffle_read_bytes", "shuffle_write_bytes", "input_bytes", "lost_executors", "slowness",
]  # fmt: skip
LOST_COLUMNS = [
    "executor_id", "host", "lost_at_s", "reason", "failed_tasks", "rerun_tasks",
    "failed_time_ms", "rerun_time_ms", "cost_ms",
]  # fmt: skip
# How a stage's tasks are sized, first that the stage has: records consumed, records produced,
# bytes consumed. A stage with none of them (e.g. a Python job over generated data) is not rated.
WORK_UNITS = (
    ("input_records", "shuffle_read_records"),
    ("shuffle_write_records", "output_records"),
    ("input_bytes", "shuffle_read_bytes"),
)
MIN_OTHER_TASKS = 1  # tasks of other hosts a stage needs to compare a host with them
LOSS_REASONS = ("ExecutorLostFailure", "FetchFailed", "Resubmitted")


def executor_hosts(tasks: pd.DataFrame, executors: Mapping[str, Mapping[str, Any]]) -> dict:
    """Executor id -> host: Spark's executor registration first, the task rows' host else."""
    out = {str(e): str(h) for e, h in zip(tasks["executor_id"], tasks["host"], strict=True)}
    for executor_id, info in executors.items():
        if info.get("host"):
            out[str(executor_id)] = str(info["host"])
    return out


def _with_hosts(tasks: pd.DataFrame, hosts: Mapping[str, str]) -> pd.DataFrame:
    mapped = tasks["executor_id"].map(hosts)
    return tasks.assign(host=mapped.where(mapped.notna(), tasks["host"]))


def task_rates(tasks: pd.DataFrame) -> pd.DataFrame:
    """Successful tasks with their time per unit of work (``rate``), of stages that can be sized.

    Each stage attempt uses the first of ``WORK_UNITS`` its tasks have; tasks of that stage
    without any of that work (an empty partition) are left out: their time is all overhead.
    """
    done = tasks[tasks["status"] == "SUCCESS"]
    if done.empty:
        return done.assign(work=[], rate=[])
    key = [done["stage_id"], done["stage_attempt"]]
    work = done["duration_ms"] * 0.0
    chosen = work.astype(bool)
    for columns in WORK_UNITS:
        amount = done[list(columns)].sum(axis=1).astype(float)
        usable = ~chosen & (amount.groupby(key).transform("sum") > 0)
        work = work.where(~usable, amount)
        chosen |= usable
    rated = done.assign(work=work)[chosen & (work > 0)]
    return rated.assign(rate=rated["duration_ms"] / rated["work"])


def host_slowness(tasks: pd.DataFrame, hosts: Mapping[str, str] | None = None) -> dict[str, float]:
    """Host -> slowness (1.0 = like the other hosts; 2.0 = twice their time per record).

    Only stage attempts that ran on two hosts or more compare anything. With one host in the
    run there is nothing to compare: it gets 1.0. A host none of whose tasks could be compared
    is left out.
    """
    frame = _with_hosts(tasks, hosts or {}) if hosts else tasks
    rated = task_rates(frame)
    names = sorted(set(frame.loc[frame["status"] == "SUCCESS", "host"]))
    if len(names) == 1:
        return {names[0]: 1.0}
    ratios = _task_ratios(rated)
    return {str(h): _weighted_median(r) for h, r in sorted(ratios.groupby("host"))}


def _task_ratios(rated: pd.DataFrame) -> pd.DataFrame:
    """Per rated task of a stage attempt that ran on two hosts or more: its duration over the
    time it would have taken at the other hosts' median rate (``ratio``), and that expected time
    (``w``). Plain numpy over slices of the sorted table: thousands of stages stay quick."""
    import numpy as np
    import pandas as pd

    stage = rated.groupby(["stage_id", "stage_attempt"]).ngroup().to_numpy()
    order = np.argsort(stage, kind="stable")
    host = rated["host"].to_numpy()[order]
    rate = rated["rate"].to_numpy(dtype=float)[order]
    reference = np.full(len(order), np.nan)
    bounds = np.flatnonzero(np.diff(stage[order])) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)], strict=True):
        names = host[lo:hi]
        if hi - lo < 2 or (names == names[0]).all():
            continue
        for name in set(names):
            mine = names == name
            if (~mine).sum() >= MIN_OTHER_TASKS:
                reference[lo:hi][mine] = np.median(rate[lo:hi][~mine])
    expected = rated["work"].to_numpy(dtype=float)[order] * reference
    keep = expected > 0  # NaN (not compared) is not > 0
    duration = rated["duration_ms"].to_numpy(dtype=float)[order]
    return pd.DataFrame(
        {"host": host[keep], "ratio": duration[keep] / expected[keep], "w": expected[keep]}
    )


def _weighted_median(frame: pd.DataFrame) -> float:
    """The ratio at half of the expected time: a 20 s scan counts for more than a 1 s task whose
    time is mostly launch overhead, and one outlier still moves nothing."""
    ordered = frame.sort_values("ratio")
    cumulative = ordered["w"].cumsum()
    return float(ordered["ratio"].to_numpy()[(cumulative >= cumulative.iloc[-1] / 2).argmax()])


def slowness_tag(slowness: Mapping[str, float]) -> str:
    """The compact JSON later runs read back: ``{"198.51.100.12":2.31,...}``."""
    return json.dumps({h: round(v, 2) for h, v in slowness.items()}, separators=(",", ":"))


def parse_slowness_tag(text: str | None) -> dict[str, float]:
    """What ``slowness_tag`` wrote; {} for a missing or damaged tag (it never fails a run)."""
    try:
        data = json.loads(text or "{}")
        return {str(h): float(v) for h, v in data.items() if isinstance(v, int | float)}
    except (ValueError, AttributeError, TypeError):
        return {}


def _run_window(tasks: pd.DataFrame) -> tuple[float, float]:
    return float(tasks["launch_time"].min()), float(tasks["finish_time"].max())


def lost_executors(
    tasks: pd.DataFrame,
    executors: Mapping[str, Mapping[str, Any]],
    fetch_failed_from: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """One row per executor removed while the run's tasks ran, with what the loss cost.

    ``failed_tasks`` are attempts that failed because of it (running on it when it died, or
    fetching its shuffle output); ``rerun_tasks`` the later attempts of those partitions and of
    the partitions whose finished output it took along (they ran again after it succeeded
    there). ``cost_ms`` = ``failed_time_ms`` + ``rerun_time_ms``: task time, not wall time.
    """
    import pandas as pd

    if tasks.empty:
        return pd.DataFrame(columns=LOST_COLUMNS)
    start, end = _run_window(tasks)
    rows = []
    for executor_id, info in executors.items():
        removed = info.get("removed_time")
        if isinstance(removed, int | float) and start <= removed <= end:
            rows.append(_loss(tasks, str(executor_id), info, start, fetch_failed_from or {}))
    return pd.DataFrame(rows, columns=LOST_COLUMNS)


def _loss(
    tasks: pd.DataFrame, executor_id: str, info: Mapping[str, Any], start: float, blame: Mapping
) -> dict[str, Any]:
    """What losing one executor cost (see ``lost_executors``)."""
    import pandas as pd

    key = ["stage_id", "partition_id"]
    mine = tasks["executor_id"] == executor_id
    kind = tasks["failure_reason"].fillna("").astype(str).str.split(":").str[0]
    blamed = tasks["task_id"].map(lambda t: blame.get(t) == executor_id).astype(bool)
    failed = tasks[(mine & (tasks["status"] != "SUCCESS") & kind.isin(LOSS_REASONS)) | blamed]
    # Finished output it took along: partitions that succeeded on it and later ran again.
    done_here = tasks[mine & (tasks["status"] == "SUCCESS")]
    first = pd.concat([failed, done_here])[[*key, "launch_time", "task_id"]]
    first = first.sort_values("launch_time").drop_duplicates(key)
    later = tasks.merge(first, on=key, suffixes=("", "_first"))
    later = later[(later["launch_time"] > later["launch_time_first"])]
    later = later[~later["task_id"].isin(failed["task_id"])]
    lost_output = set(map(tuple, later[key].values)) - set(map(tuple, failed[key].values))
    kept = set(map(tuple, failed[key].values)) | lost_output
    rerun = pd.Series([tuple(k) in kept for k in later[key].values], index=later.index, dtype=bool)
    again = later[rerun].drop_duplicates("task_id")  # a mask, also when no row ran again
    failed_ms, rerun_ms = float(failed["duration_ms"].sum()), float(again["duration_ms"].sum())
    return {
        "executor_id": executor_id,
        "host": str(info.get("host") or ""),
        "lost_at_s": round((info["removed_time"] - start) / 1000, 1),
        "reason": str(info.get("removed_reason") or ""),
        "failed_tasks": int((failed["failure_reason"] != "Resubmitted").sum()),
        "rerun_tasks": len(again),
        "failed_time_ms": failed_ms,
        "rerun_time_ms": rerun_ms,
        "cost_ms": failed_ms + rerun_ms,
    }


def lost_clause(row: Mapping[str, Any]) -> str:
    """``executor 2 on 198.51.100.12 lost at 14.2 s: <reason>; 6 tasks re-run, +9.8 s``."""
    reason = " ".join(str(row["reason"]).split())[:200] or "no reason given"
    tasks = "task" if row["rerun_tasks"] == 1 else "tasks"
    return (
        f"executor {row['executor_id']} on {row['host'] or '?'} lost at {row['lost_at_s']:.1f} s:"
        f" {reason}; {row['rerun_tasks']} {tasks} re-run, +{row['cost_ms'] / 1000:.1f} s"
    )


def host_table(
    tasks: pd.DataFrame,
    hosts: Mapping[str, str],
    lost: pd.DataFrame,
    slowness: Mapping[str, float],
) -> pd.DataFrame:
    """One row per host (``HOST_COLUMNS``): its executors' tasks, times, shuffle and losses;
    every host an executor registered on, also one that ran no task."""
    import pandas as pd

    if tasks.empty:
        return pd.DataFrame(columns=HOST_COLUMNS)
    frame = _with_hosts(tasks, hosts)
    out = frame.groupby("host").agg(
        executors=("executor_id", "nunique"),
        tasks=("task_id", "size"),
        failed_tasks=("status", lambda s: int((s != "SUCCESS").sum())),
        run_time_ms=("executor_run_time_ms", "sum"),
        cpu_time_ms=("executor_cpu_time_ms", "sum"),
        gc_time_ms=("jvm_gc_time_ms", "sum"),
        shuffle_read_bytes=("shuffle_read_bytes", "sum"),
        shuffle_write_bytes=("shuffle_write_bytes", "sum"),
        input_bytes=("input_bytes", "sum"),
    )
    # A host whose executors ran nothing (registered late, or too slow to be given work) is a
    # row too: that it got no work is what a person looks for.
    registered: dict[str, set[str]] = {}
    for executor_id, host in hosts.items():
        registered.setdefault(host, set()).add(executor_id)
    out = out.reindex(sorted(set(out.index) | set(registered)), fill_value=0)
    out["executors"] = [
        max(int(n), len(registered.get(host, ()))) for host, n in out["executors"].items()
    ]
    lost_per_host = lost.groupby("host")["executor_id"].nunique() if len(lost) else {}
    out["lost_executors"] = [int(lost_per_host.get(h, 0)) for h in out.index]
    out["slowness"] = [round(slowness[h], 3) if h in slowness else None for h in out.index]
    return out.reset_index()[HOST_COLUMNS]
