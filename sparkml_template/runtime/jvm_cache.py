"""A class-data-sharing archive for the Spark driver JVM, so that local runs start faster.

Every run starts a driver JVM that loads and verifies the same ~10 000 classes from Spark's ~250
jars, at start-up and in its first jobs. Java's dynamic CDS archive (JEP 350) stores those
classes already parsed and verified; a JVM started with ``-XX:SharedArchiveFile`` maps it instead
of loading them again (what that saves: docs/performance.md).

The archive is built once per Java + Spark install by ``python -m
sparkml_template.workflows.warmup`` (``make setup``, ``make run`` and ``make test`` run it), keyed
on the java binary and the size and mtime of every jar (the JVM refuses an archive whose class
path changed, so a reinstall gets a new key). Runs only read it: without one they start as
usual. A truncated archive crashes the JVM, so a build writes to a temporary file, waits for its
JVM to exit, checks the file with a JVM that maps it, and only then renames it into place.

``SPARKML_JVM_CACHE=off`` disables it; ``SPARKML_JVM_CACHE_DIR`` moves it (default
``$XDG_CACHE_HOME/sparkml-template/jvm`` or ``~/.cache/...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sparkml_template.runtime.switches import switched_on

DISABLE_ENV = "SPARKML_JVM_CACHE"
DIR_ENV = "SPARKML_JVM_CACHE_DIR"
KEEP = 4  # archives kept per cache dir: one per venv/JDK in use
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # the dump lists every class it skips, on stdout


def enabled(env: dict[str, str] | None = None) -> bool:
    """False when ``SPARKML_JVM_CACHE`` switches the archive off."""
    return switched_on(DISABLE_ENV, env)


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sparkml-template" / "jvm"


def _stat_line(path: Path) -> str:
    st = path.stat()
    return f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n"


def archive_key(java: str, spark_home: str) -> str:
    """Identify the JVM build and the exact jars the driver's class path will hold."""
    digest = hashlib.sha256()
    java_home = Path(os.path.realpath(java)).parent.parent
    for part in (Path(os.path.realpath(java)), java_home / "release", java_home / "lib/modules"):
        if part.exists():
            digest.update(_stat_line(part).encode())
    for jar in sorted((Path(spark_home) / "jars").glob("*.jar")):
        digest.update(_stat_line(jar).encode())
    return digest.hexdigest()[:20]


def archive_path(java: str, spark_home: str, env: dict[str, str] | None = None) -> Path:
    return cache_dir(env) / f"spark-driver-{archive_key(java, spark_home)}.jsa"


def driver_java_options(java: str | None, spark_home: str) -> str | None:
    """The options that map an existing archive, or None (no archive, disabled, no jars)."""
    if not (enabled() and java and spark_home and (Path(spark_home) / "jars").is_dir()):
        return None
    path = archive_path(java, spark_home)
    if not path.is_file():
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # pruning keeps the recently used archives
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def _prune(directory: Path, keep: Path) -> None:
    archives = sorted(directory.glob("spark-driver-*.jsa"), key=lambda p: p.stat().st_mtime)
    for old in [p for p in archives if p != keep][: max(0, len(archives) - KEEP)]:
        old.unlink(missing_ok=True)
    for stale in directory.glob("*.jsa.tmp-*"):  # builds that died; a live one is < 10 min old
        if time.time() - stale.stat().st_mtime > 600:
            stale.unlink(missing_ok=True)


def _maps(archive: Path) -> bool:
    """True if Spark's driver JVM starts with the archive mapped (a truncated one crashes it).

    ``-Xshare:on`` makes a JVM that cannot use the archive refuse to start, and only the
    driver's own class path gets as far as mapping it, so this starts a real session.
    """
    probe = (
        "from pyspark.sql import SparkSession; import sys; "
        "SparkSession.builder.master('local[1]')"
        ".config('spark.driver.extraJavaOptions', sys.argv[1]).getOrCreate().stop()"
    )
    with tempfile.TemporaryDirectory() as scratch:  # a crash's hs_err log goes here, not cwd
        options = (
            f"-XX:SharedArchiveFile={archive} -Xshare:on {QUIET} "
            f"-XX:ErrorFile={scratch}/hs_err_%p.log"
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", probe, options],
                capture_output=True,
                timeout=300,
                cwd=scratch,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return out.returncode == 0


def dump_options(archive: Path) -> str:
    """The driver Java options that make a JVM write its classes to ``archive`` as it exits."""
    return f"-XX:ArchiveClassesAtExit={archive} {QUIET}"


def stop_jvm(spark: Any) -> None:
    """Stop Spark and wait for its JVM to exit: the archive is written as it exits.

    The JVM exits when its stdin closes (PySpark's launcher watches it).
    """
    gateway = spark.sparkContext._gateway
    spark.stop()
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    if proc is not None:
        proc.stdin.close()
        proc.wait(timeout=300)


def build(java: str, spark_home: str, workload: list[str], force: bool = False) -> Path | None:
    """Build the archive for this Java + Spark unless it exists; return its path (None: failed).

    ``workload`` is a command that starts a Spark driver with the Java options given as its
    last argument, runs the template's own Spark path, and ends with ``stop_jvm``. It runs in a
    child process so that its JVM (which writes the archive as it exits) is gone before the file
    is checked, and Spark's console output stays out of setup's.
    """
    target = archive_path(java, spark_home)
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        child = subprocess.run(
            [*workload, dump_options(tmp)], capture_output=True, text=True, timeout=900
        )
        if child.returncode != 0:
            tail = child.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the Spark workload failed: {tail[0]}")
        if not (tmp.is_file() and _maps(tmp)):
            return None
        tmp.chmod(0o444)
        os.replace(tmp, target)
        _prune(target.parent, keep=target)
        return target
    finally:
        tmp.unlink(missing_ok=True)
