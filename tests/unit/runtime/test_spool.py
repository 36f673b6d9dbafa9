"""The run spool: idempotent keys, sending without logging a point twice, the replay command.

A local store (SQLite, and a file store, which keeps a re-sent metric twice) stands in for the
server here; tests/e2e/test_tracking_outage.py stops and restarts a real one mid-run.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from sparkml_template.runtime import spool
from sparkml_template.runtime.spool.store import POINTS, RUN, RunSpool, point_id
from sparkml_template.runtime.spool.watch import Watch, retry_budget


@pytest.fixture(autouse=True)
def _file_store_allowed(monkeypatch):
    """MLflow 3 refuses the file store unless asked: it stands for a store without uniqueness."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _metric(key: str, value: float, step: int = 0, timestamp: int = 1000) -> dict:
    return {"kind": "metric", "key": key, "value": value, "step": step, "timestamp": timestamp}


def _store(tmp_path, kind: str):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db" if kind == "sqlite" else f"file://{tmp_path}/mlruns"
    client = MlflowClient(uri)
    experiment = client.create_experiment("spool", artifact_location=str(tmp_path / "art"))
    return uri, client, client.create_run(experiment).info.run_id


def _history(client, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def test_a_point_is_known_by_run_key_step_timestamp_and_value():
    base = {**_metric("loss", 0.5), "run": "r1"}
    assert point_id(base) == point_id(dict(base))
    others = [{**base, "step": 1}, {**base, "timestamp": 1001}, {**base, "value": 0.25},
              {**base, "run": "r2"}, {**base, "key": "acc"}]  # fmt: skip
    assert len({point_id(o) for o in others} | {point_id(base)}) == 6
    nan = {**base, "value": float("nan")}
    assert point_id(nan) == point_id(dict(nan))  # NaN is one value here, as in the store


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_send_that_may_have_arrived_is_looked_up_first(tmp_path, kind):
    """A response lost after the server stored the batch: the resend sends only what is
    missing (the file store would otherwise keep the metric twice)."""
    uri, client, run_id = _store(tmp_path, kind)
    store = RunSpool(tmp_path / "spool" / run_id, run_id, uri)
    store.add([_metric("loss", 0.5, 0), _metric("loss", 0.25, 1),
               {"kind": "param", "key": "p", "value": "1"},
               {"kind": "tag", "key": "t", "value": "x", "timestamp": 1}])  # fmt: skip
    assert store.send(client) == 4
    (store.dir / "sent.jsonl").unlink()  # as if the acknowledgement never came back
    store.add([_metric("loss", 0.125, 2)])
    store.uncertain = True
    assert store.send(client) == 2  # the new point and the tag; the rest were there
    assert _history(client, run_id, "loss") == [(0, 1000, 0.5), (1, 1000, 0.25), (2, 1000, 0.125)]
    assert client.get_run(run_id).data.params == {"p": "1"}
    assert store.pending() == []
    assert store.drop_if_sent()
    assert not store.dir.exists()


def test_without_looking_first_the_file_store_keeps_a_resent_point_twice(tmp_path):
    """Why the look-up exists (and that the previous test can fail)."""
    uri, client, run_id = _store(tmp_path, "file")
    store = RunSpool(tmp_path / "spool" / run_id, run_id, uri)
    store.add([_metric("loss", 0.5)])
    store.send(client)
    (store.dir / "sent.jsonl").unlink()
    store.uncertain = False
    store.send(client)
    assert _history(client, run_id, "loss") == [(0, 1000, 0.5), (0, 1000, 0.5)]


def test_replay_sends_what_is_missing_and_ends_the_run_with_its_status(tmp_path, capsys):
    uri, client, run_id = _store(tmp_path, "sqlite")
    client.log_batch(run_id, metrics=[])  # the run exists and is RUNNING
    directory = tmp_path / "spool" / run_id
    store = RunSpool(directory, run_id, uri)
    store.add([_metric("acc", 0.9), {"kind": "tag", "key": "why", "value": "gone",
                                     "timestamp": 5}])  # fmt: skip
    store.add_file("artifact", "spark/tasks.csv", b"a,b\n1,2\n")
    store.set_status("FAILED")
    with open(directory / POINTS, "a") as out:
        out.write('{"kind": "metric", "key": "cut sho')  # a crash mid-write: ignored
    assert spool.main(["replay", str(tmp_path / "spool")]) == 0  # the root: every run in it
    assert "run ended FAILED" in capsys.readouterr().out
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"acc": 0.9}
    assert run.data.tags["why"] == "gone"
    assert [a.path for a in client.list_artifacts(run_id, "spark")] == ["spark/tasks.csv"]
    assert not directory.exists()


calls: list[dict] = []


def record_call(**kwargs) -> None:
    """Called by name from a spool's ``later`` row (this module's name is in the row)."""
    calls.append(kwargs)


def test_tables_and_deferred_calls_are_replayed_in_order_once(tmp_path):
    """A table spooled twice is one file and listed once in the run's tables, as MLflow's
    log_table lists it; a deferred call runs after everything spooled before it, once."""
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    uri, client, run_id = _store(tmp_path, "sqlite")
    client.log_batch(run_id, metrics=[])
    directory = tmp_path / "spool" / run_id
    store = RunSpool(directory, run_id, uri)
    table = b'{"columns":["host","tasks"],"data":[["w1",3],["w2",4]]}'
    store.add_file("table", "spark/hosts_table.json", table)
    store.add_file("table", "spark/hosts_table.json", table)
    store.add([_metric("acc", 0.9)])
    call = {"call": f"{__name__}:record_call", "kwargs": {"run_id": run_id}}
    store.add_file("later", "call", json.dumps(call).encode())
    calls.clear()
    assert spool.main(["replay", str(directory)]) == 0
    assert calls == [{"run_id": run_id}]
    run = client.get_run(run_id)
    assert json.loads(run.data.tags[MLFLOW_LOGGED_ARTIFACTS]) == [
        {"path": "spark/hosts_table.json", "type": "table"}
    ]
    local = client.download_artifacts(run_id, "spark/hosts_table.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text())["data"] == [["w1", 3], ["w2", 4]]
    assert run.data.metrics == {"acc": 0.9}
    assert not directory.exists()


def test_replay_of_a_spool_whose_server_is_away_keeps_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    directory = tmp_path / "spool" / "r1"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    store = RunSpool(directory, "r1", f"http://127.0.0.1:{port}")
    store.add([_metric("acc", 0.9)])
    saved = (directory / POINTS).read_text()
    assert spool.main(["replay", str(directory)]) == 1
    assert "the spool is kept" in capsys.readouterr().err
    assert (directory / POINTS).read_text() == saved
    assert json.loads((directory / RUN).read_text())["run_id"] == "r1"


def test_usage_is_exit_2(capsys):
    assert spool.main([]) == 2
    assert spool.REPLAY_COMMAND in capsys.readouterr().err


def test_the_away_line_says_what_waits_and_for_how_long(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(spool.SPOOL_DIR_ENV, str(tmp_path))
    watch = Watch("http://127.0.0.1:9")
    assert watch.answers() is not None  # nothing answers on the discard port
    watch.went_away("connection refused")
    watch.went_away("connection refused")  # once per outage
    err = capsys.readouterr().err
    assert err.count("is not answering (connection refused)") == 1
    assert retry_budget() in err


def test_retry_budget_follows_mlflow_settings(monkeypatch):
    for name in ("MAX_RETRIES", "BACKOFF_FACTOR", "BACKOFF_JITTER", "TIMEOUT"):
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{name}", raising=False)
    # urllib3 sleeps 2*2**(n-1) + jitter before retries 2..7, capped at 120 s: 249 s
    assert retry_budget().startswith("4 min 9 s (20 min 9 s if")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    assert retry_budget().startswith("0 s (10 s if")


def test_spools_live_outside_the_run(monkeypatch, tmp_path):
    monkeypatch.delenv(spool.SPOOL_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert spool.spool_root() == tmp_path / "sparkml_template" / "spool"
    assert spool.spooled_uri("http://h:5000") and not spool.spooled_uri("sqlite:///x.db")
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_home_that_cannot_be_written_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    """A pod's read-only root filesystem: the spool goes to the temp dir, the run goes on."""
    from sparkml_template.runtime.spool import store

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory would be")
    monkeypatch.delenv(store.SPOOL_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(store.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert store.spool_root() == tmp_path / "tmp" / "sparkml_template-spool"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert store.spool_root() == tmp_path / "cache" / "sparkml_template" / "spool"
