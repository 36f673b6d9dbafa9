"""Start and stop a Spark standalone cluster (one master, N workers), on 127.0.0.1 or on
separate hosts (a network namespace each, ``--hosts``).

The pip-installed pyspark ships ``bin/spark-class`` but not Spark's ``sbin/start-master.sh``, so
this runs ``org.apache.spark.deploy.master.Master`` and ``...worker.Worker`` through spark-class
itself, records their PIDs in a state directory, and stops them by those PIDs.

    python scripts/spark_cluster.py start --workers 2 --cores 1 --memory 1g
    mlflow run . -P master=spark://127.0.0.1:7077 --env-manager local
    python scripts/spark_cluster.py stop

    python scripts/spark_cluster.py start --hosts --workers 3 --slow-worker 2 --cpu-quota 0.5
    SPARK_CONF_DIR=<state dir>/conf mlflow run . -P master=spark://198.51.100.10:7077 ...

Executors get this interpreter (``PYSPARK_PYTHON``, and its directory first on ``PATH``) so the
Python side of Spark matches the driver's; with ``--hosts``, ``--worker-python N=PATH`` gives
worker N another one. Every wait is bounded; on any failure what was started is removed again.
"""

from __future__ import annotations

import argparse
import importlib.util
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


def _sibling(name: str):
    """A module next to this script (scripts are not a package; tests load them by path)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


netns = _sibling("netns_hosts")
ClusterError = netns.ClusterError


@dataclass
class Cluster:
    """What ``start`` launched: enough to reach the cluster and to stop it."""

    master_url: str
    webui_url: str
    state_dir: str
    master_pid: int
    worker_pids: list[int] = field(default_factory=list)
    # --hosts only: each daemon's namespace, address, interpreter and CPU limit, and the
    # SPARK_CONF_DIR a driver on this machine uses to be reachable from them.
    hosts: list[dict] = field(default_factory=list)
    conf_dir: str = ""

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


def daemon_env(python: str, address: str = LOOPBACK) -> dict[str, str]:
    """Environment of the master and workers; executors inherit the workers'."""
    env = dict(os.environ)
    env["SPARK_LOCAL_IP"] = address
    env["PYSPARK_PYTHON"] = python
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    # Spark would otherwise try port+1, port+2...: fail instead, on the port we were given.
    env["SPARK_DAEMON_JAVA_OPTS"] = (
        env.get("SPARK_DAEMON_JAVA_OPTS", "") + " -Dspark.port.maxRetries=0"
    ).strip()
    return env


def launch(args: list[str], log: Path, env: dict[str, str], host=None) -> int:
    """Start one daemon in its own process group (so its executors stop with it), inside
    ``host``'s namespace and cgroup when given."""
    command = [str(spark_class()), *args]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command if host is None else netns.command_in(host, command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return proc.pid


def master_status(webui_url: str, timeout: float = 2.0) -> dict | None:
    """The master's own JSON status page, or None while it is not answering."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local address
    try:
        with no_proxy.open(f"{webui_url}/json/", timeout=timeout) as resp:
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


def start_hosts_cluster(
    state_dir: Path = DEFAULT_STATE_DIR,
    workers: int = 3,
    cores: int = 1,
    memory: str = "1g",
    python: str = sys.executable,
    worker_python: dict[int, str] | None = None,
    cpu_quota: dict[int, float] | None = None,
    timeout: float = 120.0,
) -> Cluster:
    """Start the master and ``workers`` workers, each in a network namespace of its own.

    ``worker_python`` maps a worker's number (1-based) to its executors' interpreter,
    ``cpu_quota`` to the cores its processes may use. Leftovers of a killed run are removed
    first; whatever this start created is removed again if it fails.
    """
    state_dir = Path(state_dir).resolve()
    worker_python, cpu_quota = worker_python or {}, cpu_quota or {}
    if (state_dir / STATE_FILE).exists():
        raise ClusterError(f"a cluster is already recorded in {state_dir}; stop it first")
    if not 1 <= workers <= 200 or cores < 1:
        raise ClusterError("--workers must be 1 to 200 and --cores at least 1")
    unknown = sorted((set(worker_python) | set(cpu_quota)) - set(range(1, workers + 1)))
    if unknown:
        raise ClusterError(f"there is no worker {unknown[0]} among {workers} workers")
    missing = [exe for exe in worker_python.values() if not Path(exe).is_file()]
    if missing:
        raise ClusterError(f"worker interpreter {missing[0]} does not exist")
    netns.check_permitted(cpu_limits=bool(cpu_quota))
    netns.remove_all()  # what a killed run left behind
    master = netns.Host(f"{netns.PREFIX}master", netns.MASTER_ADDRESS)
    nodes = [netns.worker_host(i, cpu_quota.get(i)) for i in range(1, workers + 1)]
    logs, conf = state_dir / "logs", state_dir / "conf"
    for folder in (logs, state_dir / "work"):
        folder.mkdir(parents=True, exist_ok=True)
    master_url = f"spark://{master.address}:7077"
    cluster = Cluster(master_url, f"http://{master.address}:8080", str(state_dir), 0)
    cluster.conf_dir = str(netns.driver_conf(conf, workers * cores))
    try:
        netns.create([master, *nodes])
        args = [MASTER_CLASS, "--host", master.address, "--port", "7077", "--webui-port", "8080"]
        env = daemon_env(python, master.address)
        cluster.master_pid = launch(args, logs / "master.log", env, master)
        cluster.hosts.append({"name": master.name, "address": master.address, "role": "master"})
        save_state(cluster)
        for i, node in enumerate(nodes, start=1):
            exe = worker_python.get(i, python)
            work = state_dir / "work" / node.name  # executors' scratch space and logs
            args = [WORKER_CLASS, master_url, "--host", node.address, "--webui-port", "8081"]
            args += ["--cores", str(cores), "--memory", memory, "--work-dir", str(work)]
            env = daemon_env(exe, node.address)
            pid = launch(args, logs / f"worker-{i}.log", env, node)
            cluster.worker_pids.append(pid)
            cluster.hosts.append(
                {"name": node.name, "address": node.address, "role": "worker", "pid": pid}
                | {"python": exe, "cpu_quota": node.cpu_quota}
            )
            save_state(cluster)
        status = wait_for_workers(cluster, workers, timeout, logs)
        seen = sorted(w["host"] for w in status["workers"] if w.get("state") == "ALIVE")
        if seen != sorted(node.address for node in nodes):
            raise ClusterError(f"workers registered as {seen}, not at their own addresses")
    except BaseException:
        if (state_dir / STATE_FILE).exists():
            stop_cluster(state_dir)
        netns.remove_all()
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
    if cluster.hosts:
        netns.remove_all(timeout)
    return cluster.pids


def worker_pythons(specs: list[str]) -> dict[int, str]:
    """``["2=/venv/bin/python"]`` -> ``{2: "/venv/bin/python"}``."""
    chosen = {}
    for spec in specs:
        number, sep, path = spec.partition("=")
        if not (sep and number.isdigit() and path):
            raise ClusterError(f"--worker-python expects N=PATH, got {spec!r}")
        chosen[int(number)] = path
    return chosen


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
    hosts = parser.add_argument_group("separate hosts (root; a network namespace per daemon)")
    hosts.add_argument("--hosts", action="store_true", help="master and workers on own addresses")
    hosts.add_argument("--slow-worker", type=int, action="append", default=[], metavar="N",
                       help="limit worker N's CPU to --cpu-quota cores (repeatable)")  # fmt: skip
    hosts.add_argument("--cpu-quota", type=float, default=0.5, help="cores of a slow worker")
    hosts.add_argument("--worker-python", action="append", default=[], metavar="N=PATH",
                       help="interpreter for worker N's executors (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.command == "start" and args.hosts:
            cluster = start_hosts_cluster(
                args.state_dir,
                args.workers,
                args.cores,
                args.memory,
                args.python,
                worker_pythons(args.worker_python),
                {n: args.cpu_quota for n in args.slow_worker},
                args.timeout,
            )
            workers = " ".join(h["address"] for h in cluster.hosts if h["role"] == "worker")
            print(f"master {cluster.master_url}  web UI {cluster.webui_url}  workers {workers}")
            print(f"drivers on this machine: SPARK_CONF_DIR={cluster.conf_dir}")
        elif args.command == "start":
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
            if args.hosts and not stopped:  # no record, but maybe leftovers of a killed run
                stopped = netns.remove_all()["pids"]
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
