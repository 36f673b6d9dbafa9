"""``report.html``: one self-contained page per run that the MLflow UI shows inline on the
run's Artifacts tab: the summary, metrics, every chart the run logged (as ``data:`` URIs), the
per-host view (hosts, executor environment, lost executors), stages, stragglers, failures.

A page to read, not a dump of the CSVs beside it: times in seconds since the run started, sizes
in KiB/MiB, stage names as the operation and file base name, and only the columns a person reads,
so tables fit a 1300-px window (the CSVs keep every column). No script, nothing external: it
renders offline and in the UI's sandboxed frame. Built from what the run logged, after the body
and the task capture; it never fails a run.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sparkml_template.observability.summary import (
    RunSummary,
    slow_text,
    summary_lines,
    write_summary,
)
from sparkml_template.runtime.tracking import log_artifact_files

REPORT_FILE = "report.html"
# Where charts and tables live in a run's artifacts (evaluation, promotion, tuning, task metrics).
CHART_DIRS = (
    "", "evaluation", "learned", "promotion/candidate", "promotion/champion", "tuning", "spark",
)  # fmt: skip
HOSTS, ENVIRONMENT, LOST = "spark/hosts.csv", "spark/environment.csv", "spark/lost_executors.csv"
TABLES = {
    HOSTS: "Hosts",
    ENVIRONMENT: "Executor environment",
    LOST: "Lost executors",
    "spark/stages.csv": "Stages",
    "spark/stragglers.csv": "Stragglers",
    "spark/failures.csv": "Failed and retried tasks",
}
MAX_TABLE_ROWS = 200
MAX_CELL_CHARS = 300  # a failure reason can be a whole stack trace; the CSV keeps it all
MAX_NAME_CHARS = 56  # a stage name stays on one line; the full name shows on hover
EPOCH_MS = 1e11  # a "*_time" value above this is epoch milliseconds (1973 onwards)
STYLE = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.box{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:4px 0 12px}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top;font-variant-numeric:tabular-nums}
th{background:#f4f6f8;font-weight:600;vertical-align:bottom}
table.data{font-size:13px}table.data th{white-space:normal}
td.n{text-align:right;white-space:nowrap}td.t{overflow-wrap:anywhere;max-width:36em}
td.nm,.facts td:first-child{white-space:nowrap}.facts td{overflow-wrap:anywhere}
tr.flag td{background:#fff4e5}td.diff{background:#fde8e8}
.kv{display:inline-table;margin-right:16px}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
figcaption{font-size:12px;color:#555}img{max-width:100%;border:1px solid #eee}
.muted{color:#666}.warn{color:#a33}summary{cursor:default;color:#444}
"""

# What each table shows, in order: (header, column or a function of the row, kind). Kinds:
# "epoch" (ms since 1970 -> s since the run started), "ms" (-> s), "bytes", "int", "num",
# "id", "text", "stage_name". A column the CSV lacks is left out.
Row = Mapping[str, str]
Column = tuple[str, str | Callable[[Row], str], str]


def _stage(row: Row) -> str:
    attempt = row.get("stage_attempt", "0")
    return row.get("stage_id", "") + ("" if attempt in ("0", "") else f".{attempt}")


def _stage_took(row: Row) -> str:
    try:  # submission to completion; the span of its tasks when Spark gave no stage times
        if row.get("stage_duration_ms"):
            return row["stage_duration_ms"]
        return str(float(row["last_finish_time"]) - float(row["first_launch_time"]))
    except (KeyError, ValueError):
        return ""


_TASK: list[Column] = [
    ("stage", _stage, "id"), ("task", "task_id", "id"), ("partition", "partition_id", "id"),
    ("executor", "executor_id", "id"), ("host", "host", "text"),
    ("start (s)", "launch_time", "epoch"), ("took (s)", "duration_ms", "ms"),
]  # fmt: skip
SHOWN: dict[str, list[Column]] = {
    HOSTS: [
        ("host", "host", "text"), ("executors", "executors", "int"), ("tasks", "tasks", "int"),
        ("failed", "failed_tasks", "int"), ("run time (s)", "run_time_ms", "ms"),
        ("CPU (s)", "cpu_time_ms", "ms"), ("GC (s)", "gc_time_ms", "ms"),
        ("input", "input_bytes", "bytes"), ("shuffle read", "shuffle_read_bytes", "bytes"),
        ("shuffle write", "shuffle_write_bytes", "bytes"),
        ("lost executors", "lost_executors", "int"), ("slowness", "slowness", "num"),
    ],
    "spark/stages.csv": [
        ("stage", _stage, "id"), ("name", "name", "stage_name"),
        ("tasks", "tasks", "int"), ("failed", "failed_tasks", "int"),
        ("start (s)", "first_launch_time", "epoch"), ("took (s)", _stage_took, "ms"),
        ("task median (s)", "duration_p50_ms", "ms"), ("task max (s)", "duration_max_ms", "ms"),
        ("skew", "task_skew", "num"), ("run time (s)", "executor_run_time_ms_total", "ms"),
        ("GC (s)", "jvm_gc_time_ms_total", "ms"), ("input", "input_bytes_total", "bytes"),
        ("shuffle read", "shuffle_read_bytes_total", "bytes"),
        ("shuffle write", "shuffle_write_bytes_total", "bytes"),
        ("spilled", "disk_bytes_spilled_total", "bytes"),
    ],
    "spark/stragglers.csv": [
        *_TASK, ("stage median (s)", "stage_median_ms", "ms"),
        ("× median", "ratio_to_median", "num"), ("GC (s)", "jvm_gc_time_ms", "ms"),
        ("input", "input_bytes", "bytes"), ("shuffle read", "shuffle_read_bytes", "bytes"),
    ],
    "spark/failures.csv": [
        *_TASK[:3], ("attempt", "attempt", "id"), *_TASK[3:], ("status", "status", "text"),
        ("reason", "failure_reason", "text"),
    ],
}  # fmt: skip
ENV_KEYS = ("role", "host", "executor_id")  # who a row of spark/environment.csv is


def short_stage_name(name: str) -> str:
    """``collect at /long/path/to/scoring.py:153`` -> ``collect at scoring.py:153``: the
    operation and the call site's file base name and line (``:0``, Java's "no line", dropped)."""
    op, sep, site = name.strip().partition(" at ")
    site = re.split(r"[/\\]", (site.split() or [""])[0])[-1].removesuffix(":0")
    return f"{op} at {site}" if sep else op


def _kind(column: str) -> str:
    """The kind of a column a table does not list (lost executors: the CSV decides)."""
    last = column.removesuffix("_total")
    if last.endswith("_id") or last in ("host", "executor"):
        return "id"
    if last == "time" or last.endswith("_time"):
        return "epoch"
    if last.endswith(("_ms", "_s")):
        return last.rsplit("_", 1)[1]
    return "bytes" if last.endswith("bytes") else "auto"


def _header(column: str) -> str:
    """``lost_time`` -> ``lost (s)``, ``run_time_ms`` -> ``run time (s)``, ``x_bytes`` -> ``x``."""
    last = column.removesuffix("_total")
    for suffix, unit in (("_ms", " (s)"), ("_s", " (s)"), ("_time", " (s)"), ("_bytes", "")):
        if last.endswith(suffix) and last != suffix.lstrip("_"):
            last = last.removesuffix(suffix) + unit
            break
    return last.replace("_", " ")


def _seconds(value: float) -> str:
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def human_bytes(value: float) -> str:
    """``4508114`` -> ``4.3 MiB`` (Spark's UI counts in binary units too)."""
    power = min(4, int(math.log(abs(value), 1024))) if abs(value) >= 1 else 0
    unit = ("B", "KiB", "MiB", "GiB", "TiB")[power]
    return "0" if value == 0 else f"{value / 1024**power:.{0 if power == 0 else 1}f} {unit}"


def cell(raw: str, kind: str, origin_ms: float | None) -> tuple[str, str]:
    """(text, css class) of one value: numbers right-aligned, text free to wrap."""
    raw = "" if raw is None else str(raw)
    if kind in ("text", "id", "stage_name") or raw == "":
        text = short_stage_name(raw) if kind == "stage_name" else raw
        most = MAX_NAME_CHARS if kind == "stage_name" else MAX_CELL_CHARS
        text = text if len(text) <= most else text[: most - 1] + "…"
        return text, {"text": "t", "stage_name": "nm"}.get(kind, "")
    try:
        value = float(raw)
    except ValueError:
        return cell(raw, "text", origin_ms)
    if not math.isfinite(value):  # NaN: no value; inf: as written
        return ("" if math.isnan(value) else raw), "n"
    if kind == "epoch" and value > EPOCH_MS:
        return _seconds((value - (origin_ms or 0)) / 1000), "n"
    if kind in ("ms", "s"):
        return _seconds(value / (1000 if kind == "ms" else 1)), "n"
    if kind == "bytes":
        return human_bytes(value), "n"
    if value.is_integer() and kind in ("int", "auto", "epoch"):
        return f"{int(value):,}", "n"
    return (f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"), "n"


def _table(rows: list[list[str]], header: list[str] | None = None, cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or [])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}">{f"<tr>{head}</tr>" if head else ""}{body}</table>'


def data_table(
    rows: list[dict[str, str]],
    columns: list[Column],
    origin_ms: float | None,
    flag: Callable[[Row], bool] = lambda row: False,
    differs: Callable[[Row, str], bool] = lambda row, column: False,
) -> str:
    """A table of CSV rows as a person reads it, in its own box (scrolls only if it must)."""
    if not rows:
        return '<p class="muted">none</p>'
    shown = rows[:MAX_TABLE_ROWS]
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in columns)
    lines = []
    for row in shown:
        cells = []
        for _, source, kind in columns:
            raw = source(row) if callable(source) else row.get(source, "")
            text, cls = cell(raw, kind, origin_ms)
            if isinstance(source, str) and differs(row, source):
                cls = f"{cls} diff".strip()
            shortened = kind in ("text", "stage_name") and text != raw  # whole on hover
            title = f' title="{html.escape(raw)}"' if shortened else ""
            cells.append(f'<td class="{cls}"{title}>{html.escape(text)}</td>')
        lines.append("<tr" + ' class="flag"' * flag(row) + ">" + "".join(cells) + "</tr>")
    more = len(rows) - len(shown)
    note = f'<p class="muted">{more} more rows in the CSV</p>' if more > 0 else ""
    table = f'<table class="data"><tr>{head}</tr>{"".join(lines)}</table>'
    return f'<div class="box">{table}</div>{note}'


def origin_of(summary: RunSummary, tables: Mapping[str, list[dict[str, str]]]) -> float | None:
    """The run's start (the MLflow run's, as the summary's duration and the timeline use); the
    earliest time in the tables when the run has none. An executor that registered while the
    run was being created shows a small negative time, which is the truth."""
    if summary.started_ms is not None:
        return float(summary.started_ms)
    cells = [r[c] for rows in tables.values() for r in rows for c in r if c and _kind(c) == "epoch"]
    times = [float(v) for v in cells if re.fullmatch(r"\d{12,}(\.\d*)?", v or "")]
    return min(times) if times else None


def _names(host: str | None, text: str | None) -> bool:
    """Whether a tag's text names this host (198.51.100.1 is not 198.51.100.12)."""
    return bool(host and text and re.search(rf"(?<![\w.]){re.escape(host)}(?![\w.])", text))


def _environment(rows: list[dict[str, str]], summary: RunSummary) -> str:
    """The verdict, the fields that differ between the rows (a cell unlike the driver's is
    shaded where the verdict names that field and host: thread variables differ in every
    Python worker by design), and the fields that are the same everywhere folded away."""
    said = f"{summary.environment or ''} {summary.environment_since or ''}"
    label = {c: c if c.isupper() else c.replace("_", " ") for c in rows[0]} if rows else {}
    warn = "warn" if summary.environment_grade in ("numeric", "fatal") else ""
    out = [f'<p class="{cls}">{html.escape(text)}</p>' for cls, text in (
        (warn, summary.environment), ("warn", summary.environment_since)) if text]  # fmt: skip
    if not rows:
        return "".join(out) or '<p class="muted">none</p>'
    fields = [c for c in rows[0] if c and c not in ENV_KEYS]
    varying = [c for c in fields if len({row.get(c, "") for row in rows}) > 1]
    same = [c for c in fields if c not in varying]
    role = "role" if "role" in rows[0] else "executor_id"  # the driver's row says "driver"
    ordered = sorted(rows, key=lambda r: (r.get(role) != "driver", r.get("host", "")))
    ordered = [{c: v or "—" for c, v in r.items()} for r in ordered]  # "—": not there
    driver = ordered[0] if ordered[0].get(role) == "driver" else None
    if varying:
        keys = [(h, c, "id") for h, c in (("host", "host"), ("executor", "executor_id"))]
        columns = keys + [(label[c], c, "text") for c in varying]
        out.append(
            data_table(
                ordered, columns, None,
                differs=lambda row, c: driver is not None and row is not driver
                and row.get(c) != driver.get(c) and _names(row.get("host"), said)
                and any(_names(name, said) for name in (c, label[c], c.replace("_", "-"))),
            )
        )  # fmt: skip
    if same:
        n = sum(1 for row in rows if row.get(role) != "driver")
        who = f"{n} executor{'s' * (n != 1)}"
        who = ("the driver" + (f" and {who}" if n else "")) if driver else who
        pairs = [[label[c], cell(rows[0].get(c, ""), "text", None)[0]] for c in same]
        out.append(
            f"<details><summary>{len(same)} fields the same on {who}</summary>"
            f'<div class="box">{_table(pairs, ["field", "value"], "data")}</div></details>'
        )
    return "".join(out)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _spark_metrics(spark: Mapping[str, float]) -> str:
    """The run's spark/ metrics, three narrow tables side by side, values in s and MiB."""
    rows = [
        [f"spark/{k}", cell(str(v), _kind(k), None)[0] + (" s" if _kind(k) == "ms" else "")]
        for k, v in sorted(spark.items())
    ]
    third = math.ceil(len(rows) / 3) or 1
    chunks = [rows[i : i + third] for i in range(0, len(rows), third)]
    return "".join(_table(chunk, ["metric", "value"], "data kv") for chunk in chunks)


def render(summary: RunSummary, params: dict[str, str], charts: list[tuple[str, Path]],
           tables: dict[str, Path]) -> str:  # fmt: skip
    """The page, from the summary and local copies of the run's charts and tables."""
    data = {name: list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
            for name, path in tables.items()}  # fmt: skip
    origin = origin_of(summary, data)
    facts = _table([[label, text] for label, text in summary_lines(summary)], cls="facts")
    metric_rows = [[k, f"{v:.6g}"] for k, v in summary.metrics.items()]
    metric_rows += [[k, f"{v:.0f}"] for k, v in summary.rows.items()]
    clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime((origin or 0) / 1000))
    started = origin and (
        f'<p class="muted">Times below are seconds since the run started ({clock}), durations '
        "in seconds. The CSVs in the run's <code>spark/</code> folder have every column.</p>"
    )
    parts = [
        f"<h1>{html.escape(summary.entry_point)} run {html.escape(summary.run_id)}</h1>",
        f'<p class="muted">{html.escape(summary.run_name)}</p>',
        facts,
        started or "",
        "<h2>Metrics</h2>",
        _table(metric_rows, ["metric", "value"]) if metric_rows else "<p>none</p>",
        "<h2>Charts</h2>",
        "".join(_figure(path, name) for name, path in charts) or '<p class="muted">none</p>',
    ]
    leads = {HOSTS: slow_text(summary), LOST: summary.lost_executors}
    for name, title in TABLES.items():
        rows = data.get(name)
        if rows is None and not (name == ENVIRONMENT and summary.environment):
            continue
        parts.append(f"<h2>{title}</h2>")
        if name == ENVIRONMENT:
            parts.append(_environment(rows or [], summary))
            continue
        if leads.get(name):
            parts.append(f'<p class="warn">{html.escape(leads[name] or "")}</p>')
        present = list(rows[0]) if rows else []  # a table's own list, or every column it has
        columns = [c for c in SHOWN.get(name, []) if callable(c[1]) or c[1] in present] or [
            (_header(c), c, _kind(c)) for c in present if name not in SHOWN
        ]
        slow = summary.slow_hosts if name == HOSTS else None
        flag = lambda r, s=slow: _names(r.get("host"), s)  # noqa: E731
        parts.append(data_table(rows or [], columns, origin, flag))
    parts += ["<h2>Spark task metrics</h2>", _spark_metrics(summary.spark)]
    param_rows = [[k, v] for k, v in sorted(params.items()) if "." not in k]
    parts += ["<h2>Parameters</h2>", _table(param_rows, ["parameter", "value"], "facts")]
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(summary.entry_point)} run {summary.run_id[:8]}</title>"
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _download_logged(
    artifact_uri: str, dest: Path
) -> tuple[list[tuple[str, Path]], dict[str, Path]]:
    """Local copies of the run's PNG charts and tables, through its artifact repository
    resolved once (``MlflowClient``'s artifact calls look the run up for every file)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(artifact_uri)
    charts: list[tuple[str, Path]] = []
    for folder in CHART_DIRS:
        listed = repo.list_artifacts(folder or None)  # the timeline before other task charts
        for item in sorted(listed, key=lambda item: not item.path.endswith("timeline.png")):
            if not item.is_dir and item.path.endswith(".png"):
                local = repo.download_artifacts(item.path, str(dest))
                charts.append((item.path, Path(local)))
    tables = {}
    for name in TABLES:
        try:
            tables[name] = Path(repo.download_artifacts(name, str(dest)))
        except Exception:  # the run has no such table (no task capture, a failed body)
            continue
    return charts, tables


def write_report(run_id: str, summary: RunSummary) -> Path | None:
    """Build ``report.html`` from what the run logged and log it; never raises."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory(prefix="sparkml-report-") as tmp:
            dest = Path(tmp) / "in"
            dest.mkdir()
            charts, tables = _download_logged(run.info.artifact_uri, dest)
            page = Path(tmp) / REPORT_FILE
            page.write_text(render(summary, run.data.params, charts, tables), encoding="utf-8")
            log_artifact_files(run_id, page)
        return Path(REPORT_FILE)
    except Exception as exc:
        print(f"report: not written ({type(exc).__name__}: {exc})"[:300], file=sys.stderr)
        return None


def write_summary_and_report(run_id: str, entry_point: str, tracking_uri: str) -> None:
    """The run's description and ``report.html``, written later: by the run when its tracking
    server is back, or by the spool's replay (``runtime/spool``), which calls this by name."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    summary = write_summary(run_id, entry_point, print_it=False)
    if summary is not None:
        write_report(run_id, summary)
