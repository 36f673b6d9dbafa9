"""Servers the end-to-end tests start on 127.0.0.1 (tracking, basic-auth, Spark Connect, model
serving, standalone Spark): a free port to bind, a health probe, a stop by process group, and
`mlflow models serve` with the request the tests send it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VENV_BIN, subprocess_env

SERVE_STARTUP_S = 300


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released): for a server to bind, or for a
    test that needs nothing there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the server's process group (its uvicorn workers too), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the workers outlive the parent by a moment
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@contextlib.contextmanager
def mlflow_server(
    cmd: list[str], url: str, root: Path, env: dict[str, str], startup_s: float = 240
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` (an ``mlflow server``) in its own process group, logging to
    ``root/server.log``, until it answers ``/health``; stop the group afterwards."""
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + startup_s
        while not healthy(url):
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{cmd[:3]} did not answer /health"
            time.sleep(1)
        yield proc
    finally:
        stop_group(proc)


@contextlib.contextmanager
def model_server(
    model_uri: str, tracking_uri: str, log: Path
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mlflow models serve --env-manager local` on a free port, in its own process group; its
    base URL and process (not waited for: ``wait_until_serving``, so it warms up meanwhile)."""
    port = free_port()
    cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri),
            start_new_session=True,  # its own process group, so stop_group reaches the workers
        )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_group(proc)


def wait_until_serving(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Until ``/ping`` answers 200; a server that exits or never answers fails the test."""
    deadline = time.monotonic() + SERVE_STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base}/ping", timeout=5) as response,
        ):
            if response.status == 200:
                return
        time.sleep(1)
    pytest.fail(f"server not ready after {SERVE_STARTUP_S} s:\n{log.read_text()[-3000:]}")


def invoke(base: str, frame) -> tuple[int, str]:
    """POST ``frame`` as ``dataframe_split`` JSON (dates as ISO text); the status and body."""
    split = frame.to_json(orient="split", index=False, date_format="iso")
    body = json.dumps({"dataframe_split": json.loads(split)})
    request = urllib.request.Request(
        f"{base}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
