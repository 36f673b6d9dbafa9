"""Checkpoints of a long tree, random forest or GBT fit, under the MLflow run, removed afterwards.

Spark ML's tree estimators checkpoint every ``checkpointInterval`` iterations once the
SparkContext has a checkpoint directory: GBT its predictions and errors, a tree or forest its
node-id cache (only with ``cacheNodeIds=True``, which is set here on the fit's copy of the
estimator). That truncates the lineage of a long fit: a lost executor recomputes from the last
checkpoint instead of from the first iteration, and a deep lineage cannot overflow the stack.
The checkpoints cannot resume a fit. Spark deletes them itself when a fit succeeds; what a
failed fit leaves, and the directory, are removed here whatever happened.

Only a training set of at least ``DEFAULT_MIN_ROWS`` rows (``SPARKML_CHECKPOINT_MIN_ROWS``)
is checkpointed, on a classic session (over Spark Connect the client cannot set the server's
checkpoint directory), in the run's artifact location when Spark's executors can write there,
else in a temporary directory when they are this process's own (``local[*]``), else not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from sparkml_template.errors import first_line
from sparkml_template.runtime.run_files import is_local_master, spark_uri_under_run
from sparkml_template.runtime.session import is_connect_session

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.ml import Estimator, Pipeline
    from pyspark.sql import SparkSession

MIN_ROWS_ENV = "SPARKML_CHECKPOINT_MIN_ROWS"
# A checkpoint writes the state of every training row to storage each ``checkpointInterval``
# iterations. Below about a million rows that is cost without benefit: recomputing a lost
# partition from the first iteration is cheap and the lineage stays short. At a million rows
# and above a recomputation of every iteration is what makes a long fit slow or fail.
DEFAULT_MIN_ROWS = 1_000_000
ARTIFACT_DIR = "checkpoints"  # the run's artifact folder the checkpoints are written in
LOCAL_POLL_S = 0.5  # how often the files are counted while fitting: a local directory
REMOTE_POLL_S = 10.0  # a store (one listing a poll)


def min_rows(env: Mapping[str, str] | None = None) -> int:
    """The fewest training rows that are checkpointed (``SPARKML_CHECKPOINT_MIN_ROWS``; a value
    that is not a whole number >= 0 keeps the default)."""
    raw = (os.environ if env is None else env).get(MIN_ROWS_ENV, "")
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        return DEFAULT_MIN_ROWS
    return value if value >= 0 else DEFAULT_MIN_ROWS


def final_estimator(pipeline: Pipeline) -> Estimator | None:
    """The pipeline's last estimator stage: the model's (label indexers and encoders come first)."""
    from pyspark.ml import Estimator

    return next((s for s in reversed(pipeline.getStages()) if isinstance(s, Estimator)), None)


def takes_checkpoints(estimator: Estimator | None) -> bool:
    """Spark's own Param says so: trees, forests and GBT (classification and regression)."""
    from pyspark.ml.param.shared import HasCheckpointInterval

    return isinstance(estimator, HasCheckpointInterval)


def needs_node_id_cache(estimator: Estimator) -> bool:
    """A tree or forest checkpoints only its node-id cache; GBT checkpoints its predictions
    without one (and the cache would only add memory to each of its trees)."""
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.regression import GBTRegressor

    return estimator.hasParam("cacheNodeIds") and not isinstance(
        estimator, GBTClassifier | GBTRegressor
    )


def off_reason(rows: int, threshold: int, interval: int, connect: bool) -> str | None:
    """Why a checkpointable fit is not checkpointed, or ``None`` when it is (if it can write)."""
    if interval == -1:
        return "off: checkpointInterval=-1 on the estimator"
    if rows < threshold:
        return f"off: about {rows} training rows, fewer than {MIN_ROWS_ENV}={threshold}"
    if connect:
        return (
            "off: Spark Connect (the client cannot set the server's checkpoint directory; "
            "the server's own spark.checkpoint.dir applies if it has one)"
        )
    return None


@dataclass
class FitCheckpoints:
    """What happened to one fit's checkpoints. ``pipeline`` is what to fit (a copy with
    ``cacheNodeIds`` set when a tree or forest checkpoints)."""

    pipeline: Pipeline
    applies: bool = False  # the estimator takes checkpointInterval and there is a run
    used: bool = False  # the SparkContext had ``uri`` as its checkpoint dir during the fit
    reason: str = ""  # why not, when not used
    uri: str | None = None
    interval: int = 0
    peak_files: int = 0  # the most files (and bytes) seen at once while fitting, sampled
    peak_bytes: int = 0
    removed_files: int = 0  # what was left when the fit ended, removed
    removed_bytes: int = 0
    removed: bool = False  # the directory is gone

    def describe(self) -> str:
        """ "removed 4 files (1.2 MB) from <uri>; …" or "off: <reason>"."""
        if not self.used:
            return self.reason
        removed = "removed" if self.removed else "could not remove"
        return (
            f"{removed} {self.removed_files} files ({_size(self.removed_bytes)}) from {self.uri}; "
            f"every {self.interval} iterations, at most {self.peak_files} files "
            f"({_size(self.peak_bytes)}) at once while fitting"
        )


def _size(size: int) -> str:
    """ "812 B", "7.5 kB", "1.2 MB", "3.4 GB"."""
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if size < scale * 1000:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e9:.1f} GB"


@contextlib.contextmanager
def fit_checkpoints(
    spark: SparkSession,
    pipeline: Pipeline,
    rows: int,
    artifact_uri: str | None,
    *,
    poll_s: float | None = None,
) -> Iterator[FitCheckpoints]:
    """Around the fit of ``pipeline`` (on about ``rows`` training rows) in a run whose
    artifacts are at ``artifact_uri`` (``None``: a bare fit, never checkpointed): checkpoint
    when it is worth it, then remove the checkpoints and put back the SparkContext's previous
    checkpoint directory, on success and on failure. Fit the yielded record's ``pipeline``.
    Nothing here fails the fit: what goes wrong is one ``note:`` line on stderr."""
    estimator = final_estimator(pipeline)
    record = FitCheckpoints(pipeline)
    if artifact_uri is None or estimator is None or not takes_checkpoints(estimator):
        yield record
        return
    record.applies = True
    record.interval = int(estimator.getOrDefault("checkpointInterval"))
    reason = off_reason(rows, min_rows(), record.interval, is_connect_session(spark))
    location = None if reason else _location(spark, artifact_uri)
    if location is None:
        record.reason = reason or (
            "off: Spark's executors cannot write under the run's artifact location "
            f"({artifact_uri}) and are not this process's own: no shared store to write to"
        )
        yield record
        return
    sc = spark.sparkContext
    previous = sc.getCheckpointDir()
    try:
        sc.setCheckpointDir(location)
    except Exception as exc:  # a store that refuses the directory: fit without checkpoints
        _note(f"could not checkpoint the fit under {location}: {first_line(exc)}")
        _restore(sc, previous)
        _remove(sc, location)
        record.reason = f"off: could not create {location}"
        yield record
        return
    record.used, record.uri = True, location
    record.pipeline = _for_checkpoints(pipeline)
    watch = _Watch(sc, location, poll_s)
    try:
        yield record
    finally:
        record.peak_files, record.peak_bytes = watch.stop()
        _restore(sc, previous)
        record.removed_files, record.removed_bytes, record.removed = _remove(sc, location)


def _location(spark: SparkSession, artifact_uri: str) -> str | None:
    """Under the run's artifacts when the executors can write there; a temporary directory
    when they are this process's own; else ``None``."""
    name = f"{ARTIFACT_DIR}/{uuid.uuid4().hex[:8]}"  # two fits in one run never share one
    under_run = spark_uri_under_run(spark, artifact_uri, name)
    if under_run is not None:
        return under_run
    if is_local_master(spark):
        return Path(tempfile.mkdtemp(prefix="sparkml-checkpoints-")).as_uri()
    return None


def _for_checkpoints(pipeline: Pipeline) -> Pipeline:
    """A copy of the pipeline whose tree or forest caches node ids, so that it checkpoints."""
    estimator = final_estimator(pipeline)
    if estimator is None or not needs_node_id_cache(estimator):
        return pipeline
    copy = pipeline.copy()
    copied = final_estimator(copy)
    copied.set(copied.getParam("cacheNodeIds"), True)
    return copy


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _measure(sc: SparkContext, uri: str) -> tuple[int, int]:
    """(files, bytes) under ``uri``; (0, 0) when it does not exist."""
    local = _local_path(uri)
    if local is None:
        return _measure_store(sc, uri)
    files = size = 0
    for root, _, names in os.walk(local):
        for name in names:
            with contextlib.suppress(OSError):  # deleted by Spark between walk and stat
                size += (Path(root) / name).stat().st_size
                files += 1
    return files, size


def _remove(sc: SparkContext, uri: str) -> tuple[int, int, bool]:
    """Delete ``uri`` and, when left empty, its parent (the run's ``checkpoints`` folder):
    (files, bytes, removed). Never raises."""
    files = size = 0
    try:
        files, size = _measure(sc, uri)
        local = _local_path(uri)
        if local is None:
            return files, size, _remove_from_store(sc, uri)
        shutil.rmtree(local, ignore_errors=True)
        if local.parent.name == ARTIFACT_DIR:
            with contextlib.suppress(OSError):  # not empty: another fit's checkpoints
                local.parent.rmdir()
        return files, size, not local.exists()
    except Exception as exc:  # the run's result stands; the files are only clutter
        _note(f"could not remove the fit's checkpoints at {uri}: {first_line(exc)}")
        return files, size, False


def _hadoop_path(sc: SparkContext, uri: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Path) of ``uri``: the store as Spark's executors see it."""
    path = sc._jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(sc._jsc.hadoopConfiguration()), path


def _measure_store(sc: SparkContext, uri: str) -> tuple[int, int]:
    fs, path = _hadoop_path(sc, uri)
    if not fs.exists(path):
        return 0, 0
    summary = fs.getContentSummary(path)
    return int(summary.getFileCount()), int(summary.getLength())


def _remove_from_store(sc: SparkContext, uri: str) -> bool:
    """Delete ``uri`` through Hadoop's FileSystem, and its parent when that is the run's
    ``checkpoints`` folder and now empty; whether ``uri`` is gone."""
    fs, path = _hadoop_path(sc, uri)
    fs.delete(path, True)
    parent = path.getParent()
    if parent.getName() == ARTIFACT_DIR and fs.exists(parent) and not fs.listStatus(parent):
        fs.delete(parent, False)
    return not fs.exists(path)


def _restore(sc: SparkContext, previous: str | None) -> None:
    """Put back the checkpoint directory the SparkContext had (or none).

    ``setCheckpointDir`` would make a new directory inside ``previous`` and cannot unset it on
    a cluster, so the SparkContext's own field is set back as it was; should that Spark
    internal move, the public call keeps checkpoints out of the removed directory."""
    try:
        jvm = sc._jvm
        getattr(sc._jsc.sc(), "checkpointDir_$eq")(jvm.scala.Option.apply(previous))
    except Exception:
        try:
            sc.setCheckpointDir(previous)
        except Exception as exc:
            _note(f"could not put back the checkpoint directory {previous}: {first_line(exc)}")


def _note(line: str) -> None:
    print(f"note: {line}", file=sys.stderr)


class _Watch:
    """Counts the checkpoint files while the fit runs, in a thread: Spark deletes them when a
    fit succeeds, so what is left at the end does not say what was written."""

    def __init__(self, sc: SparkContext, uri: str, poll_s: float | None) -> None:
        self.sc, self.uri = sc, uri
        self.poll_s = poll_s or (LOCAL_POLL_S if _local_path(uri) else REMOTE_POLL_S)
        self.files = self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparkml-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._sample()

    def _sample(self) -> None:
        try:
            files, size = _measure(self.sc, self.uri)
        except Exception:  # a listing that failed says nothing; the next one may
            return
        self.files, self.bytes = max(self.files, files), max(self.bytes, size)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join(timeout=max(self.poll_s, 30.0))
        self._sample()  # what a failed fit left
        return self.files, self.bytes
