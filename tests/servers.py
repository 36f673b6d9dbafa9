"""Servers the end-to-end tests start on 127.0.0.1 (tracking, basic-auth, Spark Connect, model
serving, standalone Spark): a free port to bind, a health probe, and a stop by process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
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
