"""A local spool for what a run logs through ``runtime.tracking``, so a tracking server that
goes away loses nothing.

Every metric, param, tag, small artifact and dataset input is first appended to a directory per
run (JSON lines, append-only) and sent from there. Each point carries an idempotent key (run,
kind, key, step, timestamp, value): a point the server may or may not have received is looked
up on the server before it is sent again, so a replay never logs it twice. While the server is
away the run goes on; one line on stderr says so and one when it is back, and the spool is
replayed then. If the run ends first, the spool stays on disk and

    python -m sparkml_template.runtime.spool replay <dir>

sends what is missing and ends the run with the status it ended with. Only HTTP tracking
servers are spooled: a local store has no outage to survive.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.runtime.spool.store import (
    RUN,
    SPOOL_DIR_ENV,
    RunSpool,
    spool_root,
    spooled_uri,
)
from sparkml_template.runtime.spool.watch import Watch, client_for, one_line

if TYPE_CHECKING:
    from mlflow import ActiveRun

REPLAY_COMMAND = "python -m sparkml_template.runtime.spool replay"
__all__ = ["REPLAY_COMMAND", "SPOOL_DIR_ENV", "end_run", "ending_through_spool", "spool_root"]

_watches: dict[str, Watch] = {}
_watches_lock = threading.Lock()
_announced: set[str] = set()  # runs whose spool line was printed


def watch_for(uri: str) -> Watch:
    with _watches_lock:
        if uri not in _watches:
            _watches[uri] = Watch(uri)
        return _watches[uri]


def open_spool(run_id: str, uri: str) -> RunSpool:
    """The run's spool under the watch of its tracking server (its directory is made on the
    first write and removed whenever nothing in it waits)."""
    watch = watch_for(uri)
    with watch.lock:
        spool = watch.spools.get(run_id)
        if spool is None:
            spool = watch.spools[run_id] = RunSpool(spool_root() / run_id, run_id, uri)
    watch.start()
    return spool


def log_records(run_id: str, records: list[dict[str, Any]], uri: str) -> None:
    """Spool ``records`` and send what is pending unless the server is away. A server that
    refuses them (it answers ``/health``) raises as MLflow would; one that is away does not."""
    spool = open_spool(run_id, uri)
    spool.add(records)
    flush(spool, [record["id"] for record in records])


def log_file(run_id: str, uri: str, kind: str, name: str, payload: bytes, **fields: Any) -> None:
    """An artifact or dataset input, spooled like a point (see ``RunSpool.add_file``)."""
    spool = open_spool(run_id, uri)
    flush(spool, [spool.add_file(kind, name, payload, **fields)])


def call_when_back(run_id: str, uri: str, call: str, kwargs: dict[str, Any]) -> None:
    """Run ``call`` (``package.module:function``) with ``kwargs`` (JSON) once everything the
    run spooled before it has reached the server: now if it answers, else when it is back or
    at the replay (work that reads the run back, such as its summary and report)."""
    payload = json.dumps({"call": call, "kwargs": kwargs}).encode()
    log_file(run_id, uri, "later", call, payload)


def server_away(uri: str) -> bool:
    """True while this process knows the server at ``uri`` is not answering."""
    watch = _watches.get(uri)
    return watch is not None and watch.away_since is not None


def refused(exc: BaseException) -> bool:
    """The server answered and said no (a 4xx MLflow error: a changed param, a bad key): an
    error to raise, not an outage to wait out."""
    from mlflow.exceptions import RestException

    return isinstance(exc, RestException) and exc.get_http_status_code() < 500


def flush(spool: RunSpool, new: list[str] | None = None) -> None:
    """Send the spool unless the server is known to be away; a send that fails for want of an
    answer keeps everything (and marks the server away). A refusal raises, as MLflow's own
    call would, and only the ``new`` records it came with are given up."""
    watch = watch_for(spool.tracking_uri)
    if watch.away_since is not None:
        return
    try:
        spool.send(watch.client())
    except Exception as exc:
        if refused(exc):
            with spool.lock:
                spool.mark(new or [row["id"] for row in spool.pending()], "refused")
                with contextlib.suppress(Exception):
                    spool.send(watch.client())  # what waited before them
                spool.drop_if_sent()
            raise
        reason = watch.answers()
        if reason is not None:
            watch.went_away(reason)
        return  # kept: sent with the next point, when the server is back, or at the end
    spool.drop_if_sent()


def finish(run_id: str, status: str) -> bool:
    """At the run's end: send what waits; True when nothing does (end the run on the server as
    usual), else the status is kept in the spool for the replay and the spool line printed."""
    uri = _tracking_uri()
    watch = _watches.get(uri)
    spool = watch.spools.get(run_id) if watch else None
    if watch is None or spool is None:
        return True
    with contextlib.suppress(Exception):
        if watch.away_since is not None and watch.answers() is None:
            watch.came_back()
        else:
            flush(spool)
    if spool.drop_if_sent():
        with watch.lock:
            watch.spools.pop(run_id, None)
            if not watch.spools:
                watch.stop()  # no run of this process is logging there any more
        return True
    spool.set_status(status)
    announce(spool, status)
    return False


def announce(spool: RunSpool, status: str) -> None:
    """The one line that says where the spool is and which command sends it."""
    if spool.run_id in _announced:
        return
    _announced.add(spool.run_id)
    others = [d for d in spool_root().glob("*/run.json") if d.parent != spool.dir]
    more = (
        f" ({len(others)} more runs' spools wait in {spool_root()}: `{REPLAY_COMMAND} "
        f"{spool_root()}` sends them all)"
        if others
        else ""
    )
    print(
        f"mlflow: tracking server {spool.tracking_uri} is away: {len(spool.pending())} points "
        f"of run {spool.run_id} wait in {spool.dir}; once it is back, send them and end the run "
        f"{status} with: {REPLAY_COMMAND} {spool.dir}{more}",
        file=sys.stderr,
        flush=True,
    )


def _tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def end_run(run_id: str, status: str) -> None:
    """``set_terminated`` once nothing of the run waits; else the status waits in its spool."""
    uri = _tracking_uri()
    if not spooled_uri(uri):
        client_for(uri).set_terminated(run_id, status)
        return
    if finish(run_id, status):
        try:
            watch_for(uri).client().set_terminated(run_id, status)
        except Exception as exc:
            if refused(exc):
                raise
            keep_status(run_id, status)


def keep_status(run_id: str, status: str) -> None:
    """The status the run ended with, for the replay to set (the server did not take it)."""
    spool = open_spool(run_id, _tracking_uri())
    spool.set_status(status)
    announce(spool, status)


@contextlib.contextmanager
def ending_through_spool(active: ActiveRun) -> Iterator[ActiveRun]:
    """``with mlflow.start_run()`` whose end sends the spool first; a run whose points still
    wait is left RUNNING on the server (the replay ends it) instead of failing the process."""
    import mlflow

    status = "FINISHED"
    try:
        yield active
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        run_id = active.info.run_id
        current = mlflow.active_run()
        if current is not None and current.info.run_id == run_id:
            if not spooled_uri(_tracking_uri()) or finish(run_id, status):
                try:
                    mlflow.end_run(status)
                except Exception as exc:  # gone at the last moment: the status waits
                    if not spooled_uri(_tracking_uri()) or refused(exc):
                        raise
                    keep_status(run_id, status)
            else:
                leave_run(status)


def leave_run(status: str) -> None:
    """Leave the active run in this process without waiting for the server (one attempt of a
    couple of seconds): its spool ends it on the server."""
    import mlflow

    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict(zip(names, ("0", "2"), strict=True)))
    try:
        with contextlib.suppress(Exception):
            mlflow.end_run(status)  # pops the run, then its set_terminated fails fast
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def replay(directory: Path) -> list[str]:
    """Send what a spool (or every spool under a root) holds that the server lacks, end the
    run with its status, remove the spool. One line per run saying what was done."""
    if not (directory / RUN).exists():
        runs = sorted(d.parent for d in directory.glob(f"*/{RUN}"))
        if not runs:
            raise FileNotFoundError(f"no spool in {directory}")
        return [line for run in runs for line in replay(run)]
    meta = json.loads((directory / RUN).read_text(encoding="utf-8"))
    spool = RunSpool(directory, meta["run_id"], meta["tracking_uri"])
    spool.uncertain = True  # whatever was sent before may be there already
    client = client_for(spool.tracking_uri)
    waiting = len(spool.pending())
    sent = spool.send(client)
    if meta.get("status"):
        client.set_terminated(spool.run_id, meta["status"])
    spool.drop_if_sent()
    ended = f"run ended {meta['status']}" if meta.get("status") else "the run had not ended"
    return [
        f"run {spool.run_id}: {waiting} waiting, {sent} sent, {waiting - sent} already on "
        f"the server or files; {ended}"
    ]


def main(argv: list[str] | None = None) -> int:
    """``replay <dir>...``: exit 0 when every spool was sent, 1 otherwise (kept as it was)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "replay":
        print(f"usage: {REPLAY_COMMAND} <spool dir or root> ...", file=sys.stderr)
        return 2
    code = 0
    for arg in args[1:]:
        try:
            print("\n".join(replay(Path(arg))))
        except Exception as exc:
            print(f"spool replay: {arg}: {one_line(exc)} (the spool is kept)", file=sys.stderr)
            code = 1
    return code
