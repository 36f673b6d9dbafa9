"""A class-data-sharing archive for the Spark driver JVM: 4-5 s off every local run on 2 cores.

Every run starts a driver JVM that loads and verifies the same ~10 000 classes from Spark's ~250
jars, at start-up and in its first jobs. Java's dynamic CDS archive (JEP 350) stores those
classes already parsed and verified; a JVM started with ``-XX:SharedArchiveFile`` maps it instead
of loading them again. Measured on the shipped data (2 cores): session start 4.6 s -> 2.8 s,
first jobs 3.3 s -> 2.0 s; whole `mlflow run .` runs 21.7 s -> 17.5 s (scripts/benchmark.py).

The archive is built once per Java + Spark install, by ``python -m sparkml_template.jvm_cache``
(``make setup``, ``make run`` and ``make test`` run it; the Kubernetes image does not, as its
env image holds no project code), keyed on the java binary and the size and mtime of
every jar (the JVM refuses an archive whose class path changed, so a reinstall gets a new key).
Runs only read it: without one they start as usual. A truncated archive crashes the JVM, so a
build writes to a temporary file, waits for its JVM to exit, checks the file with a JVM that
maps it, and only then renames it into place.

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

DISABLE_ENV = "SPARKML_JVM_CACHE"
DIR_ENV = "SPARKML_JVM_CACHE_DIR"
KEEP = 4  # archives kept per cache dir (one per venv/JDK in use); ~215 MiB each
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # the dump lists every class it skips, on stdout


def enabled(env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(DISABLE_ENV, "")
    return value.strip().lower() not in {"off", "0", "false", "no"}


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


def _workload(java_options: str) -> None:
    """Run the template's own Spark path (session, read, validate, fit, score, save) once."""
    from sparkml_template.data import resolve_source
    from sparkml_template.project import parse_params
    from sparkml_template.runner import APP_PREFIX
    from sparkml_template.session import get_spark
    from sparkml_template.task_capture import TaskCapture
    from sparkml_template.training import fit_and_score

    params, _ = parse_params("train", [])
    with tempfile.TemporaryDirectory() as tmp:
        conf = {**TaskCapture().spark_conf(), "spark.driver.extraJavaOptions": java_options}
        spark = get_spark("local[*]", f"{APP_PREFIX}:jvm-cache", conf)
        fitted = fit_and_score(spark, params, resolve_source(params["data"]))
        fitted.model.write().save(str(Path(tmp) / "model"))
        gateway = spark.sparkContext._gateway  # type: ignore[attr-defined]
        spark.stop()
    # The archive is written when the JVM exits; it exits when its stdin closes.
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    if proc is not None:
        proc.stdin.close()
        proc.wait(timeout=300)


def build(force: bool = False) -> Path | None:
    """Build the archive for this Java + Spark unless it exists; return its path (None: failed).

    The workload runs in a child process so that its JVM (which writes the archive as it
    exits) is gone before the file is checked, and Spark's console output stays out of setup's.
    """
    from sparkml_template.session import check_java, java_executable, locate_spark

    check_java()
    java, spark_home = java_executable(), locate_spark()
    if not (java and spark_home):
        return None
    target = archive_path(java, spark_home)
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        child = subprocess.run(
            [sys.executable, "-m", "sparkml_template.jvm_cache", "--workload", str(tmp)],
            capture_output=True,
            text=True,
            timeout=900,
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


def main(argv: list[str]) -> int:
    """``python -m sparkml_template.jvm_cache [--force]``: build the archive; never fails setup."""
    if argv[:1] == ["--workload"]:
        _workload(f"-XX:ArchiveClassesAtExit={argv[1]} {QUIET}")
        return 0
    if not enabled():
        print(f"jvm cache: disabled by {DISABLE_ENV}")
        return 0
    start = time.monotonic()
    try:
        from sparkml_template.session import java_executable, locate_spark

        existing = archive_path(java_executable() or "java", locate_spark())
        if existing.is_file() and "--force" not in argv:
            return 0  # built before: setup stays quiet
        path = build(force="--force" in argv)
    except Exception as exc:  # a faster start is optional: say why and carry on
        print(f"jvm cache: not built ({exc}); runs start without it")
        return 0
    if path is None:
        print("jvm cache: the JVM wrote no usable archive; runs start without it")
    else:
        size = path.stat().st_size / 2**20
        print(f"jvm cache: {path} ({size:.0f} MB, {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
