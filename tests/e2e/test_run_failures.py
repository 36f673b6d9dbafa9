"""Runs that end badly, as real processes: SIGTERM mid-run ends the run KILLED after the task
capture; a driver JVM that is killed, or runs out of memory, is one line and exit 4, with the
tasks up to the failure read from the event log on disk."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_ROOT, SHIPPED_DATA, VENV_BIN, only_run, subprocess_env

from sparkml_template.observability.capture import SOURCE_TAG
from sparkml_template.runtime.tracking import ERROR_TAG

pytestmark = pytest.mark.cli

# An entry point whose body kills or starves its own driver JVM (written to a file: pyspark's
# import guards misbehave for `python -c`).
BODY = """
import os, signal, sys
from sparkml_template.workflows.runner import exit_process, run_entry_point
from sparkml_template.workflows.train import prepare_training

def body(ctx):
    ctx.spark.range(1000).selectExpr("sum(id)").collect()  # a job the capture must keep
    if sys.argv[1] == "kill":
        from pyspark import SparkContext
        os.kill(SparkContext._gateway.proc.pid, signal.SIGKILL)
        ctx.spark.range(10).count()
    else:  # ~3 GB of rows collected to a 512 MB driver
        ctx.spark.range(0, 40_000_000).selectExpr("id", "repeat('x', 64) AS s").collect()

exit_process(run_entry_point("train", sys.argv[2:], prepare_training, body))
"""


def _env(tracking, **extra):
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking.uri, **extra)
    env["MLFLOW_EXPERIMENT_ID"] = tracking.experiment_id
    return env


@pytest.mark.parametrize(
    ("how", "submit_args", "expected"),
    [
        ("kill", "pyspark-shell", "the Spark driver JVM was killed (SIGKILL)"),
        ("oom", "--driver-memory 512m pyspark-shell", "the Spark driver ran out of memory"),
    ],
)
def test_a_dead_driver_is_one_line_exit_4_and_a_failed_run_with_its_tasks(
    tracking, tmp_path, how, submit_args, expected
):
    script = tmp_path / "dies.py"
    script.write_text(BODY)
    proc = subprocess.run(
        [sys.executable, str(script), how, "--master", "local[2]", "--data", str(SHIPPED_DATA)],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
        env=_env(tracking, PYSPARK_SUBMIT_ARGS=submit_args, PYTHONPATH=str(PROJECT_ROOT)),
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("train: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert expected in run.data.tags[ERROR_TAG]
    assert run.data.tags[SOURCE_TAG] == "event_log"  # read from disk, the JVM being gone
    assert run.data.metrics["spark/tasks"] >= 1


def test_sigterm_mid_run_ends_it_killed_after_the_capture(tracking):
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--master", "local[2]"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
        env=_env(tracking),
    )  # fmt: skip
    lines = []
    deadline = time.monotonic() + 240
    for line in proc.stderr:  # wait until Spark is working on the data
        lines.append(line)
        if line.startswith("[train] fit") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    err = "".join(lines) + err
    assert proc.returncode == 143, err[-3000:]
    assert "train: terminated (SIGTERM): the run ends KILLED" in err
    assert "Traceback" not in err
    run = only_run(tracking)
    assert run.info.status == "KILLED"
    assert run.data.tags[ERROR_TAG] == "terminated (SIGTERM)"
    assert run.data.tags.get(SOURCE_TAG) == "event_log", err[-3000:]
    assert run.data.metrics["spark/tasks"] >= 1


def test_sigterm_to_the_mlflow_run_cli_ends_the_run_killed(tracking):
    cmd = [
        str(VENV_BIN / "mlflow"), "run", str(PROJECT_ROOT), "--env-manager", "local",
        "--experiment-id", tracking.experiment_id, "-e", "train", "-P", "master=local[2]",
    ]  # fmt: skip
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking.uri)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    cli = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=PROJECT_ROOT,
        env=env,
    )  # fmt: skip
    lines = []
    for line in cli.stderr:  # the entry point shares the CLI's stderr
        lines.append(line)
        if line.startswith("[train] fit"):
            break
    cli.send_signal(signal.SIGTERM)  # the CLI alone: MLflow does not pass it on
    rest = cli.stderr.read()  # EOF once the entry point, which holds the pipe too, has ended
    cli.wait(timeout=60)
    err = "".join(lines) + rest
    assert "train: terminated (SIGTERM): the run ends KILLED" in err, err[-3000:]
    run = only_run(tracking)
    assert run.info.status == "KILLED"
    assert run.data.tags.get(SOURCE_TAG) == "event_log", err[-3000:]
