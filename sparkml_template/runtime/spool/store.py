"""A run's spool on disk: what it logged (append-only JSON lines with idempotent keys), what the
server acknowledged, and how pending points are sent without logging one twice."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

SPOOL_DIR_ENV = "SPARKML_SPOOL_DIR"  # where run spools live (default ~/.cache/...)
POINTS = "points.jsonl"  # what the run logged, in order
SENT = "sent.jsonl"  # ids the server acknowledged (or refused: never sent again)
SIDE = "side.jsonl"  # artifacts and dataset inputs, each a file under files/
RUN = "run.json"  # tracking URI, and the status the run ended with


def spool_root() -> Path:
    """``$SPARKML_SPOOL_DIR``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``)/sparkml_template/spool:
    outside the run's temp dirs, so it survives the process. A home that cannot be written (a
    pod's read-only root filesystem) falls back to the system temp dir rather than failing the
    run."""
    if os.environ.get(SPOOL_DIR_ENV):
        return Path(os.environ[SPOOL_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    preferred = Path(cache) / "sparkml_template" / "spool"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "sparkml_template-spool"


def spooled_uri(uri: str) -> bool:
    """Only a tracking server over HTTP can go away while the run goes on."""
    return uri.startswith(("http://", "https://"))


def point_id(record: dict[str, Any]) -> str:
    """The idempotent key: a metric is (key, step, timestamp, value), a param its key, a tag
    its key, value and when it was set (re-sending a tag is harmless)."""
    kind, key = record["kind"], record["key"]
    if kind == "metric":
        value = record["value"]
        text = "nan" if isinstance(value, float) and math.isnan(value) else repr(float(value))
        parts = [kind, key, str(record["step"]), str(record["timestamp"]), text]
    elif kind == "param":
        parts = [kind, key]
    else:
        parts = [kind, key, str(record["value"]), str(record.get("timestamp"))]
    return hashlib.sha1("\x1f".join([record["run"], *parts]).encode()).hexdigest()[:20]


def _append(path: Path, rows: list[dict[str, Any]], sync: bool = True) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write("".join(json.dumps(row) + "\n" for row in rows))
        out.flush()
        if sync:
            os.fsync(out.fileno())


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by a crash mid-write
            rows.append(json.loads(line))
    return rows


class RunSpool:
    """One run's spool directory; its methods hold the lock, so threads may log at once."""

    def __init__(self, directory: Path, run_id: str, tracking_uri: str) -> None:
        self.dir = directory
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.lock = threading.RLock()
        # A send may have reached the server: look at what it has before sending again.
        self.uncertain = (directory / POINTS).exists()

    def ensure(self) -> None:
        """The directory exists (it is removed whenever nothing in it waits)."""
        (self.dir / "files").mkdir(parents=True, exist_ok=True)
        if not (self.dir / RUN).exists():
            meta = {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "status": None}
            self._write_run(meta)

    def drop_if_sent(self) -> bool:
        """Remove the directory when nothing in it waits; True if it is gone."""
        with self.lock:
            if self.dir.exists() and self.pending():
                return False
            shutil.rmtree(self.dir, ignore_errors=True)
            self.uncertain = False
            return True

    def _write_run(self, meta: dict[str, Any]) -> None:
        tmp = self.dir / (RUN + ".tmp")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        tmp.replace(self.dir / RUN)

    def meta(self) -> dict[str, Any]:
        return json.loads((self.dir / RUN).read_text(encoding="utf-8"))

    def set_status(self, status: str) -> None:
        with self.lock:
            self.ensure()
            self._write_run({**self.meta(), "status": status})

    def add(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            record["run"] = self.run_id
            record["id"] = point_id(record)
        with self.lock:
            self.ensure()
            _append(self.dir / POINTS, records)

    def add_file(self, kind: str, name: str, payload: bytes, **fields: Any) -> str:
        """An artifact (``kind="artifact"``, ``name`` = its path in the run) or a dataset
        input (``kind="input"``), kept as a file until sent; returns its id."""
        with self.lock:
            self.ensure()
            index = len(_read(self.dir / SIDE))
            local = f"files/{index:04d}_{kind}_{Path(name).name}"
            (self.dir / local).write_bytes(payload)
            _append(self.dir / SIDE, [{"id": f"side-{index}", "kind": kind, "name": name,
                                       "local": local, **fields}])  # fmt: skip
            return f"side-{index}"

    def pending(self) -> list[dict[str, Any]]:
        """Points and side files not yet acknowledged, in the order they were logged."""
        done = {row["id"] for row in _read(self.dir / SENT)}
        rows = _read(self.dir / POINTS) + _read(self.dir / SIDE)
        return [row for row in rows if row["id"] not in done]

    def mark(self, ids: list[str], outcome: str = "sent") -> None:
        if ids:
            # Not synced: a mark lost in a crash only costs a look-up before the point is resent.
            _append(self.dir / SENT, [{"id": i, "outcome": outcome} for i in ids], sync=False)

    def send(self, client: Any) -> int:
        """Send what is pending (looking first at what the server has, if a send may have
        reached it); raises what the client raises. Returns the points sent."""
        with self.lock:
            rows = self.pending()
            if not rows:
                return 0
            points = [row for row in rows if row["kind"] in ("metric", "param", "tag")]
            side = [row for row in rows if row["kind"] not in ("metric", "param", "tag")]
            look_first, self.uncertain = self.uncertain, True
            sent = send_records(client, self.run_id, points, look_first)
            self.mark([row["id"] for row in points])
            later = [row for row in side if row["kind"] == "later"]
            for row in side:
                if row["kind"] != "later":
                    send_side_file(client, self.run_id, self.dir, row)
                    self.mark([row["id"]])
            self.uncertain = False
            # Last, and marked before they run: what they log goes through this spool again
            # (and may empty and remove it), and a call is made at most once.
            for row in later:
                self.mark([row["id"]])
                send_side_file(client, self.run_id, self.dir, row)
            return sent


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def send_records(client: Any, run_id: str, rows: list[dict[str, Any]], look_first: bool) -> int:
    """One ``log_batch`` for the rows (the client splits it to the server's limits); with
    ``look_first``, the metrics and params the server already has are left out. A tag is sent
    with its last value, a param with its first."""
    from mlflow.entities import Metric, Param, RunTag

    metrics = {row["id"]: row for row in rows if row["kind"] == "metric"}
    params = {row["key"]: row for row in reversed(rows) if row["kind"] == "param"}
    tags = {row["key"]: row for row in rows if row["kind"] == "tag"}
    if look_first and metrics:
        for key in {row["key"] for row in metrics.values()}:
            have = client.get_metric_history(run_id, key)
            for rid, row in list(metrics.items()):
                if row["key"] == key and any(
                    m.step == row["step"]
                    and m.timestamp == row["timestamp"]
                    and _same(m.value, row["value"])
                    for m in have
                ):
                    del metrics[rid]
    if look_first and params:
        logged = client.get_run(run_id).data.params
        params = {k: row for k, row in params.items() if logged.get(k) != row["value"]}
    if metrics or params or tags:
        client.log_batch(
            run_id,
            metrics=[Metric(r["key"], r["value"], r["timestamp"], r["step"])
                     for r in metrics.values()],
            params=[Param(r["key"], r["value"]) for r in params.values()],
            tags=[RunTag(r["key"], r["value"]) for r in tags.values()],
        )  # fmt: skip
    return len(metrics) + len(params) + len(tags)


def send_side_file(client: Any, run_id: str, directory: Path, row: dict[str, Any]) -> None:
    """An artifact under its own name and place in the run (sent again, it replaces itself); a
    table as MLflow's ``log_table`` records one (the artifact, then the run's list of tables,
    merged: sent twice it is listed once); a dataset input as MLflow's entity (the store finds
    one it already has by name and digest); a ``later`` call, once all before it is sent.
    """
    import tempfile

    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    payload = (directory / row["local"]).read_bytes()
    if row["kind"] == "input":
        entity = Dataset(**json.loads(payload))
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, row["context"])]
        client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
        return
    if row["kind"] == "later":
        call_later(json.loads(payload))
        return
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / Path(row["name"]).name
        target.write_bytes(payload)
        folder = str(Path(row["name"]).parent)
        client.log_artifact(run_id, str(target), None if folder == "." else folder)
    if row["kind"] == "table":
        list_table(client, run_id, row["name"])


def list_table(client: Any, run_id: str, artifact_file: str) -> None:
    """Add ``artifact_file`` to the run's ``mlflow.loggedArtifacts`` (what the UI shows as a
    table), as ``MlflowClient.log_table`` does after its upload."""
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    tags = client.get_run(run_id).data.tags
    listed = json.loads(tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in listed:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*listed, entry]))


def call_later(spec: dict[str, Any]) -> None:
    """Run ``spec["call"]`` (``package.module:function``) with ``spec["kwargs"]``: work that
    reads back what the run logged (its summary and report), deferred while the server was away.
    Named by string so that this layer imports nothing above it."""
    import importlib

    module, _, name = spec["call"].partition(":")
    getattr(importlib.import_module(module), name)(**spec.get("kwargs", {}))
