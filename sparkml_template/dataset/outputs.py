"""Writing user data so that an output is replaced whole or not at all.

Spark's ``mode("overwrite")`` deletes the target before its job runs, so a job that then fails
leaves nothing. Here the new output is written beside the target, in ``<output>.staging-<run
id>/data`` (same directory, so same filesystem), and swapped in only once the write completed:
the previous output is renamed to ``<staging>/previous``, the new one renamed to the target,
then the staging directory (the previous output in it) removed. A run that fails or is stopped
removes its staging directory itself; one killed outright (SIGKILL, a lost driver) leaves it,
with ``_owner.json`` saying which processes wrote it, and the next write to the same output
removes it once those processes are gone, first putting the previous output back if the kill
fell between the two renames.

Tables go the same way through the catalog: ``<table>__staging_<run id>``, then two
``ALTER TABLE … RENAME``. Each rename is one catalog operation; between the two a reader finds
no table, never a partial one (docs/failures.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sparkml_template.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGING_INFIX = ".staging-"
TABLE_STAGING_INFIX = "__staging_"
TABLE_PREVIOUS_INFIX = "__previous_"
OWNER_FILE = "_owner.json"
OWNER_PROPERTY = "sparkml_template.staging_owner"
NEW_DIR = "data"
PREVIOUS_DIR = "previous"
JOBS_STOP_WAIT_S = 30.0


@dataclass(frozen=True)
class Owner:
    """Who writes a staging output: the run, the host, and its processes (pid -> start time),
    the driver JVM's included (it may write on after the Python process died)."""

    run_id: str
    host: str
    processes: dict[str, str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Owner | None:
        try:
            raw = json.loads(text)
            return Owner(str(raw["run_id"]), str(raw["host"]), dict(raw["processes"]))
        except (ValueError, KeyError, TypeError):
            return None


def _started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, Linux), '' where unknown; None: no such
    process, or one that has exited and waits to be reaped (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def current_owner(spark: SparkSession | None, run_id: str) -> Owner:
    """This process and, in a classic session on this host, its driver JVM."""
    pids = [os.getpid()]
    with contextlib.suppress(Exception):
        jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
        jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
        if jvm_pid != os.getpid():
            pids.append(jvm_pid)
    processes = {str(pid): _started(pid) or "" for pid in pids}
    return Owner(run_id, socket.gethostname(), processes)


def owner_gone(owner: Owner | None, run_ended: Callable[[str], bool]) -> bool:
    """Whether nothing may still write into a staging output: every process of its owner has
    exited (on this host), or its run has ended (elsewhere). No owner record: debris."""
    if owner is None:
        return True
    if owner.host != socket.gethostname():
        return run_ended(owner.run_id)
    for pid, started in owner.processes.items():
        now = _started(int(pid))
        if now is not None and (not started or not now or now == started):
            return False
    return True


# -- where the files are: this machine's filesystem, or Hadoop's FileSystem through the JVM --


class _LocalFiles:
    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def delete(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)

    def write_text(self, path: str, text: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        parent, name = os.path.split(pattern)
        if not os.path.isdir(parent):
            return []
        prefix = name.rstrip("*")
        return sorted(os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix))


class _HadoopFiles:
    """Hadoop's FileSystem for the output's scheme (hdfs, s3a, abfss, dbfs …), through Py4J.
    Rename is atomic on HDFS and local disks; on object stores it is a copy (not atomic)."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        self._jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
        conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        self._fs = self._path(uri).getFileSystem(conf)

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def rename(self, src: str, dst: str) -> None:
        if not self._fs.rename(self._path(src), self._path(dst)):
            raise OSError(f"cannot rename {src} to {dst}")

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def write_text(self, path: str, text: str) -> None:
        out = self._fs.create(self._path(path), True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def read_text(self, path: str) -> str | None:
        try:
            stream = self._fs.open(self._path(path))
        except Exception:
            return None
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def glob(self, pattern: str) -> list[str]:
        found = self._fs.globStatus(self._path(pattern))
        return sorted(str(s.getPath().toString()) for s in (found or []))


def is_local_path(output: str) -> bool:
    scheme = urlparse(output).scheme
    return not scheme or len(scheme) == 1 or scheme == "file"


def local_path(output: str) -> str:
    return urlparse(output).path if urlparse(output).scheme == "file" else output


def _files(spark: SparkSession, output: str) -> _LocalFiles | _HadoopFiles:
    return _LocalFiles() if is_local_path(output) else _HadoopFiles(spark, output)


def staging_name(output: str, run_id: str) -> str:
    return f"{output.rstrip('/')}{STAGING_INFIX}{run_id}"


def _stop_jobs(spark: SparkSession) -> None:
    """Cancel this application's jobs and wait (bounded) until none runs, so no task writes
    into a staging directory being removed."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        with contextlib.suppress(Exception):
            spark.interruptAll()
        return
    with contextlib.suppress(Exception):
        context = spark.sparkContext
        context.cancelAllJobs()
        deadline = time.monotonic() + JOBS_STOP_WAIT_S
        while context.statusTracker().getActiveJobsIds() and time.monotonic() < deadline:
            time.sleep(0.1)


# -- files --


def clean_stale_files(
    spark: SparkSession, output: str, run_ended: Callable[[str], bool]
) -> list[str]:
    """Remove the staging directories earlier writes to ``output`` left (their owner gone),
    restoring the previous output first where a kill fell between the two renames. What was
    done, one line each."""
    output = local_path(output).rstrip("/")
    files = _files(spark, output)
    done = []
    for staging in files.glob(f"{output}{STAGING_INFIX}*"):
        owner = Owner.from_json(files.read_text(f"{staging}/{OWNER_FILE}") or "")
        if not owner_gone(owner, run_ended):
            done.append(f"left {staging}: the predict writing it is still running")
            continue
        previous = f"{staging}/{PREVIOUS_DIR}"
        if not files.exists(output) and files.exists(previous):
            files.rename(previous, output)
            done.append(f"put the previous output back from {staging} (a predict was killed)")
        files.delete(staging)
        done.append(f"removed {staging}, left by a predict that did not finish")
    return done


def replace_files(
    spark: SparkSession,
    output: str,
    owner: Owner,
    write: Callable[[str], None],
    overwrite: bool,
) -> None:
    """``write(path)`` the new output into a staging directory beside ``output``, then swap
    it in; on any failure (a signal included) the staging directory is removed and
    ``output`` is as it was."""
    output = local_path(output).rstrip("/")
    files = _files(spark, output)
    staging = staging_name(output, owner.run_id)
    new, previous = f"{staging}/{NEW_DIR}", f"{staging}/{PREVIOUS_DIR}"
    files.delete(staging)  # this run's own, from an earlier attempt
    swapped = False
    try:
        files.write_text(f"{staging}/{OWNER_FILE}", owner.to_json())
        write(new)
        if files.exists(output):
            if not overwrite:  # created by someone else since the run checked
                raise UserError(
                    f"output {output} already exists; pass -P overwrite=true to replace it"
                )
            files.rename(output, previous)
        try:
            files.rename(new, output)
        except BaseException:
            if files.exists(previous) and not files.exists(output):
                files.rename(previous, output)
            raise
        swapped = True
    finally:
        if not swapped:
            _stop_jobs(spark)
        with contextlib.suppress(Exception):  # else the next write to ``output`` removes it
            files.delete(staging)


# -- tables --


def _split_table(table: str) -> tuple[str, str]:
    """``db.t`` -> ("db", "t"); ``cat.db.t`` -> ("cat.db", "t")."""
    prefix, _, name = table.rpartition(".")
    return prefix, name


def _table(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _owner_of_table(spark: SparkSession, table: str) -> Owner | None:
    with contextlib.suppress(Exception):
        rows = spark.sql(f"SHOW TBLPROPERTIES {table} ('{OWNER_PROPERTY}')").collect()
        return Owner.from_json(rows[0]["value"]) if rows else None
    return None


def _tables_like(spark: SparkSession, prefix: str, pattern: str) -> list[str]:
    rows = spark.sql(f"SHOW TABLES IN {prefix} LIKE '{pattern}'").collect()
    return sorted(_table(prefix, r["tableName"]) for r in rows if not r["isTemporary"])


def clean_stale_tables(
    spark: SparkSession, table: str, run_ended: Callable[[str], bool]
) -> list[str]:
    """Drop the staging tables earlier writes to ``table`` left (their owner gone), putting
    the previous table back if a kill fell between the two renames; and previous tables left
    after a finished swap. What was done, one line each."""
    prefix, name = _split_table(table)
    if not spark.catalog.databaseExists(prefix or "default"):
        return []
    done = []
    for staging in _tables_like(spark, prefix, f"{name}{TABLE_STAGING_INFIX}*"):
        if not owner_gone(_owner_of_table(spark, staging), run_ended):
            done.append(f"left {staging}: the predict writing it is still running")
            continue
        run_id = staging.rsplit(TABLE_STAGING_INFIX, 1)[1]
        previous = _table(prefix, f"{name}{TABLE_PREVIOUS_INFIX}{run_id}")
        if not spark.catalog.tableExists(table) and spark.catalog.tableExists(previous):
            spark.sql(f"ALTER TABLE {previous} RENAME TO {table}")
            done.append(f"put the previous table back from {previous} (a predict was killed)")
        spark.sql(f"DROP TABLE IF EXISTS {staging}")
        done.append(f"dropped {staging}, left by a predict that did not finish")
    for previous in _tables_like(spark, prefix, f"{name}{TABLE_PREVIOUS_INFIX}*"):
        run_id = previous.rsplit(TABLE_PREVIOUS_INFIX, 1)[1]
        staging = _table(prefix, f"{name}{TABLE_STAGING_INFIX}{run_id}")
        if spark.catalog.tableExists(table) and not spark.catalog.tableExists(staging):
            spark.sql(f"DROP TABLE IF EXISTS {previous}")
            done.append(f"dropped {previous}, replaced by a finished predict")
    return done


def _drop_staging_table(spark: SparkSession, staging: str) -> None:
    """Drop a staging table, and the files a failed write left under its name in the
    database's directory (the table is created only once its files are written)."""
    with contextlib.suppress(Exception):
        spark.sql(f"DROP TABLE IF EXISTS {staging}")
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return  # the server's filesystem is out of reach
    with contextlib.suppress(Exception):
        prefix, name = _split_table(staging)
        rows = spark.sql(f"DESCRIBE DATABASE EXTENDED {prefix or 'default'}").collect()
        location = next(r[1] for r in rows if r[0].lower() == "location")
        _HadoopFiles(spark, location).delete(f"{location.rstrip('/')}/{name.lower()}")


def replace_table(
    spark: SparkSession,
    table: str,
    owner: Owner,
    write: Callable[[str], None],
    overwrite: bool,
) -> None:
    """``write(name)`` the new table as ``<table>__staging_<run id>``, then rename it into
    place; on any failure the staging table is dropped and ``table`` is as it was."""
    prefix, name = _split_table(table)
    staging = _table(prefix, f"{name}{TABLE_STAGING_INFIX}{owner.run_id}")
    previous = _table(prefix, f"{name}{TABLE_PREVIOUS_INFIX}{owner.run_id}")
    _drop_staging_table(spark, staging)
    swapped = False
    try:
        write(staging)
        quoted = owner.to_json().replace("\\", "\\\\").replace("'", "\\'")
        spark.sql(f"ALTER TABLE {staging} SET TBLPROPERTIES ('{OWNER_PROPERTY}' = '{quoted}')")
        if spark.catalog.tableExists(table):
            if not overwrite:
                raise UserError(
                    f"output {table} already exists; pass -P overwrite=true to replace it"
                )
            spark.sql(f"ALTER TABLE {table} RENAME TO {previous}")
        try:
            spark.sql(f"ALTER TABLE {staging} RENAME TO {table}")
        except BaseException:
            if not spark.catalog.tableExists(table) and spark.catalog.tableExists(previous):
                spark.sql(f"ALTER TABLE {previous} RENAME TO {table}")
            raise
        swapped = True
        spark.sql(f"ALTER TABLE {table} UNSET TBLPROPERTIES IF EXISTS ('{OWNER_PROPERTY}')")
        spark.sql(f"DROP TABLE IF EXISTS {previous}")
    finally:
        if not swapped:
            _stop_jobs(spark)
            _drop_staging_table(spark, staging)
