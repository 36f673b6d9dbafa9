"""The tracking server as this process sees it: probed every few seconds while a spool is open,
one line on stderr when it stops answering and one when it is back (then the spools are sent)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import urllib.request
from typing import Any

from sparkml_template.runtime.spool.store import RunSpool, spool_root

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 2.0


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def retry_budget() -> str:
    """How long MLflow's HTTP client retries one call, from its settings: urllib3 sleeps
    ``factor * 2**(n-1)`` (at most 120 s) before the n-th retry from the second on; a server
    that hangs rather than refuses also costs the timeout on each attempt."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    factor = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    jitter = MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()
    sleeps = sum(min(120.0, factor * 2 ** (n - 1) + jitter) for n in range(2, retries + 1))
    hung = sleeps + (retries + 1) * MLFLOW_HTTP_REQUEST_TIMEOUT.get()
    return f"{_duration(sleeps)} ({_duration(hung)} if the server hangs rather than refuses)"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


class Watch:
    """The tracking server's state as this process sees it, probed every few seconds while a
    spool is open: one line when it stops answering, one when it is back (then replayed)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.away_since: float | None = None
        self.spools: dict[str, RunSpool] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def client(self) -> Any:
        """One ``MlflowClient`` for the server (each construction asks Spark for the registry)."""
        if self._client is None:
            self._client = client_for(self.uri)
        return self._client

    def answers(self) -> str | None:
        """None if ``/health`` answers now, else why not (one short attempt, no retries)."""
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=PROBE_TIMEOUT_S):
                return None
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            return str(reason).strip() or type(exc).__name__

    def start(self) -> None:
        self._stop.clear()  # a loop told to stop, not yet gone, goes on
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="spool-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL_S):
            with contextlib.suppress(Exception):  # never the run's end
                reason = self.answers()
                if reason is not None:
                    self.went_away(reason)
                elif self.away_since is not None:
                    self.came_back()

    def went_away(self, reason: str) -> None:
        with self.lock:
            if self.away_since is not None:
                return
            self.away_since = time.monotonic()
            spools = list(self.spools.values())
            where = str(spools[0].dir) if len(spools) == 1 else f"{spool_root()}/<run id>"
        print(
            f"mlflow: tracking server {self.uri} is not answering ({reason}) at "
            f"{time.strftime('%H:%M:%S')}; the run goes on. Its metrics, params and tags wait "
            f"in {where}; MLflow's own calls (artifacts, the model) wait {retry_budget()} "
            "at most, then fail",
            file=sys.stderr,
            flush=True,
        )

    def came_back(self) -> int:
        """Replay every open spool; the back line says how many points went."""
        with self.lock:
            since, self.away_since = self.away_since, None
            spools = list(self.spools.values())
        sent, failed = 0, None
        for spool in spools:
            try:
                sent += spool.send(self.client())
                spool.drop_if_sent()
            except Exception as exc:  # away again, or refused: the spool keeps it
                failed = exc
        if since is not None:
            gone = time.monotonic() - since
            tail = "" if failed is None else f"; {one_line(failed)} (the spool keeps the rest)"
            print(
                f"mlflow: tracking server {self.uri} answers again after {gone:.0f} s; "
                f"{sent} points sent from the spool{tail}",
                file=sys.stderr,
                flush=True,
            )
        return sent
