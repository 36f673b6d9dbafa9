"""Finding Java and Spark, and getting the SparkSession an entry point runs on.

Order matters here: Java is checked first (Spark's own error for a missing or old JVM is a long
Py4J traceback), then Spark is located with findspark, and only then is a session created or,
on Databricks or in a notebook, the active one reused untouched. A Spark Connect master
(``sc://host:port``) starts no JVM here: the session is a gRPC client of a remote server.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from sparkml_template.errors import UserError
from sparkml_template.runtime.console import stderr_is_terminal
from sparkml_template.runtime.driver_death import quiet_lost_driver
from sparkml_template.runtime.driver_memory import (
    default_driver_memory,
    driver_memory_is_set,
    machine_memory_bytes,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN_JAVA = 17
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
LOOPBACK = "127.0.0.1"
EXECUTOR_TIMEOUT_ENV = "SPARKML_EXECUTOR_TIMEOUT"
DEFAULT_EXECUTOR_TIMEOUT_S = 120.0


def java_executable(env: dict[str, str] | None = None) -> str | None:
    """The java Spark will launch: ``$JAVA_HOME/bin/java`` if set, else the first on PATH."""
    env = os.environ if env is None else env
    if env.get("JAVA_HOME"):
        candidate = Path(env["JAVA_HOME"]) / "bin" / "java"
        return str(candidate) if candidate.exists() else None
    return shutil.which("java", path=env.get("PATH"))


def parse_java_major(text: str) -> int | None:
    """Major version from a ``release`` file or ``java -version`` output ("1.8.0_392" -> 8)."""
    match = re.search(r'version "?(\d+)(?:\.(\d+))?', text) or re.search(
        r'JAVA_VERSION="(\d+)(?:\.(\d+))?', text
    )
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def java_major_version(java: str) -> int | None:
    """Read the JDK's ``release`` file (instant); run ``java -version`` only if there is none."""
    release = Path(os.path.realpath(java)).parent.parent / "release"
    if release.is_file():
        found = parse_java_major(release.read_text(errors="replace"))
        if found:
            return found
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_major(out.stderr + out.stdout)


def is_connect_master(master: str) -> bool:
    """True for a Spark Connect endpoint (``sc://host:port``): the driver runs on the server."""
    return master.strip().startswith("sc://")


def is_connect_session(spark: object) -> bool:
    """True for a Spark Connect session (checked by type, without importing the Connect client,
    whose import guard exits the process when its dependencies are missing)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def check_java(env: dict[str, str] | None = None, master: str = "") -> int:
    """Fail with one line unless a Java 17+ runtime is there for Spark to launch.

    A Spark Connect master launches no JVM in this process, so it needs no Java here.
    """
    if "DATABRICKS_RUNTIME_VERSION" in (os.environ if env is None else env):
        return MIN_JAVA  # the cluster's JVM is already running
    if is_connect_master(master):
        return 0
    java = java_executable(env)
    if java is None:
        raise UserError(
            f"Java not found: Spark 4 needs Java {MIN_JAVA}+ (install a JDK, or set JAVA_HOME)"
        )
    major = java_major_version(java)
    if major is None:
        raise UserError(f"could not tell the version of {java}: Spark 4 needs Java {MIN_JAVA}+")
    if major < MIN_JAVA:
        raise UserError(
            f"Java {major} found at {java}, but Spark 4 needs Java {MIN_JAVA}+ "
            "(install a newer JDK, or point JAVA_HOME at one)"
        )
    return major


def locate_spark() -> str:
    """Make pyspark importable and return its Spark home.

    ``SPARK_HOME`` wins (a user's own Spark install). Without it, a pip-installed pyspark is
    used as it is: findspark would otherwise prefer a stray ``/opt/spark`` over it.
    """
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return os.environ.get("SPARK_HOME", "")  # the cluster's Spark; findspark never loaded
    import findspark

    spark_home = os.environ.get("SPARK_HOME")
    pip_pyspark = "pyspark" not in sys.modules and importlib.util.find_spec("pyspark")
    if not spark_home and pip_pyspark:
        import pyspark  # noqa: F401  -- makes findspark.find() pick this install

    try:
        findspark.init(spark_home or None)
    except Exception as exc:  # findspark raises bare Exception/ValueError
        hint = f"SPARK_HOME={spark_home} is not a Spark install" if spark_home else str(exc)
        raise UserError(f"Spark not found: {hint} (pip install -r requirements.txt)") from None
    return os.environ.get("SPARK_HOME", "")


def is_local_master(master: str) -> bool:
    """True for masters whose driver and executors all live on this machine."""
    return master.startswith("local") or bool(
        re.match(r"spark://(127\.\d+\.\d+\.\d+|localhost)(:\d+)?$", master)
    )


def session_conf(master: str, app_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Spark conf for a session this template creates.

    A local master's driver runs every task, so its heap is sized to the machine
    (``default_driver_memory``) unless the user set it: Spark's 1g default fails on modest data.
    It only takes effect here, before the JVM starts.
    """
    conf = {
        "spark.master": master,
        "spark.app.name": app_name,
        # Spark's progress bar where a person watches; runtime.console's lines in a log.
        "spark.ui.showConsoleProgress": "true" if stderr_is_terminal() else "false",
    }
    if os.environ.get("SPARK_LOG_LEVEL"):  # else the shipped log4j2 configuration's WARN
        conf["spark.log.level"] = os.environ["SPARK_LOG_LEVEL"]
    if is_local_master(master):
        # Keep the driver (and its UI and block manager) off public interfaces.
        conf["spark.driver.host"] = LOOPBACK
        conf["spark.driver.bindAddress"] = LOOPBACK
    if master.startswith("local") and not driver_memory_is_set():
        conf["spark.driver.memory"] = default_driver_memory(machine_memory_bytes())
    conf.update(extra or {})
    return conf


def _own_log_config() -> bool:
    """True when the user configured Log4j for Spark themselves (their file wins over ours)."""
    if "log4j" in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        return True
    conf_dirs = [os.environ.get("SPARK_CONF_DIR", "")]
    if os.environ.get("SPARK_HOME"):
        conf_dirs.append(os.path.join(os.environ["SPARK_HOME"], "conf"))
    return any(d and Path(d, "log4j2.properties").is_file() for d in conf_dirs)


# Spark ML's netlib libraries and the system library each one's JNI part opens on Linux.
NETLIB = {"blas": "libblas.so.3", "lapack": "liblapack.so.3", "arpack": "libarpack.so.2"}


def missing_netlib() -> list[str]:
    """The netlib libraries whose native implementation this machine lacks (Linux only)."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return []  # other systems: leave netlib to decide
    missing = []
    for name, library in NETLIB.items():
        try:
            ctypes.CDLL(library)
        except OSError:
            missing.append(name)
    return missing


def _add_driver_options(conf: dict[str, str]) -> None:
    """Java options for a driver JVM the template starts, ahead of any the caller gave.

    - the class-data archive, if one was built (see ``jvm_cache``);
    - the shipped Log4j configuration, unless the user has their own;
    - ``ExitOnOutOfMemoryError``: a driver out of memory exits at once with code 3, which the
      runner reports in one line, instead of limping on with a dead SparkContext;
    - no attempt at a native BLAS (LAPACK, ARPACK) this machine does not have: the attempt
      prints ``netlib-blas: … dlopen(libblas.so.3) failed`` from C, past any logger, and Spark
      uses its Java implementation anyway. With ``libblas3`` installed, nothing changes.
    """
    from sparkml_template.runtime import jvm_cache

    key = "spark.driver.extraJavaOptions"
    current = conf.get(key, "")
    options = []
    if "-XX:SharedArchiveFile" not in current and "-XX:ArchiveClassesAtExit" not in current:
        spark_home = os.environ.get("SPARK_HOME", "")
        options.append(jvm_cache.driver_java_options(java_executable(), spark_home) or "")
    if "log4j" not in current and not _own_log_config():
        options.append(f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}")
    if "OutOfMemoryError" not in current:
        options.append("-XX:+ExitOnOutOfMemoryError")
    if "netlib" not in current:
        options += [f"-Ddev.ludovic.netlib.{name}.allowNative=false" for name in missing_netlib()]
    combined = " ".join(o for o in [*options, current] if o)
    if combined:
        conf[key] = combined


def _root_cause(exc: BaseException) -> str:
    """One line for a failure to start: the JVM's exception, not Py4J's "error calling None"."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def get_spark(master: str, app_name: str, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """The active SparkSession if there is one (Databricks, notebooks), else a new one."""
    locate_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return SparkSession.builder.getOrCreate()  # the cluster's session; set nothing
    if is_connect_master(master):
        return connect_session(master, app_name)
    conf = session_conf(master, app_name, extra_conf)
    _add_driver_options(conf)
    if is_local_master(master):
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        if master.startswith("spark://"):
            # Executors on this machine run the driver's interpreter, not whatever python3 is.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    quiet_lost_driver()
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        cause = _root_cause(exc)
        raise UserError(f"could not start Spark with master {master!r}: {cause}") from None
    if not master.startswith("local"):
        wait_for_executors(spark, master)
    return spark


def connect_session(master: str, app_name: str) -> SparkSession:
    """A Spark Connect client session; the server's own conf (master, event log …) applies."""
    from pyspark.sql import SparkSession

    try:
        return SparkSession.builder.remote(master.strip()).appName(app_name).getOrCreate()
    except Exception as exc:  # a missing client dependency, a malformed URL
        cause = _root_cause(exc)
        raise UserError(f"could not open a Spark Connect session to {master!r}: {cause}") from None


def executor_timeout(env: dict[str, str] | None = None) -> float:
    """Seconds to wait for a cluster's first executor (``SPARKML_EXECUTOR_TIMEOUT``)."""
    raw = (os.environ if env is None else env).get(EXECUTOR_TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_EXECUTOR_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{EXECUTOR_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def wait_for_executors(spark: SparkSession, master: str, timeout: float | None = None) -> int:
    """Return once an executor registered; stop Spark and fail if none does within ``timeout``.

    Spark itself waits forever ("Initial job has not accepted any resources") when no worker can
    host an executor of the requested size. With dynamic allocation from zero, executors only
    come when a job asks, so there is nothing to wait for.
    """
    conf = spark.sparkContext.getConf()
    dynamic = conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true"
    floor = max(
        int(conf.get("spark.dynamicAllocation.minExecutors", "0") or 0),
        int(conf.get("spark.dynamicAllocation.initialExecutors", "0") or 0),
    )
    if dynamic and floor == 0:
        return 0
    timeout = executor_timeout() if timeout is None else timeout
    jsc = spark.sparkContext._jsc.sc()  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while True:
        executors = len(jsc.statusTracker().getExecutorInfos()) - 1  # the driver is listed too
        if executors > 0:
            return executors
        if jsc.isStopped():
            raise UserError(f"Spark stopped before any executor started on {master}; see its log")
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    memory = conf.get("spark.executor.memory", "1g")
    cores = conf.get("spark.executor.cores", None)
    spark.stop()
    asks = f"spark.executor.memory={memory}" + (f", spark.executor.cores={cores}" if cores else "")
    raise UserError(
        f"no executor started on {master} within {timeout:g}s: each executor asks for {asks}, "
        f"and no worker has that free (lower spark.executor.memory or give workers more memory), "
        f"or the cluster is busy (wait longer with {EXECUTOR_TIMEOUT_ENV}=<seconds>)"
    )


def active_session() -> SparkSession | None:
    """This thread's active SparkSession (a notebook's, the tests'), without importing pyspark."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def start_spark_in_background(
    master: str, app_name: str, extra_conf: dict[str, str] | None = None
) -> Future[SparkSession]:
    """Start the JVM while the caller imports MLflow: the two take seconds each, and overlap.

    An already active session (a notebook's, the tests') is looked up in the calling thread:
    PySpark's active session is thread-local.
    """
    active = active_session()
    if active is None and (
        is_connect_master(master) or os.environ.get("DATABRICKS_RUNTIME_VERSION")
    ):
        # No JVM to start (a remote server, or Databricks' running one); and a Spark Connect
        # session, which pyspark.ml looks up, is active only in the thread that made it.
        active = get_spark(master, app_name, extra_conf)
    if active is not None:
        done: Future[SparkSession] = Future()
        done.set_result(active)
        return done
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
    future = pool.submit(get_spark, master, app_name, extra_conf)
    pool.shutdown(wait=False)
    return future
