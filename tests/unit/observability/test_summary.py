"""The end-of-run summary, description and report.html, from a summary built by hand."""

from __future__ import annotations

import base64
import re

from sparkml_template.observability.report import render
from sparkml_template.observability.summary import (
    RunSummary,
    markdown,
    summary_lines,
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
    assert '<td class="n">0.12</td>' in page and "<h2>Stages</h2>" in page  # 120.5 ms
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


# The per-host lines: said only when there is something to say.
SLOW = "198.51.100.12 (2.3x, in 4 of the last 5 runs)"
ENV = "numeric: numpy 1.26.4 on 198.51.100.12 (driver 2.3.5); canary differs on 198.51.100.12"
SINCE = "host 198.51.100.12: numpy 2.3.5 -> 1.26.4 since run 5e1f0c2a"
LOST = "executor 2 on 198.51.100.12 lost at 14.2 s: Command exited with code 137; 6 tasks re-run"


def _cluster(**changes) -> RunSummary:
    spark = {"tasks": 45.0, "stages": 12.0, "hosts": 3.0, "executors": 3.0}
    base = {"spark": spark, "slow_hosts": SLOW, "environment": ENV, "lost_executors": LOST,
            "environment_grade": "numeric", "environment_since": SINCE}  # fmt: skip
    return _summary(**{**base, **changes})


def test_a_healthy_local_run_says_nothing_new():
    local = _summary(
        spark={"tasks": 46.0, "stages": 46.0, "hosts": 1.0, "executors": 1.0},
        environment="same on 1 executor, 1 host", environment_grade="same",
    )  # fmt: skip
    assert [label for label, _ in summary_lines(local)] == ["metrics", "model", "data", "spark"]
    assert len(terminal_text(local).splitlines()) == len(terminal_text(_summary()).splitlines())


def test_a_cluster_run_names_its_hosts_environment_and_lost_executors():
    text = terminal_text(_cluster())
    assert f"  hosts   3 hosts, 3 executors; slow: {SLOW}" in text.splitlines()
    assert f"  env     {ENV}" in text.splitlines()
    assert f"          {SINCE}" in text.splitlines()  # a continuation of env
    assert f"  lost    {LOST}" in text.splitlines()
    even = dict(slow_hosts=None, environment_grade="same", environment_since=None)
    lines = dict(summary_lines(_cluster(**even, lost_executors=None)))
    assert lines["hosts"] == "3 hosts, 3 executors" and "env" not in lines and "lost" not in lines
    # A change since the last good run is said even when the executors agree with the driver.
    assert dict(summary_lines(_cluster(**{**even, "environment_since": SINCE})))["env"] == SINCE
    # One host but slow across runs: still said; a tag that already says "slow" is not doubled.
    one = _cluster(spark={"tasks": 4.0, "hosts": 1.0}, slow_hosts=f"slow: {SLOW}")
    assert dict(summary_lines(one))["hosts"] == f"1 host; slow: {SLOW}"


def test_markdown_keeps_the_host_lines_as_table_rows():
    text = markdown(_cluster())
    assert f"| env | {ENV} |" in text and f"|  | {SINCE} |" in text and f"| lost | {LOST} |" in text


def test_summary_reads_the_host_tags_of_a_real_run(tracking):
    import mlflow

    from sparkml_template.observability.summary import read_summary

    with mlflow.start_run() as run:
        tags = {"spark.slow_hosts": SLOW, "spark.environment": ENV, "spark.lost_executors": LOST}
        mlflow.set_tags({**tags, "spark.environment.grade": "numeric"})
        mlflow.log_metrics({"spark/tasks": 9, "spark/hosts": 3, "spark/executors": 4})
    s = read_summary(run.info.run_id, "train")
    assert (s.slow_hosts, s.environment, s.environment_grade, s.lost_executors) == (
        SLOW, ENV, "numeric", LOST
    )  # fmt: skip
    assert s.environment_since is None and s.started_ms == run.info.start_time
    assert dict(summary_lines(s))["hosts"] == f"3 hosts, 4 executors; slow: {SLOW}"


# report.html reads like a page: relative times, seconds, short names, the columns a person reads.
START = 1_796_279_600_000


def test_values_are_formatted_for_a_person():
    from sparkml_template.observability.report import cell, human_bytes, short_stage_name

    assert short_stage_name("collect at /work/main/sparkml_template/yours/scoring.py:153") == (
        "collect at scoring.py:153"
    )
    assert short_stage_name("csv at NativeMethodAccessorImpl.java:0") == (
        "csv at NativeMethodAccessorImpl.java"
    )
    assert short_stage_name(r"count at C:\jobs\etl\step.py:7") == "count at step.py:7"
    assert short_stage_name("treeAggregate at RDDLossFunction.scala:61") == (
        "treeAggregate at RDDLossFunction.scala:61"
    )
    assert cell(str(START + 4430), "epoch", START) == ("4.43", "n")
    assert cell(str(START + 125_300), "epoch", START) == ("125.3", "n")
    assert cell("14.2", "epoch", START) == ("14.20", "n")  # already relative: left alone
    assert cell("9800", "ms", None) == ("9.80", "n")
    assert cell("4508114", "bytes", None) == ("4.3 MiB", "n")
    assert (human_bytes(0), human_bytes(160), human_bytes(3 * 1024**3)) == ("0", "160 B", "3.0 GiB")
    assert cell("569000", "int", None) == ("569,000", "n")
    assert cell("x" * 400, "text", None)[0] == "x" * 299 + "…"
    assert cell("inf", "bytes", None)[0] == "inf" and cell("nan", "ms", None)[0] == ""
    assert cell(str(START - 300), "epoch", START)[0] == "-0.30"  # registered before the run


def _csv(path, header: str, *rows: str):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_report_tables_show_seconds_short_names_and_chosen_columns(tmp_path):
    name = "treeAggregate at /home/someone/project/src/train/step.py:61"
    stages = _csv(
        tmp_path / "stages.csv",
        "stage_id,stage_attempt,job_id,name,tasks,failed_tasks,first_launch_time,"
        "last_finish_time,executor_run_time_ms_total,input_bytes_total,duration_p50_ms,"
        "shuffle_read_records_total,stage_duration_ms",
        f"7,1,3,{name},4,0,{START + 4430},{START + 6900},41230,402653184,387.5,12345,2467",
    )
    page = render(_summary(started_ms=START), {}, [], {"spark/stages.csv": stages})
    table = re.search(r"<h2>Stages</h2>.*?</table>", page, re.S).group(0)
    headers = re.findall(r"<th>([^<]*)</th>", table)
    assert headers[:5] == ["stage", "name", "tasks", "failed", "start (s)"]
    assert "job" not in headers and "shuffle_read_records_total" not in headers
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    assert cells[:5] == ["7.1", "treeAggregate at step.py:61", "4", "0", "4.43"]
    assert {"2.47", "41.2", "384.0 MiB", "0.39"} <= set(cells)  # took, run time, input, median
    assert f'title="{name}"' in table  # the full call site on hover
    assert not re.search(r"\b1\d{12}\b", re.sub(r'title="[^"]*"', "", page))  # no epoch ms
    assert "seconds since the run started (2026-12-03 06:33:20 UTC)" in page


ENV_HEAD = "role,executor_id,host,python,numpy,java,canary"


def test_environment_shows_what_differs_and_folds_what_is_the_same(tmp_path):
    env = _csv(
        tmp_path / "environment.csv", ENV_HEAD,
        "driver,driver,198.51.100.1,3.11.7,2.3.5,17.0.13,3f6a",
        "executor,1,198.51.100.12,3.11.7,1.26.4,17.0.13,9b27",
        "executor,0,198.51.100.11,3.11.7,,17.0.13,3f6a",
    )  # fmt: skip
    page = render(_cluster(environment_since=None), {}, [], {"spark/environment.csv": env})
    section = page.split("<h2>Executor environment</h2>")[1].split("<h2")[0]
    shown, folded = section.split("<details>")
    assert re.findall(r"<th>([^<]*)</th>", shown) == ["host", "executor", "numpy", "canary"]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", shown)
    assert cells[:4] == ["198.51.100.1", "driver", "2.3.5", "3f6a"]  # the driver first
    # Shaded: unlike the driver *and* named by the verdict (numpy, canary on .12); executor 0's
    # missing numpy differs too but the verdict does not name it.
    assert re.findall(r'<td class="t diff">([^<]*)</td>', shown) == ["1.26.4", "9b27"]
    assert '<td class="t">—</td>' in shown
    calm = render(_summary(environment="same on 2 executors, 2 hosts", environment_grade="same"),
                  {}, [], {"spark/environment.csv": env})  # fmt: skip
    assert "<th>numpy</th>" in calm and "diff" not in calm.split("</style>")[1]
    assert "2 fields the same on the driver and 2 executors" in folded
    assert "<td>java</td><td>17.0.13</td>" in folded and ENV in section
    # A field the verdict names by its column name (underscores) is shaded too.
    blas = _csv(
        tmp_path / "blas.csv", "role,executor_id,host,blas_threadpoolctl",
        "driver,driver,198.51.100.1,openblas 0.3.31", "executor,1,198.51.100.12,openblas 0.3.30",
    )  # fmt: skip
    said = _summary(environment="numeric: blas_threadpoolctl openblas 0.3.30 on 198.51.100.12")
    page = render(said, {}, [], {"spark/environment.csv": blas})
    assert '<td class="t diff">openblas 0.3.30</td>' in page
    # Local mode (the driver is the executor): nothing to compare, every field folded away.
    one = _csv(
        tmp_path / "one.csv", ENV_HEAD, "driver,driver,10.0.0.5,3.11.7,2.3.5,17.0.13,3f6a",
        "executor,driver,localhost,3.11.7,2.3.5,17.0.13,3f6a",
    )  # fmt: skip
    same = _summary(environment="same on 1 executor, 1 host", environment_grade="same")
    section = render(same, {}, [], {"spark/environment.csv": one}).split(
        "<h2>Executor environment</h2>"
    )[1]
    assert "<th>numpy</th>" not in section.split("<details>")[0]
    assert "4 fields the same on the driver and 1 executor</summary>" in section


def test_hosts_table_marks_the_slow_host_and_lost_executors_get_seconds(tmp_path):
    hosts = _csv(
        tmp_path / "hosts.csv", "host,executors,tasks,run_time_ms,input_bytes,slowness",
        "198.51.100.1,1,300,41230,1024,1.0", "198.51.100.12,1,240,96540,2048,2.31",
    )  # fmt: skip
    lost = _csv(
        tmp_path / "lost.csv",
        "executor_id,host,lost_at_s,reason,failed_tasks,rerun_tasks,failed_time_ms,"
        "rerun_time_ms,cost_ms",
        "2,198.51.100.12,14.2,Command exited with code 137,2,6,1500.0,8300.0,9800.0",
    )  # fmt: skip
    tables = {"spark/hosts.csv": hosts, "spark/lost_executors.csv": lost}
    page = render(_cluster(started_ms=START), {}, [], tables)
    rows = re.findall(
        r"<tr( class=\"flag\")?><td[^>]*>([^<]*)</td>", page.split("<h2>Hosts</h2>")[1]
    )
    assert ("", "198.51.100.1") in rows and (' class="flag"', "198.51.100.12") in rows
    assert f"slow: {SLOW}" in page
    section = page.split("<h2>Lost executors</h2>")[1].split("<h2")[0]
    assert re.findall(r"<th>([^<]*)</th>", section) == [
        "executor id", "host", "lost at (s)", "reason", "failed tasks", "rerun tasks",
        "failed time (s)", "rerun time (s)", "cost (s)",
    ]  # fmt: skip
    assert re.findall(r"<td[^>]*>([^<]*)</td>", section) == [
        "2", "198.51.100.12", "14.2", "Command exited with code 137", "2", "6", "1.50", "8.30",
        "9.80",
    ]  # fmt: skip


def test_timeline_lanes_are_grouped_and_named_by_host_on_a_cluster():
    import pandas as pd

    from sparkml_template.observability.timeline import _slots

    tasks = pd.DataFrame(
        {"executor_id": ["1", "0", "0", "2"], "launch_time": [0, 0, 5, 0],
         "finish_time": [9, 9, 9, 9], "host": ["h-b", "h-a", "h-a", "h-a"]}
    )  # fmt: skip
    y, labels = _slots(tasks)
    assert labels == ["h-a exec 0 #0", "h-a exec 0 #1", "h-a exec 2 #0", "h-b exec 1 #0"]
    assert y == [3, 0, 1, 2]  # executor 0's overlapping tasks take two slots
    _, local = _slots(tasks.assign(host="localhost"))
    assert local[0] == "executor 0 #0"  # one host: named as before
