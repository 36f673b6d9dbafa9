"""A tracking server that goes away mid-run: a real `mlflow server` (SQLite under tmp_path, a
fixed port so it comes back on the same address) paused and stopped by PID while a real
`python train.py` runs against it.

MLflow's retry budget is made small (one retry, no backoff) so an outage "longer than the
budget" takes seconds: a paused server (SIGSTOP) hangs requests within the budget and comes
back; a stopped one (SIGTERM) refuses them at once and is back only after the run has ended,
for the documented replay command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, VENV_BIN, artifact_paths, subprocess_env
from servers import free_port, mlflow_server, stop_group

SMALL_BUDGET = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # a paused server: 2 attempts of 30 s, > the pause
}
PAUSE_S = 8
REPLAY = re.compile(r"with: (python -m sparkml_template\.runtime\.spool replay) (\S+)")


class Server:
    """`mlflow server` on one port and one SQLite file, stopped and started again by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stack = contextlib.ExitStack()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
               "--serve-artifacts",
               "--artifacts-destination", str(self.root / "artifacts")]  # fmt: skip
        env = subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.proc = self.stack.enter_context(mlflow_server(cmd, self.url, self.root, env))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        assert self.proc is not None
        stop_group(self.proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("outage-server"))
    srv.start()
    with srv.stack:
        yield srv


def test_the_server_keeps_one_copy_of_a_resent_point(server):
    """What the spool relies on with a SQLite store: an identical metric sent twice (a retried
    POST whose response was lost) is stored once; a param sent again with its value is fine."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("resend")).info.run_id
    batch = {"metrics": [Metric("m", 0.5, 1000, 0)], "params": [Param("p", "1")]}
    client.log_batch(run_id, **batch)
    client.log_batch(run_id, **batch)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "m")] == [(0, 0.5)]
    assert client.get_run(run_id).data.params == {"p": "1"}


def test_a_refused_point_raises_as_before_and_the_spool_is_left_clean(server, tmp_path):
    """A server that answers and says no (a param changed) is an error, not an outage: the
    helper raises MLflow's error, and the points sent with and after it leave no spool."""
    import mlflow
    from mlflow.exceptions import RestException
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime import spool, tracking

    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("refused")).info.run_id
    os.environ[spool.SPOOL_DIR_ENV] = str(tmp_path / "spool")
    mlflow.set_tracking_uri(server.url)
    try:
        tracking.log_batch(run_id, params={"p": "1"}, metrics={"m": 1.0})
        with pytest.raises(RestException, match="Changing param values"):
            tracking.log_batch(run_id, params={"p": "2"})
        tracking.log_series(run_id, {"loss": [0.5, 0.25]})
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop(spool.SPOOL_DIR_ENV)
        spool.watch_for(server.url).stop()
    run = client.get_run(run_id)
    assert run.data.params == {"p": "1"}
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1]
    assert not (tmp_path / "spool" / run_id).exists()


def test_points_logged_while_the_server_is_paused_are_sent_when_it_answers(server, tmp_path, capfd):
    """Once the run knows the server is away, a helper returns at once with its points in the
    spool; when the server answers again they are sent, once, and the spool is removed."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime import spool, tracking

    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("paused")).info.run_id
    os.environ[spool.SPOOL_DIR_ENV] = str(tmp_path / "spool")
    mlflow.set_tracking_uri(server.url)
    watch = spool.watch_for(server.url)
    safety = threading.Timer(120, server.signal, (signal.SIGCONT,))  # never left paused
    try:
        tracking.log_batch(run_id, params={"p": "1"})  # opens the spool and its watch
        server.signal(signal.SIGSTOP)
        safety.start()
        while watch.away_since is None:
            time.sleep(0.2)
        tracking.log_series(run_id, {"loss": [0.5, 0.25]})
        tracking.log_batch(run_id, metrics={"acc": 0.9}, tags={"t": "x"})
        waiting = (tmp_path / "spool" / run_id / "points.jsonl").read_text().splitlines()
        assert len(waiting) == 4  # returned with the points kept, not sent
        server.signal(signal.SIGCONT)
        while (tmp_path / "spool" / run_id).exists():
            time.sleep(0.2)
    finally:
        safety.cancel()
        server.signal(signal.SIGCONT)
        mlflow.set_tracking_uri(None)
        os.environ.pop(spool.SPOOL_DIR_ENV)
        watch.stop()
    err = capfd.readouterr().err
    assert re.search(r"answers again after \d+ s; 4 points sent from the spool", err), err
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [
        (0, 0.5),
        (1, 0.25),
    ]
    run = client.get_run(run_id)
    assert run.data.metrics["acc"] == 0.9
    assert run.data.tags["t"] == "x"


def _train_through_two_outages(server: Server, env: dict[str, str], log: Path) -> tuple[int, str]:
    """`python train.py`: the server paused PAUSE_S seconds when the run starts logging what
    the model learned (its requests wait within the budget), then stopped for good when it
    reads its task metrics."""
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--master", "local[1]"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    resume: threading.Timer | None = None
    stopped = False
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if resume is None and "[train] what the model learned:" in line and "…" in line:
            server.signal(signal.SIGSTOP)
            resume = threading.Timer(PAUSE_S, server.signal, (signal.SIGCONT,))
            resume.start()
        if not stopped and "[train] task metrics:" in line and "…" in line:
            assert resume is not None
            resume.join()
            server.stop()
            stopped = True
    code = proc.wait(timeout=60)
    assert stopped, "".join(lines)[-4000:]
    return code, "".join(lines)


@pytest.mark.timeout(900)
def test_outages_mid_run_lose_nothing_and_log_nothing_twice(server, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    experiment = client.create_experiment("outage")
    env = subprocess_env(
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_EXPERIMENT_ID=experiment,
        SPARKML_SPOOL_DIR=str(tmp_path / "spool"),
        SPARKML_SYSTEM_METRICS="off",  # MLflow's own sampler does not go through the spool
        **SMALL_BUDGET,
    )
    code, err = _train_through_two_outages(server, env, tmp_path / "train.out")
    (tmp_path / "train.err").write_text(err)
    assert code == 0, err[-4000:]

    # Each outage said so once, with what waits and for how long; the first said it was over.
    assert err.count(f"tracking server {server.url} is not answering") == 2, err
    assert re.search(r"answers again after \d+ s; \d+ points sent from the spool", err), err
    assert "MLflow's own calls (artifacts, the model) wait 0 s (60 s if" in err, err
    replay = REPLAY.search(err)
    assert replay, err
    spool_dir = Path(replay.group(2))
    assert "end the run FINISHED" in err
    assert "summary, report.html: written when the tracking server answers again" in err, err
    kept = tmp_path / "kept"
    shutil.copytree(spool_dir, kept)
    points = [json.loads(line) for line in (kept / "points.jsonl").read_text().splitlines()]
    run_id = json.loads((kept / "run.json").read_text())["run_id"]
    assert any(p["kind"] == "metric" and p["key"].startswith("spark/") for p in points)

    server.stack.close()  # the stopped server's bookkeeping
    server.start()  # back on the same address and store
    replayed = subprocess.run(
        [sys.executable, "-m", "sparkml_template.runtime.spool", "replay", str(spool_dir)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "run ended FINISHED" in replayed.stdout
    assert not spool_dir.exists()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for point in points:  # every spooled point is on the server, once
        if point["kind"] == "metric":
            history = client.get_metric_history(run_id, point["key"])
            same = [m for m in history if (m.step, m.timestamp, m.value)
                    == (point["step"], point["timestamp"], point["value"])]  # fmt: skip
            assert len(same) == 1, (point, history)
        else:
            logged = run.data.params if point["kind"] == "param" else run.data.tags
            assert point["key"] in logged, point
    for key in run.data.metrics:  # nothing logged twice at one step, spooled or not
        steps = Counter(m.step for m in client.get_metric_history(run_id, key))
        assert max(steps.values()) == 1, (key, steps)
    learned = re.search(r"(\d+) training_loss steps", err)
    assert learned, err
    losses = client.get_metric_history(run_id, "training_loss")
    assert sorted(m.step for m in losses) == list(range(int(learned.group(1))))

    import mlflow

    mlflow.set_tracking_uri(server.url)
    try:
        models = mlflow.search_logged_models(
            experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}'"
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert len(models) == 1
    assert run.inputs.dataset_inputs
    assert "spark_conf.json" in [a.path for a in client.list_artifacts(run_id)]
    # What the run logged as files while the server was gone came with the replay: the task
    # tables (and their UI tables), then the summary and report.html, which read them back.
    assert {"spark/tasks.csv", "spark/stages.csv"} <= artifact_paths(client, run_id)
    tables = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "spark/tasks_table.json", "type": "table"} in tables
    assert "report.html" in [a.path for a in client.list_artifacts(run_id)]
    assert "mlflow.note.content" in client.get_run(run_id).data.tags
