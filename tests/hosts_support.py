"""Plumbing for tests/e2e/test_hosts.py: the cluster scripts loaded by path, a second Python
environment for one worker, a training run against the multi-host cluster (with a hook on its
phase lines, to kill an executor during the fit), and what a killed start leaves behind."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conftest import PROJECT_ROOT, VENV_BIN, subprocess_env

OTHER_HOST_PINS = PROJECT_ROOT / "tests" / "requirements-other-host.txt"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def load_script(name: str):
    """``scripts/<name>.py`` as a module (scripts are not a package); loaded once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def other_python(pins: Path = OTHER_HOST_PINS) -> Path:
    """An interpreter that sees the project's packages except the pinned ones, which it has in
    other versions: a venv of the same base Python, the pins installed into it, and the
    project's site-packages added after its own (a ``.pth`` line). Built once, cached in the temp
    directory under a name keyed on the pins and the base interpreter."""
    base = getattr(sys, "_base_executable", sys.executable)
    key = hashlib.sha256(pins.read_bytes() + base.encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"sparkml-other-host-{key}"
    python = home / "bin" / "python"
    if python.exists():
        return python
    building = Path(tempfile.mkdtemp(prefix=f"{home.name}-", dir=home.parent))
    uv = str(VENV_BIN / "uv")
    env = subprocess_env(UV_PYTHON_DOWNLOADS="never")
    steps = [
        [uv, "venv", "-q", "--allow-existing", "--python", base, str(building)],
        [uv, "pip", "install", "-q", "--python", str(building / "bin" / "python"), "-r", str(pins)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, env=env)
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"{' '.join(step)} failed: {done.stderr[-2000:]}")
    purelib = sysconfig.get_paths()["purelib"]
    own = next((building / "lib").glob("python*/site-packages"))
    (own / "zz_project_packages.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    try:
        building.rename(home)  # venvs do not move well: their scripts name the path
    except OSError:  # another session built it first
        shutil.rmtree(building, ignore_errors=True)
    return python if python.exists() else building / "bin" / "python"


def python_says(python: Path, code: str) -> str:
    """What ``code`` prints under ``python``."""
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def split_csv(source: Path, folder: Path, parts: int) -> Path:
    """The shipped CSV as a directory of part files, as Spark writes data: several partitions, so
    every executor (and host) gets work."""
    header, *rows = source.read_text().splitlines()
    folder.mkdir(parents=True)
    for i in range(parts):
        chunk = rows[i::parts]
        (folder / f"part-{i:05d}.csv").write_text("\n".join([header, *chunk]) + "\n")
    return folder


@dataclass
class TrainRun:
    """One ``python train.py`` against the cluster: its exit code, output and MLflow run."""

    returncode: int
    stdout: str
    stderr: str
    run_id: str = ""
    killed: list[int] = field(default_factory=list)


def train(
    args: list[str],
    env: dict[str, str],
    on_line: Callable[[str], list[int]] | None = None,
    timeout: float = 420,
) -> TrainRun:
    """Run train.py as its own driver; ``on_line`` sees each stderr line as it comes (a phase
    line such as ``[train] fit: …``) and returns the PIDs it killed, if any."""
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    killed: list[int] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if on_line is not None:
                killed.extend(on_line(line))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        stdout = proc.stdout.read()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join(timeout=30)
    run = TrainRun(proc.returncode, stdout, "".join(lines), killed=killed)
    for line in stdout.splitlines():
        if line.startswith("== train: run "):
            run.run_id = line.split()[3]
    return run


def executor_pids(namespace: str) -> list[int]:
    """The executor JVMs running in a host's namespace (``ip netns pids`` + their command line)."""
    netns = load_script("netns_hosts")
    found = []
    for pid in netns.process_ids(namespace):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if EXECUTOR_CLASS.encode() in cmdline:
            found.append(pid)
    return found


def plant_leftovers() -> int:
    """What a start killed halfway leaves: the bridge, a namespace with its veth pair and a CPU
    cgroup, and a process running inside both. Returns that process's PID."""
    netns = load_script("netns_hosts")
    stale = netns.Host(f"{netns.PREFIX}stale", f"{netns.SUBNET}.99", cpu_quota=0.5)
    netns.create([stale])
    proc = subprocess.Popen(
        netns.command_in(stale, ["sleep", "900"]),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while proc.pid not in netns.process_ids(stale.name):  # inside, as a daemon would be
        assert proc.poll() is None and time.monotonic() < deadline, "the stale process failed"
        time.sleep(0.05)
    return proc.pid
