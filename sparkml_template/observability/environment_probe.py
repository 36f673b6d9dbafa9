"""What one Python process knows about the machine it runs on: the record of an executor (or of
the driver) that ``environment.py`` compares across the cluster.

This module runs on executors. It imports only the standard library at the top, and the probe
job ships it by value (cloudpickle), so executors need neither this package nor MLflow
installed. Everything is cheap: file reads under ``/proc`` and ``/sys``, package metadata
(``importlib.metadata``, never importing the packages but numpy and threadpoolctl), and one
64x64 float64 product and solve. Nothing here may raise: a fact that cannot be read is ``""``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The packages that decide results (or whether Spark runs at all), by distribution name.
PACKAGES = ("pyspark", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow")
# The only environment variables ever read or logged: threads and reproducibility.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_CBWR")
COLUMNS = (
    "role", "executor_id", "host", "python",
    *(p.replace("-", "_") for p in PACKAGES),
    "java", "os", "kernel", "cpu_model", "cpus", "cpus_usable", "cpu_quota", "timezone",
    "blas_threadpoolctl", "blas_netlib", *THREAD_VARS, "canary",
)  # fmt: skip
SCHEMA = ", ".join(f"`{c}` string" for c in COLUMNS)
CANARY_SIZE = 64
NATIVE_BLAS = "libblas.so.3"  # what dev.ludovic.netlib's JNI loader dlopen()s (Spark ML's BLAS)
MAX_ANCESTORS = 6  # python worker -> pyspark.daemon (forked twice) -> executor JVM, and spare

ALLOW_NATIVE = "dev.ludovic.netlib.blas.allowNative"  # "false": the JVM never loads it
_cached: dict[str, str] | None = None  # one record per Python worker (workers are reused)
_native_off = False  # this worker's executor JVM was started with native BLAS switched off


def _quiet(read: Any, default: str = "") -> str:
    """``read()`` as a string, or ``default`` when it fails in any way."""
    try:
        value = read()
    except Exception:
        return default
    return default if value is None else str(value)


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces


def _cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _flag(args: list[str], name: str) -> str:
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return ""


def executor_identity() -> tuple[str, str, int | None]:
    """(executor id, the host Spark reports for it, the executor JVM's PID) for this worker.

    Every cluster manager starts an executor JVM as ``...ExecutorBackend --executor-id N
    --hostname H`` (standalone, YARN, Kubernetes) and registers it with the driver under that id
    and host; a Python worker is that JVM's descendant (forked by ``pyspark.daemon``). Only
    those two arguments are read, never the rest of the command line. Fallbacks: Kubernetes'
    ``SPARK_EXECUTOR_ID``/``SPARK_EXECUTOR_POD_IP``, then ``SPARK_LOCAL_IP`` or the host name.
    In local mode the JVM is the driver: id ``driver``, host ``localhost`` (as Spark reports it).
    """
    global _native_off
    pid, jvm_pid = os.getppid(), None
    with contextlib.suppress(Exception):
        for _ in range(MAX_ANCESTORS):
            if pid <= 1:
                break
            args = _cmdline(pid)
            if args and Path(args[0]).name == "java":
                jvm_pid = pid
                _native_off = f"-D{ALLOW_NATIVE}=false" in args
                executor_id = _flag(args, "--executor-id")
                if executor_id:
                    return executor_id, _flag(args, "--hostname"), pid
                if "org.apache.spark.deploy.SparkSubmit" in args:
                    return "driver", "localhost", pid
                break
            pid = _parent_pid(pid)
    executor_id = os.environ.get("SPARK_EXECUTOR_ID", "")
    host = os.environ.get("SPARK_EXECUTOR_POD_IP") or os.environ.get("SPARK_LOCAL_IP", "")
    return executor_id, host or socket.gethostname(), jvm_pid


def _java_version(jvm_pid: int | None) -> str:
    """``JAVA_VERSION`` from the ``release`` file of the JVM that runs this executor."""
    homes = []
    if jvm_pid is not None:
        with contextlib.suppress(OSError):
            homes.append(Path(os.readlink(f"/proc/{jvm_pid}/exe")).resolve().parent.parent)
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    for home in homes:
        with contextlib.suppress(OSError):
            for line in (home / "release").read_text().splitlines():
                if line.startswith("JAVA_VERSION="):
                    return line.split("=", 1)[1].strip().strip('"')
    return ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor()


def _cpu_quota() -> str:
    """The CPU limit of this process's cgroup in cores ("" when unlimited or unknown)."""
    root = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError, ValueError):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        for line in lines:  # cgroup v1: the cpu controller's own hierarchy
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                base = root / "cpu" / path.lstrip("/")
                quota = int((base / "cpu.cfs_quota_us").read_text())
                period = int((base / "cpu.cfs_period_us").read_text())
                return "" if quota <= 0 else f"{quota / period:g}"
        for line in lines:  # cgroup v2: one hierarchy, "0::<path>"
            if line.startswith("0::"):
                limit = (root / line[3:].lstrip("/") / "cpu.max").read_text().split()
                return "" if limit[0] == "max" else f"{int(limit[0]) / int(limit[1]):g}"
    return ""


def _timezone() -> str:
    offset = time.strftime("%z")
    return f"{time.tzname[time.localtime().tm_isdst > 0]} ({offset})" if offset else ""


def _threadpoolctl_blas() -> str:
    """The BLAS numpy calls here, as threadpoolctl sees it.

    Only numpy's own library when it ships one (a wheel's ``numpy.libs``): a process that has
    also imported scipy (the driver, after scikit-learn) loads scipy's OpenBLAS too, and that
    would read as a difference from an executor that never imported it.
    """
    import numpy
    from threadpoolctl import threadpool_info

    numpy_dir = Path(numpy.__file__).parent
    ships = (str(numpy_dir) + os.sep, str(numpy_dir) + ".libs" + os.sep)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    own = [i for i in blas if str(i.get("filepath", "")).startswith(ships)]
    found = [
        f"{i.get('internal_api', '?')} {i.get('version') or '?'} ({Path(i['filepath']).name}), "
        f"{i.get('num_threads')} threads"
        for i in own or blas
    ]
    return "; ".join(sorted(set(found)))


def native_blas() -> str:
    """The native BLAS Spark's netlib would load here (its real file), or "" when none loads."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL(NATIVE_BLAS)
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/maps").read_text().splitlines():
                if NATIVE_BLAS in line:
                    return str(Path(line.split()[-1]).resolve())
        return NATIVE_BLAS
    return ""


def netlib_blas() -> str:
    """``native: <file>`` or ``java``: what the executor JVM's netlib would load."""
    native = "" if _native_off else native_blas()
    return f"native: {native}" if native else "java"


def canary() -> str:
    """A hash of a fixed float64 product and solve through numpy's BLAS and LAPACK.

    The inputs are exact binary fractions (no RNG, no transcendental functions), so only the
    summation order and kernels of the linear algebra can change the result bytes: two machines
    with different hashes compute differently even when every version string matches.
    """
    import numpy as np

    n = CANARY_SIZE
    i, j = np.indices((n, n), dtype=np.float64)
    a = ((i * 37 + j * 11) % n + 1) / n + np.eye(n) * n / 8
    b = ((np.arange(n, dtype=np.float64) * 13) % n + 1) / 16
    product = a @ a.T
    x = np.linalg.solve(product, b)
    digest = hashlib.sha256(np.ascontiguousarray(product).tobytes() + x.tobytes())
    return digest.hexdigest()[:16]


def describe_here(
    role: str, executor_id: str, host: str, jvm_pid: int | None = None, **known: str
) -> dict[str, str]:
    """The record of this process: one value per ``COLUMNS`` entry, all strings."""
    from importlib import metadata

    uname = platform.uname()
    record = {
        "role": role,
        "executor_id": executor_id,
        "host": host,
        "python": platform.python_version(),
        **{p.replace("-", "_"): _package_version(p, metadata.version) for p in PACKAGES},
        "java": _java_version(jvm_pid),
        "os": _quiet(lambda: f"{uname.system} {_os_release()}".strip()),
        "kernel": uname.release,
        "cpu_model": _quiet(_cpu_model),
        "cpus": _quiet(os.cpu_count),
        "cpus_usable": _quiet(lambda: len(os.sched_getaffinity(0))),
        "cpu_quota": _quiet(_cpu_quota),
        "timezone": _quiet(_timezone),
        "blas_threadpoolctl": _quiet(_threadpoolctl_blas),
        "blas_netlib": _quiet(netlib_blas),
        **{name: os.environ.get(name, "") for name in THREAD_VARS},
        "canary": _quiet(canary),
    }
    record.update({k: v for k, v in known.items() if k in record and v})
    return record


def _package_version(name: str, version: Any) -> str:
    """From its metadata; else, for a package without one (Spark's own ``pyspark.zip`` on a
    cluster's ``PYTHONPATH``), from the module when it is already imported."""
    found = _quiet(lambda: version(name))
    module = sys.modules.get(name.replace("-", "_"))
    return found or _quiet(lambda: getattr(module, "__version__", None))


def _os_release() -> str:
    """``PRETTY_NAME`` of /etc/os-release (Linux), else the platform's own words."""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.platform(terse=True)


def executor_record() -> dict[str, str]:
    """This Python worker's record as an executor (computed once per worker process)."""
    global _cached
    if _cached is None:
        executor_id, host, jvm_pid = executor_identity()
        _cached = describe_here("executor", executor_id, host, jvm_pid)
    return _cached


def probe_partitions(batches: Iterator[Any]) -> Iterator[Any]:
    """The ``mapInPandas`` function of the probe job: one record per partition."""
    import pandas as pd

    for _ in batches:  # the range's rows are not needed, only where the task ran
        pass
    yield pd.DataFrame([executor_record()], columns=list(COLUMNS)).astype(str)


def driver_record(spark: Any, connect: bool) -> dict[str, str]:
    """This process's record; on a classic driver the JVM's Java and netlib BLAS class too.

    The JVM is asked for its BLAS (``BLAS.getInstance()``) only when that cannot try a native
    library that is missing: the failed attempt prints ``dlopen(libblas.so.3) failed`` from C.
    """
    if connect:  # the client has no JVM; its numpy and BLAS are still this process's
        return describe_here("driver", "driver", socket.gethostname())
    sc = spark.sparkContext
    jvm = sc._jvm  # type: ignore[attr-defined]
    system = jvm.java.lang.System
    host = sc.getConf().get("spark.driver.host", socket.gethostname())
    record = describe_here("driver", "driver", host, java=str(system.getProperty("java.version")))
    native = native_blas()
    if str(system.getProperty(ALLOW_NATIVE)) == "false" or native:
        blas_class = str(jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName())
    else:  # native allowed but missing: what netlib falls back to, without the attempt
        vector = jvm.java.lang.ModuleLayer.boot().findModule("jdk.incubator.vector")
        blas_class = "VectorBLAS" if vector.isPresent() else "JavaBLAS"
    short = blas_class.rsplit(".", 1)[-1]
    is_native = "JNI" in short or "Native" in short
    record["blas_netlib"] = f"native: {native} ({short})" if is_native else f"java: {short}"
    return record


def dedupe_executors(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One record per executor (the probe runs several tasks on each), in executor-id order."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        seen.setdefault((row.get("executor_id", ""), row.get("host", "")), row)

    def order(key: tuple[str, str]) -> tuple[int, str, str]:
        return (0, f"{int(key[0]):09d}", key[1]) if key[0].isdigit() else (1, *key)

    return [seen[k] for k in sorted(seen, key=order)]


def executor_count(spark: Any) -> int | None:
    """Executors registered now, from the status tracker (None over Spark Connect)."""
    with contextlib.suppress(Exception):
        infos = spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()  # type: ignore
        return max(1, len(infos) - 1)  # the list includes the driver's block manager
    return None


def partition_count(spark: Any, connect: bool, per_core: int, most: int) -> int:
    """Tasks for the probe job: ``per_core`` per core of the cluster (a guess over Connect)."""
    try:
        if connect:
            cores = int(spark.conf.get("spark.default.parallelism", "8") or 8)
        else:
            cores = spark.sparkContext.defaultParallelism
    except Exception:
        cores = 8
    return max(2, min(most, cores * per_core))


if __name__ == "__main__":  # `python -m ...environment_probe`: this machine's record
    for key, value in describe_here("driver", "driver", socket.gethostname()).items():
        print(f"{key:20} {value}", file=sys.stdout)
