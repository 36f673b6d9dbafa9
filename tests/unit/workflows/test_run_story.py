"""What a run tells its user, in-process on the shared session: a line per phase with its
duration, the summary on stdout, the description in the UI, report.html, system metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import only_run

import main
import train
from sparkml_template.workflows.main import prepare_main
from sparkml_template.workflows.runner import run_entry_point
from sparkml_template.workflows.train import prepare_training

# Each test runs whole entry points in-process on real Spark: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

PHASES = ("start Spark", "read and validate", "fit", "evaluate", "log the model", "task metrics")


def test_main_says_each_phase_then_summarises_and_reports(tracking, spark, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    code = run_entry_point("main", ["--master", "local[2]"], prepare_main, main.body)
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    run = only_run(tracking)
    run_id = run.info.run_id

    for phase in PHASES:  # announced, then closed with its duration
        assert re.search(rf"^\[main\] {phase}(: .*)? …$", err, re.M), phase
        assert re.search(rf"^\[main\] {phase}: .*\(\d+\.\d s\)$", err, re.M), phase
    assert "[main] fit: LogisticRegression regParam=0.01 elasticNetParam=0 maxIter=100" in err
    assert re.search(r"^\[main\] read and validate: 569 rows, 30 features .* 2 classes", err, re.M)

    assert out.splitlines()[0].startswith(f"== main: run {run_id} (")
    accuracy = run.data.metrics["accuracy"]
    assert f"accuracy {accuracy:.4f}" in out
    assert f"runs:/{run_id}/model" in out
    assert f"--backend-store-uri {tracking.uri}" in out

    note = run.data.tags["mlflow.note.content"]
    assert f"accuracy {accuracy:.4f}" in note and "| data |" in note

    cpu = tracking.client().get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert max(m.value for m in cpu) > 0  # sampled while Spark fitted
    assert run.data.metrics["system/system_memory_usage_megabytes"] > 0

    client = tracking.client()
    page = Path(client.download_artifacts(run_id, "report.html")).read_text()
    images = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(images) >= 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "evaluation/confusion_matrix.png" in page and "evaluation/roc_curve.png" in page
    # the task timeline and stage table are there exactly when task metrics were captured (the
    # shared session's REST capture can time out)
    captured = bool(run.data.metrics.get("spark/tasks"))
    assert ("spark/timeline.png" in page, "<h2>Stages</h2>" in page) == (captured, captured)


def test_system_metrics_can_be_switched_off(tracking, spark, monkeypatch, capsys):
    monkeypatch.setenv("SPARKML_SYSTEM_METRICS", "off")
    monkeypatch.setenv("SPARKML_PROGRESS", "off")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    code = run_entry_point("train", ["--master", "local[2]"], prepare_training, train.body)
    out, err = capsys.readouterr()
    assert code == 0
    run = only_run(tracking)
    assert not [k for k in run.data.metrics if k.startswith("system/")]
    assert "[train]" not in err and out.startswith("== train: run")
