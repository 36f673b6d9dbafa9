"""``report.html``: one self-contained page per run that the MLflow UI shows inline on the
run's Artifacts tab: the summary, metrics and parameters, every chart the run logged (images
embedded as ``data:`` URIs), the stage table, stragglers and failures.

No script, no external font, style sheet or image: it renders offline and in the UI's sandboxed
frame. It is built from what the run logged (its charts and CSV tables are read back from the
artifact store), after the body and the task capture, and never fails a run.
"""

from __future__ import annotations

import base64
import csv
import html
import sys
import tempfile
from pathlib import Path

from sparkml_template.observability.summary import RunSummary, summary_lines

REPORT_FILE = "report.html"
# Where charts and tables live in a run's artifacts (evaluation, promotion, tuning, task metrics).
CHART_DIRS = (
    "", "evaluation", "learned", "promotion/candidate", "promotion/champion", "tuning", "spark",
)  # fmt: skip
TABLES = {
    "spark/stages.csv": "Stages",
    "spark/stragglers.csv": "Stragglers",
    "spark/failures.csv": "Failed and retried tasks",
}
MAX_TABLE_ROWS = 200
STYLE = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0 12px}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-variant-numeric:tabular-nums}th{background:#f4f6f8}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
figcaption{font-size:12px;color:#555}img{max-width:100%;border:1px solid #eee}
.muted{color:#666}
"""


def _table(rows: list[list[str]], header: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or [])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _csv_table(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) <= 1:
        return '<p class="muted">none</p>'
    shown = rows[1 : MAX_TABLE_ROWS + 1]
    more = len(rows) - 1 - len(shown)
    note = f'<p class="muted">{more} more rows in the CSV</p>' if more > 0 else ""
    return _table(shown, rows[0]) + note


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render(summary: RunSummary, params: dict[str, str], charts: list[tuple[str, Path]],
           tables: dict[str, Path]) -> str:  # fmt: skip
    """The page, from the summary and local copies of the run's charts and tables."""
    facts = _table([[label, text] for label, text in summary_lines(summary)])
    metric_rows = [[k, f"{v:.6g}"] for k, v in summary.metrics.items()]
    metric_rows += [[k, f"{v:.0f}"] for k, v in summary.rows.items()]
    spark_rows = [[f"spark/{k}", f"{v:.6g}"] for k, v in sorted(summary.spark.items())]
    parts = [
        f"<h1>{html.escape(summary.entry_point)} run {html.escape(summary.run_id)}</h1>",
        f'<p class="muted">{html.escape(summary.run_name)}</p>',
        facts,
        "<h2>Metrics</h2>",
        _table(metric_rows, ["metric", "value"]) if metric_rows else "<p>none</p>",
        "<h2>Charts</h2>",
        "".join(_figure(path, name) for name, path in charts) or '<p class="muted">none</p>',
    ]
    for name, title in TABLES.items():
        if name in tables:
            parts += [f"<h2>{title}</h2>", _csv_table(tables[name])]
    parts += ["<h2>Spark task metrics</h2>", _table(spark_rows, ["metric", "value"])]
    param_rows = [[k, v] for k, v in sorted(params.items()) if "." not in k]
    parts += ["<h2>Parameters</h2>", _table(param_rows, ["parameter", "value"])]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(summary.entry_point)} run {summary.run_id[:8]}</title>"
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _download_logged(
    artifact_uri: str, dest: Path
) -> tuple[list[tuple[str, Path]], dict[str, Path]]:
    """Local copies of the run's PNG charts and the task tables the report shows.

    Through the run's artifact repository, resolved once: ``MlflowClient``'s artifact calls
    look the run up again for every listing and file.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(artifact_uri)
    charts: list[tuple[str, Path]] = []
    for folder in CHART_DIRS:
        for item in repo.list_artifacts(folder or None):
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
            client.log_artifact(run_id, str(page))
        return Path(REPORT_FILE)
    except Exception as exc:
        print(f"report: not written ({type(exc).__name__}: {exc})"[:300], file=sys.stderr)
        return None
