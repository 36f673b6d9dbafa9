"""Start and stop a Spark standalone cluster (one master, N workers) on 127.0.0.1.

The pip-installed pyspark ships ``bin/spark-class`` but not Spark's ``sbin/start-master.sh``, so
this runs ``org.apache.spark.deploy.master.Master`` and ``...worker.Worker`` through spark-class
itself, records their PIDs in a state directory, and stops them by those PIDs.

    python scripts/spark_cluster.py start --workers 2 --cores 1 --memory 1g
    mlflow run . -P master=spark://127.0.0.1:7077 --env-manager local
    python scripts/spark_cluster.py stop

Executors get this interpreter (``PYSPARK_PYTHON``, and its directory first on ``PATH``) so the
Python side of Spark matches the driver's. Every wait is bounded; on any failure the processes
already started are stopped again.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "pyspark-mlflow-template-cluster"
STATE_FILE = "cluster.json"


class ClusterError(Exception):
    """The cluster could not be started or stopped; the message is one line for the user."""


@dataclass
class Cluster:
    """What ``start`` launched: enough to reach the cluster and to stop it."""

    master_url: str
    webui_url: str
    state_dir: str
    master_pid: int
    worker_pids: list[int] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [*self.worker_pids, self.master_pid]


def spark_class() -> Path:
    """``bin/spark-class`` of ``SPARK_HOME`` if set, else of the pip-installed pyspark."""
    home = os.environ.get("SPARK_HOME")
    if not home:
        import pyspark

        home = str(Path(pyspark.__file__).parent)
    path = Path(home) / "bin" / "spark-class"
    if not path.exists():
        raise ClusterError(
            f"{path} not found: is pyspark installed (pip install -r requirements.txt)?"
        )
    return path


def port_is_free(port: int) -> bool:
    """Spark silently moves a busy port to the next one; we would rather say so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def daemon_env(python: str) -> dict[str, str]:
    """Environment of the master and workers; executors inherit the workers'."""
    env = dict(os.environ)
    env["SPARK_LOCAL_IP"] = LOOPBACK
    env["PYSPARK_PYTHON"] = python
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    # Spark would otherwise try port+1, port+2...: fail instead, on the port we were given.
    env["SPARK_DAEMON_JAVA_OPTS"] = (
        env.get("SPARK_DAEMON_JAVA_OPTS", "") + " -Dspark.port.maxRetries=0"
    ).strip()
    return env


def launch(args: list[str], log: Path, env: dict[str, str]) -> int:
    """Start one daemon in its own process group (so its executors stop with it)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(spark_class()), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return proc.pid


def master_status(webui_url: str, timeout: float = 2.0) -> dict | None:
    """The master's own JSON status page, or None while it is not answering."""
    try:
        with urllib.request.urlopen(f"{webui_url}/json/", timeout=timeout) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (we started it, nobody reaped it) counts as gone.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def wait_for_workers(cluster: Cluster, count: int, timeout: float, logs: Path) -> dict:
    """Poll the master until ``count`` workers are ALIVE; fail if a daemon died or time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        status = master_status(cluster.webui_url)
        workers = [w for w in (status or {}).get("workers", []) if w.get("state") == "ALIVE"]
        if status and len(workers) >= count:
            if status.get("url") != cluster.master_url:
                raise ClusterError(
                    f"master came up as {status.get('url')}, not {cluster.master_url}"
                )
            return status
        dead = [pid for pid in cluster.pids if not alive(pid)]
        if dead:
            raise ClusterError(f"a Spark daemon (pid {dead[0]}) exited; see the logs in {logs}")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{len(workers)} of {count} workers registered within {timeout:.0f}s; "
                f"see the logs in {logs}"
            )
        time.sleep(0.5)


def start_cluster(
    state_dir: Path = DEFAULT_STATE_DIR,
    workers: int = 2,
    cores: int = 1,
    memory: str = "1g",
    port: int = 7077,
    webui_port: int = 8080,
    python: str = sys.executable,
    timeout: float = 90.0,
) -> Cluster:
    """Start a master and ``workers`` workers on 127.0.0.1 and wait until all registered."""
    state_dir = Path(state_dir).resolve()
    if (state_dir / STATE_FILE).exists():
        raise ClusterError(f"a cluster is already recorded in {state_dir}; stop it first")
    if workers < 1 or cores < 1:
        raise ClusterError("--workers and --cores must be at least 1")
    for name, wanted in (("--port", port), ("--webui-port", webui_port)):
        if not port_is_free(wanted):
            raise ClusterError(f"{name} {wanted} is already in use on {LOOPBACK}")
    logs = state_dir / "logs"
    work = state_dir / "work"  # executors' scratch space, never inside site-packages
    logs.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = daemon_env(python)
    master_url = f"spark://{LOOPBACK}:{port}"
    master_args = [MASTER_CLASS, "--host", LOOPBACK, "--port", str(port)]
    master_args += ["--webui-port", str(webui_port)]
    cluster = Cluster(
        master_url=master_url,
        webui_url=f"http://{LOOPBACK}:{webui_port}",
        state_dir=str(state_dir),
        master_pid=launch(master_args, logs / "master.log", env),
    )
    save_state(cluster)
    try:
        for i in range(workers):
            args = [WORKER_CLASS, master_url, "--host", LOOPBACK, "--webui-port", "0"]
            args += ["--cores", str(cores), "--memory", memory, "--work-dir", str(work)]
            cluster.worker_pids.append(launch(args, logs / f"worker-{i + 1}.log", env))
            save_state(cluster)
        wait_for_workers(cluster, workers, timeout, logs)
    except BaseException:
        stop_cluster(state_dir)
        raise
    return cluster


def save_state(cluster: Cluster) -> None:
    path = Path(cluster.state_dir) / STATE_FILE
    path.write_text(json.dumps(asdict(cluster), indent=2))


def load_state(state_dir: Path) -> Cluster | None:
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return None
    return Cluster(**json.loads(path.read_text()))


def stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM the daemon's process group (it and the executors it launched), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.2)


def stop_cluster(state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 15.0) -> list[int]:
    """Stop every daemon recorded in ``state_dir`` (workers first); return the PIDs stopped."""
    cluster = load_state(state_dir)
    if cluster is None:
        return []
    for pid in cluster.pids:
        stop_pid(pid, timeout)
    (Path(state_dir) / STATE_FILE).unlink()
    return cluster.pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores each worker offers")
    parser.add_argument("--memory", default="1g", help="memory each worker offers (e.g. 2g)")
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--webui-port", type=int, default=8080)
    parser.add_argument("--python", default=sys.executable, help="interpreter for executors")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for workers")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            cluster = start_cluster(
                args.state_dir,
                args.workers,
                args.cores,
                args.memory,
                args.port,
                args.webui_port,
                args.python,
                args.timeout,
            )
            print(f"master {cluster.master_url}  web UI {cluster.webui_url}")
        elif args.command == "stop":
            stopped = stop_cluster(args.state_dir)
            print(f"stopped pids {stopped}" if stopped else f"no cluster in {args.state_dir}")
        else:
            cluster = load_state(args.state_dir)
            if cluster is None:
                print(f"no cluster recorded in {args.state_dir}")
                return 1
            status = master_status(cluster.webui_url) or {}
            print(json.dumps({**asdict(cluster), "aliveworkers": status.get("aliveworkers")}))
    except ClusterError as exc:
        print(f"spark_cluster: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
