"""What a run says when it ends: a short summary on stdout, the same in Markdown as the run's
description in the MLflow UI (``mlflow.note.content``), and where to look next.

Everything here reads back what the run logged (one ``get_run``), so it describes every entry
point the same way and needs nothing passed through the workflows. It is written after the
body, like the task capture, and never fails a run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from sparkml_template.runtime.tracking import MODEL_TAG, REGISTERED_TAG

NOTE_TAG = "mlflow.note.content"
# Headline metrics first, in this order; other model metrics follow alphabetically.
HEADLINE = (
    "accuracy", "f1", "areaUnderROC", "weightedPrecision", "weightedRecall",
    "rmse", "mae", "r2", "best_cv_accuracy", "grid_size",
)  # fmt: skip
ROW_METRICS = ("train_rows", "test_rows", "eval_rows", "input_rows", "output_rows")
MACHINERY_PREFIXES = ("spark/", "partition/", "system/", "serving/")
SERIES = ("training_loss", "validation_loss")  # per-iteration: their last step says little
# Written by the environment and per-host captures (observability.environment, .hosts).
ENV_TAG, ENV_GRADE_TAG, ENV_SINCE_TAG = (
    "spark.environment", "spark.environment.grade", "spark.environment.since",
)  # fmt: skip
SLOW_HOSTS_TAG, LOST_TAG = "spark.slow_hosts", "spark.lost_executors"


@dataclass
class RunSummary:
    """The facts a summary shows, read back from the run."""

    run_id: str
    run_name: str
    experiment_id: str
    entry_point: str
    status: str
    seconds: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    rows: dict[str, float] = field(default_factory=dict)
    spark: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    registered: str | None = None
    data_uri: str | None = None
    data_digest: str | None = None
    stragglers: str | None = None
    look: list[str] = field(default_factory=list)
    started_ms: int | None = None  # the run's start: the origin of every time in report.html
    environment: str | None = None  # the verdict, and its grade (same, cosmetic, numeric, ...)
    environment_grade: str | None = None
    environment_since: str | None = None
    slow_hosts: str | None = None
    lost_executors: str | None = None


def _model_metrics(metrics: dict[str, float]) -> dict[str, float]:
    own = {
        k: v
        for k, v in metrics.items()
        if not k.startswith(MACHINERY_PREFIXES) and k not in ROW_METRICS + SERIES
    }
    ordered = [k for k in HEADLINE if k in own] + sorted(k for k in own if k not in HEADLINE)
    return {k: own[k] for k in ordered}


def where_to_look(tracking_uri: str, experiment_id: str, run_id: str) -> list[str]:
    """The run page for a tracking server; the ``mlflow ui`` command for a local store."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    scheme = urlparse(tracking_uri).scheme
    if scheme in ("http", "https"):
        parts = urlparse(tracking_uri)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")  # never the credentials
        return [f"{parts._replace(netloc=netloc).geturl().rstrip('/')}/{path}"]
    if scheme.startswith("databricks"):
        return [f"the run {run_id} in your Databricks workspace's experiment {experiment_id}"]
    store = tracking_uri or "mlruns"
    return [
        f"mlflow ui --backend-store-uri {store}",
        f"then http://127.0.0.1:5000/{path}",
    ]


def read_summary(run_id: str, entry_point: str) -> RunSummary:
    """One ``get_run`` and the facts in it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    run = MlflowClient().get_run(run_id)
    data, info = run.data, run.info
    end = info.end_time or int(time.time() * 1000)  # still RUNNING while the summary is written
    seconds = (end - info.start_time) / 1000 if info.start_time else None
    model_uri = None
    if data.tags.get(MODEL_TAG):
        model_uri = f"runs:/{run_id}/{data.tags[MODEL_TAG]}"
    return RunSummary(
        run_id=run_id,
        run_name=info.run_name or "",
        experiment_id=info.experiment_id,
        entry_point=entry_point,
        status=info.status,
        seconds=seconds,
        metrics=_model_metrics(data.metrics),
        rows={k: data.metrics[k] for k in ROW_METRICS if k in data.metrics},
        spark={k[len("spark/") :]: v for k, v in data.metrics.items() if k.startswith("spark/")},
        model_uri=model_uri,
        registered=data.tags.get(REGISTERED_TAG),
        data_uri=data.tags.get("data.uri"),
        data_digest=data.tags.get("data.digest"),
        stragglers=data.tags.get("spark.stragglers"),
        look=where_to_look(mlflow.get_tracking_uri(), info.experiment_id, run_id),
        started_ms=info.start_time,
        environment=data.tags.get(ENV_TAG),
        environment_grade=data.tags.get(ENV_GRADE_TAG),
        environment_since=data.tags.get(ENV_SINCE_TAG),
        slow_hosts=data.tags.get(SLOW_HOSTS_TAG),
        lost_executors=data.tags.get(LOST_TAG),
    )


def _number(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:.4f}"


def summary_lines(s: RunSummary) -> list[tuple[str, str]]:
    """(label, text) pairs shared by the terminal and Markdown forms."""
    out = []
    if s.metrics:
        out.append(("metrics", ", ".join(f"{k} {_number(v)}" for k, v in s.metrics.items())))
    if s.model_uri:
        registered = ""
        if s.registered:
            name, _, version = s.registered.partition("/")
            registered = f" (registered: models:/{name}/{version}, @challenger)"
        out.append(("model", s.model_uri + registered))
    if s.data_uri:
        rows = ", ".join(f"{k.removesuffix('_rows')} {_number(v)}" for k, v in s.rows.items())
        digest = f", digest {s.data_digest}" if s.data_digest else ""
        out.append(("data", f"{s.data_uri}" + (f" (rows: {rows})" if rows else "") + digest))
    if s.spark.get("tasks") is not None:
        sp = s.spark
        parts = [
            f"{_number(sp['tasks'])} tasks in {_number(sp.get('stages', 0))} stages",
            f"skew {sp['task_skew']:.1f}x" if "task_skew" in sp else "",
            f"{_number(sp.get('stragglers', 0))} stragglers",
            f"{_number(sp.get('task_failures', 0))} failed, "
            f"{_number(sp.get('task_retries', 0))} retried",
        ]
        out.append(("spark", ", ".join(p for p in parts if p)))
    return out + host_lines(s)


def slow_text(s: RunSummary) -> str:
    """``spark.slow_hosts`` as a clause that says what it is: ``slow: <host> (2.3x, ...)``."""
    slow = (s.slow_hosts or "").strip()
    return f"slow: {slow}" if slow and not slow.lower().startswith("slow") else slow


def host_lines(s: RunSummary) -> list[tuple[str, str]]:
    """Per-host lines, only when there is something to say: more than one host, a host slow
    across runs, an executor environment that is not the same everywhere, a lost executor.

    A healthy run on one machine (local mode, a loopback cluster) gets none. A continuation
    line has an empty label.
    """
    out: list[tuple[str, str]] = []
    hosts, executors = s.spark.get("hosts"), s.spark.get("executors")
    if (hosts or 0) > 1 or s.slow_hosts:
        counted = []
        if hosts is not None:
            counted.append(f"{_number(hosts)} host{'' if hosts == 1 else 's'}")
        if executors is not None:
            counted.append(f"{_number(executors)} executor{'' if executors == 1 else 's'}")
        out.append(("hosts", "; ".join(p for p in (", ".join(counted), slow_text(s)) if p)))
    if s.environment and s.environment_grade not in (None, "same"):
        out.append(("env", s.environment))
    if s.environment_since:
        out.append(("" if out and out[-1][0] == "env" else "env", s.environment_since))
    if s.lost_executors:
        out.append(("lost", s.lost_executors))
    return out


def terminal_text(s: RunSummary) -> str:
    """The summary printed on stdout when an entry point ends."""
    took = f" in {s.seconds:.1f} s" if s.seconds is not None else ""
    head = f"== {s.entry_point}: run {s.run_id} ({s.run_name}){took} =="
    body = [f"  {label:<8}{text}" for label, text in summary_lines(s)]
    look = [f"  {'look':<8}{s.look[0]}", *[f"  {'':<8}{extra}" for extra in s.look[1:]]]
    report = [f"  {'report':<8}report.html in the run's artifacts (shown in the MLflow UI)"]
    return "\n".join([head, *body, *look, *report])


def markdown(s: RunSummary) -> str:
    """The run's description in the MLflow UI."""
    rows = [f"| {label} | {text.replace('|', '/')} |" for label, text in summary_lines(s)]
    return "\n".join(
        [
            f"**{s.entry_point}** run of the PySpark ML template.",
            "",
            "| | |",
            "| --- | --- |",
            *rows,
            "",
            "The charts, hosts, stage table, stragglers and failures are in `report.html` "
            "(Artifacts tab); every Spark task is in `spark/tasks.csv`.",
        ]
    )


def write_summary(run_id: str, entry_point: str, print_it: bool) -> RunSummary | None:
    """Set the run's description and (``print_it``) print the summary; never raises."""
    try:
        from mlflow.tracking import MlflowClient

        summary = read_summary(run_id, entry_point)
        MlflowClient().set_tag(run_id, NOTE_TAG, markdown(summary))
        if print_it:
            print(terminal_text(summary), flush=True)
        return summary
    except Exception as exc:  # the summary is a courtesy: say why it is missing, go on
        print(f"summary: not written ({type(exc).__name__}: {exc})"[:300], file=sys.stderr)
        return None
