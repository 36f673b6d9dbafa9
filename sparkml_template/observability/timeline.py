"""Charts of a run's tasks: a timeline (one lane per executor core slot, a bar per task attempt,
coloured by stage, failed attempts hatched red) and the median and slowest task of each stage.

Tasks of one executor that overlap in time are stacked into slots within its lane, so a
2-core executor shows two rows of bars and idle cores show as gaps. Lanes are grouped by host
and named by it when the executors ran on more than one. Time is seconds since the run started,
as in report.html's tables, so a bar and a table row can be matched by eye.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sparkml_template.contract.figures import new_figure

if TYPE_CHECKING:
    import pandas as pd

MAX_BARS = 20_000  # beyond this the picture is a smear; the table has every task
_FAILED = "#d62728"
LEGEND_STAGES = 8


def _slots(tasks: pd.DataFrame) -> tuple[list[int], list[str]]:
    """A y-position per task (greedy interval packing per executor) and the lane labels."""
    y = [0] * len(tasks)
    labels: list[str] = []
    base = 0
    hosts = tasks["host"].nunique() if "host" in tasks else 1
    keys = ["host", "executor_id"] if hosts > 1 else ["executor_id"]
    for key, group in tasks.groupby(keys, sort=True):
        name = f"{key[0]} exec {key[1]}" if hosts > 1 else f"executor {key[0]}"
        free_at: list[int] = []  # finish time of the last task in each slot
        for pos, start, finish in zip(
            group.index, group["launch_time"], group["finish_time"], strict=True
        ):
            slot = next((i for i, end in enumerate(free_at) if end <= start), len(free_at))
            if slot == len(free_at):
                free_at.append(finish)
            else:
                free_at[slot] = finish
            y[pos] = base + slot
        labels += [f"{name} #{i}" for i in range(len(free_at))]
        base += len(free_at)
    return y, labels


def run_start_ms() -> int | None:
    """The active MLflow run's start (the capture draws inside the run), else None."""
    try:
        import mlflow

        run = mlflow.active_run()
        return run.info.start_time if run is not None else None
    except Exception:  # no MLflow, or no run: the first task is the origin
        return None


def save_task_timeline(
    tasks: pd.DataFrame, path: Path, title: str = "task timeline", origin_ms: int | None = None
) -> Path:
    """The timeline PNG; time is seconds since ``origin_ms`` (default: the active run's start,
    or the first task's when there is no run or it started after that task)."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    shown = tasks.sort_values("launch_time").head(MAX_BARS).reset_index(drop=True)
    y, labels = _slots(shown)
    fig = new_figure(10, max(3.4, 1.2 + 0.35 * len(labels)))
    ax = fig.add_subplot()
    since = "the run started"
    if shown.empty:
        ax.text(0.5, 0.5, "no tasks", ha="center", va="center", transform=ax.transAxes)
    else:
        first = shown["launch_time"].min()
        origin = origin_ms if origin_ms is not None else run_start_ms()
        if origin is None or origin > first:
            origin, since = first, "the first task started"
        stages = sorted(shown["stage_id"].unique())
        cmap = colormaps["tab20"]
        colour = {s: cmap(i % 20) for i, s in enumerate(stages)}
        starts = (shown["launch_time"] - origin) / 1000
        widths = ((shown["finish_time"] - shown["launch_time"]).clip(lower=1)) / 1000
        failed = shown["status"] != "SUCCESS"
        ax.barh(y, widths, left=starts, height=0.8, color=[colour[s] for s in shown["stage_id"]])
        if failed.any():
            ax.barh(
                [y[i] for i in shown.index[failed]],
                widths[failed],
                left=starts[failed],
                height=0.8,
                color="none",
                edgecolor=_FAILED,
                hatch="xx",
                linewidth=1.5,
            )
        handles = [Patch(color=colour[s], label=f"stage {s}") for s in stages[:LEGEND_STAGES]]
        if len(stages) > LEGEND_STAGES:
            handles.append(Patch(color="white", label=f"+{len(stages) - LEGEND_STAGES} more"))
        if failed.any():
            handles.append(Patch(facecolor="none", edgecolor=_FAILED, hatch="xx", label="failed"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"seconds since {since}")
    ax.set_title(title if len(tasks) <= MAX_BARS else f"{title} (first {MAX_BARS} tasks)")
    left = max(0.16, 0.04 + 0.0072 * max(map(len, labels), default=0))  # room for host names
    fig.subplots_adjust(left=left, right=0.86, top=0.9, bottom=0.14)  # tight_layout is slow here
    fig.savefig(path)
    return path


def save_stage_durations(stages: pd.DataFrame, path: Path) -> Path:
    """Per stage attempt: median task duration as a bar, the slowest task as a red tick, so a
    stage with one slow task (skew, a straggler) stands out. Takes ``stage_summary``'s table."""
    fig = new_figure(max(5.0, 1.0 + 0.18 * len(stages)), 4)
    ax = fig.add_subplot()
    shown = stages.dropna(subset=["duration_p50_ms"]) if len(stages) else stages
    if len(shown):
        x = range(len(shown))
        ax.bar(x, shown["duration_p50_ms"] / 1000, color="tab:blue", label="median task")
        slowest = shown["duration_max_ms"] / 1000
        ax.scatter(x, slowest, color=_FAILED, marker="_", s=120, label="slowest")
        names = [
            f"{s}" if a == 0 else f"{s}.{a}"
            for s, a in zip(shown["stage_id"], shown["stage_attempt"], strict=True)
        ]
        step = max(1, len(names) // 40)
        ax.set_xticks(list(x)[::step], names[::step], rotation=90, fontsize=7)
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("stage (.attempt)")
    ax.set_ylabel("task duration (s)")
    ax.set_title("task durations per stage")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.22)
    fig.savefig(path)
    return path
