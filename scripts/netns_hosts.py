"""Separate hosts on one Linux machine: a network namespace per host, veth pairs on a bridge, and
a CPU cgroup for a host that should be slow.

``scripts/spark_cluster.py start --hosts`` uses this to give the Spark master and each worker an
address of its own, so Spark reports a different host per executor, as on a real cluster. The
addresses come from 198.51.100.0/24 (TEST-NET-2, RFC 5737: for documentation, never routed); the
bridge in the root namespace holds ``.1``, which is where the driver is reached. The namespaces
get no default route and the machine no NAT, so their traffic cannot leave the machine.

Everything created here has a name starting with ``PREFIX`` (namespaces, links, cgroups), so a
later start or stop finds and removes it by name, even when the run that created it was killed.
It needs root; ``check_permitted`` says in one line why not, where it is not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "spk-"
BRIDGE = f"{PREFIX}br"
SUBNET = "198.51.100"
DRIVER_ADDRESS = f"{SUBNET}.1"
MASTER_ADDRESS = f"{SUBNET}.10"
PREFIX_LEN = 24
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
# A short CFS period spreads the throttling finely: a task of a few milliseconds is slowed too,
# not only work longer than the default 100 ms period.
CPU_PERIOD_US = 10_000


class ClusterError(Exception):
    """The cluster or its hosts could not be started or stopped; one line for the user.

    Defined here so both scripts raise the same exception (``spark_cluster.ClusterError``)."""


@dataclass
class Host:
    """One namespace: its name (also the name of its veth end on the bridge) and address."""

    name: str
    address: str
    cpu_quota: float | None = None  # cores this host may use, None for no limit

    @property
    def cgroup(self) -> Path | None:
        return CGROUP_CPU / self.name if self.cpu_quota else None


def worker_host(index: int, cpu_quota: float | None = None) -> Host:
    """Worker ``index`` (1-based): ``spk-w<index>`` at ``198.51.100.<10 + index>``."""
    return Host(f"{PREFIX}w{index}", f"{SUBNET}.{10 + index}", cpu_quota)


def ip(*args: str) -> str:
    """Run ``ip`` and return its output; a failure becomes one line naming the command."""
    try:
        out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"ip {' '.join(args)}: {exc}") from None
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["failed"])[0]
        raise ClusterError(f"ip {' '.join(args)}: {reason}")
    return out.stdout


def check_permitted(cpu_limits: bool = False) -> None:
    """Fail with one line unless this process may create namespaces (and cgroups if asked)."""
    if shutil.which("ip") is None:
        raise ClusterError("separate hosts need the ip command (iproute2), which is not installed")
    if os.geteuid() != 0:
        raise ClusterError("separate hosts need root (network namespaces, veth pairs, cgroups)")
    probe = f"{PREFIX}probe"
    if probe in ip("netns", "list").split():
        ip("netns", "del", probe)  # left by a check that was killed
    try:
        ip("netns", "add", probe)
    except ClusterError as exc:
        raise ClusterError(f"network namespaces are not permitted here ({exc})") from None
    ip("netns", "del", probe)
    if cpu_limits and not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        raise ClusterError(f"a CPU limit needs the cgroup v1 cpu controller at {CGROUP_CPU}")


def leftovers() -> dict[str, list]:
    """Everything of ours that exists now: namespaces, links, cgroups and their processes."""
    namespaces = [
        line.split()[0] for line in ip("netns", "list").splitlines() if line.startswith(PREFIX)
    ]
    links = _links()
    cgroups = sorted(str(p) for p in CGROUP_CPU.glob(f"{PREFIX}*") if p.is_dir())
    pids: set[int] = set()
    for ns in namespaces:
        pids.update(int(p) for p in ip("netns", "pids", ns).split())
    for group in cgroups:
        pids.update(_cgroup_pids(Path(group)))
    pids.discard(os.getpid())
    return {"namespaces": namespaces, "links": links, "cgroups": cgroups, "pids": sorted(pids)}


def _links() -> list[str]:
    """Our links in the root namespace (``spk-w1@if2`` is listed as ``spk-w1``)."""
    names = [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link").splitlines()]
    return [name for name in names if name.startswith(PREFIX)]


def _cgroup_pids(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie child of ours is reaped and counts as gone)."""
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return True
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def remove_all(timeout: float = 15.0) -> dict[str, list]:
    """SIGKILL every process in our namespaces and cgroups, then delete those cgroups,
    namespaces and links. Returns what was found; raises if something could not be removed."""
    found = leftovers()
    deadline = time.monotonic() + timeout
    while True:  # again until none is left: one may have joined since the last look
        now = leftovers()
        alive = [pid for pid in now["pids"] if not gone(pid)]
        found["pids"] = sorted(set(found["pids"]) | set(alive))
        if not alive:
            break
        if time.monotonic() > deadline:
            raise ClusterError(f"processes {alive} in {PREFIX}* namespaces/cgroups did not exit")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for group in found["cgroups"]:
        while True:  # the kernel lets go of a cgroup a moment after its last task exits
            try:
                Path(group).rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"could not remove cgroup {group}: {exc}") from None
                time.sleep(0.1)
    for link in found["links"]:
        if link in _links():  # deleting one end of a veth pair removes the other
            ip("link", "del", link)
    for ns in found["namespaces"]:
        ip("netns", "del", ns)
    return found


def create(hosts: list[Host]) -> None:
    """The bridge (the driver's address), then per host a namespace, a veth pair and a cgroup."""
    taken = ip("-o", "-4", "addr", "show", "to", f"{SUBNET}.0/{PREFIX_LEN}").split()
    if taken:
        raise ClusterError(
            f"{SUBNET}.0/{PREFIX_LEN} is already in use on this machine ({taken[1]})"
        )
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{DRIVER_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for host in hosts:
        inner = f"{host.name}-in"  # renamed eth0 inside its namespace
        ip("netns", "add", host.name)
        ip("link", "add", host.name, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", host.name)
        ip("-n", host.name, "link", "set", inner, "name", "eth0")
        ip("-n", host.name, "addr", "add", f"{host.address}/{PREFIX_LEN}", "dev", "eth0")
        ip("-n", host.name, "link", "set", "eth0", "up")
        ip("-n", host.name, "link", "set", "lo", "up")
        ip("link", "set", host.name, "master", BRIDGE)
        ip("link", "set", host.name, "up")
        if host.cgroup is not None:
            limit_cpu(host.cgroup, host.cpu_quota or 1.0)


def limit_cpu(group: Path, cores: float) -> None:
    """A cgroup whose processes together get at most ``cores`` CPUs' worth of time per period.

    Its weight (``cpu.shares``) stays the default: lowered, a busy machine starves the worker
    so that its executor registers too late to be given any data.
    """
    try:
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(max(1000, int(cores * CPU_PERIOD_US))))
    except OSError as exc:
        raise ClusterError(f"could not set a CPU limit in {group}: {exc}") from None


def command_in(host: Host, argv: list[str]) -> list[str]:
    """``argv`` run inside ``host``'s namespace and, if it has one, its cgroup.

    The shell joins the cgroup before ``ip netns exec`` (which remounts /sys, hiding the cgroup
    files) and then execs, so the daemon, and every executor it starts, is in it from the start.
    """
    inside = ["ip", "netns", "exec", host.name, *argv]
    if host.cgroup is None:
        return inside
    join = 'echo $$ > "$0" && exec "$@"'
    return ["sh", "-c", join, str(host.cgroup / "cgroup.procs"), *inside]


def driver_conf(folder: Path, cores: int) -> Path:
    """A SPARK_CONF_DIR for a driver on this machine: reachable from the namespaces at the
    bridge's address, and scheduling once every worker's cores are in."""
    lines = [
        f"spark.driver.host {DRIVER_ADDRESS}",
        f"spark.driver.bindAddress {DRIVER_ADDRESS}",
        f"spark.cores.max {cores}",
        "spark.scheduler.minRegisteredResourcesRatio 1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime 120s",  # a slow host starts slowly
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    return folder


def process_ids(host_name: str) -> list[int]:
    """The processes in a namespace now (``ip netns pids``)."""
    return [int(p) for p in ip("netns", "pids", host_name).split()]
