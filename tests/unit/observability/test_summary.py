"""The end-of-run summary, description and report.html, from a summary built by hand."""

from __future__ import annotations

import base64
import re

from sparkml_template.observability.report import render
from sparkml_template.observability.summary import (
    RunSummary,
    markdown,
    terminal_text,
    where_to_look,
)

# A 1x1 PNG: what the report embeds must come back out byte for byte.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _summary(**changes) -> RunSummary:
    base = {
        "run_id": "0123abcd" * 4,
        "run_name": "brave-fox-1",
        "experiment_id": "7",
        "entry_point": "train",
        "status": "RUNNING",
        "seconds": 12.34,
        "metrics": {"accuracy": 0.97142857, "f1": 0.9712},
        "rows": {"train_rows": 464.0, "test_rows": 105.0},
        "spark": {"tasks": 45.0, "stages": 12.0, "task_skew": 1.5, "stragglers": 1.0},
        "model_uri": "runs:/0123abcd0123abcd0123abcd0123abcd/model",
        "registered": "breast_cancer/3",
        "data_uri": "/data/breast_cancer.csv",
        "data_digest": "120cfabaebf31ea1",
        "stragglers": "1 task(s) > 1.5x stage median",
        "look": where_to_look("sqlite:///tmp/m.db", "7", "0123abcd" * 4),
    }
    return RunSummary(**{**base, **changes})


def test_terminal_summary_names_metrics_model_data_spark_and_where_to_look():
    text = terminal_text(_summary())
    assert text.splitlines()[0] == f"== train: run {'0123abcd' * 4} (brave-fox-1) in 12.3 s =="
    assert "accuracy 0.9714, f1 0.9712" in text
    assert "models:/breast_cancer/3" in text and "runs:/0123abcd" in text
    assert "(rows: train 464, test 105), digest 120cfabaebf31ea1" in text
    assert "45 tasks in 12 stages, skew 1.5x, 1 stragglers, 0 failed, 0 retried" in text
    assert "mlflow ui --backend-store-uri sqlite:///tmp/m.db" in text
    assert "#/experiments/7/runs/" in text


def test_run_page_of_a_server_never_shows_credentials():
    (page,) = where_to_look("https://bob:s3cret@mlflow.example.com:8443/", "3", "abc")
    assert page == "https://mlflow.example.com:8443/#/experiments/3/runs/abc"
    assert "s3cret" not in page and "bob" not in page


def test_markdown_description_is_a_table_of_the_same_facts():
    text = markdown(_summary(metrics={"rmse": 2.5}, registered=None))
    assert "| metrics | rmse 2.5000 |" in text
    assert "| spark | 45 tasks in 12 stages" in text
    assert "report.html" in text and "registered" not in text


def test_report_is_self_contained_with_every_chart_embedded(tmp_path):
    chart = tmp_path / "roc_curve.png"
    chart.write_bytes(PIXEL)
    stages = tmp_path / "stages.csv"
    stages.write_text("stage_id,tasks,duration_p50_ms\n3,4,120.5\n")
    page = render(
        _summary(),
        {"regParam": "0.01", "LogisticRegression.maxIter": "100"},
        [("evaluation/roc_curve.png", chart)],
        {"spark/stages.csv": stages},
    )
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1]) == PIXEL
    assert not re.search(r'(?:src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert "<script" not in page
    assert "<td>120.5</td>" in page and "<h2>Stages</h2>" in page
    assert "<td>regParam</td>" in page and "LogisticRegression.maxIter" not in page


def test_a_long_phase_in_a_log_says_it_is_still_running(spark, capsys, monkeypatch):
    import time

    from sparkml_template.runtime import console

    monkeypatch.setenv(console.INTERVAL_ENV, "0.2")
    monkeypatch.setattr(console, "stderr_is_terminal", lambda: False)
    say = console.Console("train", spark)
    with say.phase("fit", "a slow estimator") as phase:
        time.sleep(0.9)
        phase.done("done")
    time.sleep(0.5)  # the ticker must have stopped with the phase
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[train] fit: a slow estimator …"
    ticks = [line for line in err if "still running after" in line]
    assert 2 <= len(ticks) <= 5
    assert err[-1].startswith("[train] fit: done (") and err[-1].endswith(" s)")
