"""``tune``'s search, one grid point at a time: each point is fitted on the folds Spark's
CrossValidator (or TrainValidationSplit) would make from the same data and seed, scored the way
it scores, and logged as its own child run the moment it finishes, tagged with a hash of its
parameters. A search that is stopped keeps every point it finished; ``tune_resume`` skips them.

The folds are drawn once (``rand(seed)`` over the training split, as Spark's validators draw
them) and kept in memory; every point filters the same cached rows, so its metric equals the
one CrossValidator computes for it (tests/unit/workflows/test_tune.py compares the two).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkml_template.runtime import tracking
from sparkml_template.runtime.job_tags import add_job_tag, cancel_jobs_with_tag, remove_job_tag

if TYPE_CHECKING:
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import Evaluator
    from pyspark.sql import DataFrame, SparkSession

PARENT_TAG = "mlflow.parentRunId"
POINT_HASH_TAG = "tuning.point_hash"  # sha256 of the point's typed parameters (sorted JSON)
POINT_INDEX_TAG = "tuning.point_index"  # its place in the grid's order
FOLD_DRAW = "_tune_fold_draw"  # the per-row draw that assigns folds (rand(seed))
TRAIN_RATIO = 0.75  # TrainValidationSplit's default trainRatio
JOB_TAG_PREFIX = "sparkml-tune-"  # the search's Spark jobs, cancelled together on a stop


def point_hash(values: Mapping[str, Any]) -> str:
    """The same hex digest in every process for the same typed values (ints stay ints)."""
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class GridPoint:
    """One combination of the grid: its values, Spark's param map, and its hash."""

    index: int
    values: dict[str, float]  # the grid's values, as the results table and child params show
    param_map: Any  # {Spark Param: typed value} for the pipeline's estimator stage
    digest: str  # point_hash of every hyper-parameter the point is fitted with

    @property
    def name(self) -> str:
        return " ".join(f"{k}={v:g}" for k, v in self.values.items())


@dataclass
class Folds:
    """The (train, validation) pairs of the search, filtered from one cached draw."""

    source: DataFrame
    pairs: list[tuple[DataFrame, DataFrame]]

    def release(self) -> None:
        self.source.unpersist()


def make_folds(train: DataFrame, num_folds: int, seed: int) -> Folds:
    """CrossValidator's folds (``numFolds`` >= 2) or TrainValidationSplit's split (1).

    The same draw and bounds as ``CrossValidator._kFold``: ``rand(seed)`` per row, fold i the
    rows in [i/k, (i+1)/k). Cached once (CrossValidator caches each fold while it is scored).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    source = train.select("*", F.rand(seed).alias(FOLD_DRAW)).persist(
        StorageLevel.MEMORY_AND_DISK_DESER
    )
    draw = F.col(FOLD_DRAW)
    if num_folds == 1:
        held_out = draw >= TRAIN_RATIO
        return Folds(source, [(source.filter(~held_out), source.filter(held_out))])
    width = 1.0 / num_folds
    pairs = []
    for i in range(num_folds):
        held_out = (draw >= i * width) & (draw < (i + 1) * width)
        pairs.append((source.filter(~held_out), source.filter(held_out)))
    return Folds(source, pairs)


def fold_scores(
    pipeline: Pipeline, evaluator: Evaluator, folds: Folds, point: GridPoint, stop: threading.Event
) -> list[float]:
    """The point's metric on every fold, fitted and scored as CrossValidator does."""
    scores = []
    for train, validation in folds.pairs:
        if stop.is_set():
            raise _Stopped
        model = pipeline.fit(train, point.param_map)
        scores.append(float(evaluator.evaluate(model.transform(validation, point.param_map))))
    return scores


def summarise(scores: list[float], metric: str, cross_validated: bool) -> dict[str, float]:
    """The point's metrics: CrossValidator's mean and std over folds (computed as it computes
    them, numpy over a folds x 1 table), or the one validation score."""
    import numpy as np

    if not cross_validated:
        return {metric: scores[0]}
    table = np.array([[s] for s in scores])
    return {
        metric: float(np.mean(table, axis=0)[0]),
        f"{metric}_std": float(np.std(table, axis=0)[0]),
    }


class _Stopped(Exception):
    """The search is stopping (interrupt or a failed point): this point is left KILLED."""


@dataclass
class PointSearch:
    """Fit ``parallelism`` points at a time; each is a child run of ``parent_id`` from its
    start (RUNNING) to its end (FINISHED with its metrics, FAILED, or KILLED when stopped)."""

    spark: SparkSession
    experiment_id: str
    parent_id: str
    metric: str
    cross_validated: bool
    score: Callable[[GridPoint, threading.Event], list[float]]
    parallelism: int
    rows: dict[int, dict[str, float]] = field(default_factory=dict)
    child_ids: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: dict[int, str] = field(default_factory=dict)

    def run(self, points: list[GridPoint], on_done: Callable[[GridPoint], None]) -> None:
        """Search ``points``; on an interrupt or a failed point, cancel the others' Spark jobs,
        end their child runs KILLED and re-raise."""
        if not points:
            return
        job_tag = f"{JOB_TAG_PREFIX}{self.parent_id}"
        pool = ThreadPoolExecutor(max_workers=min(self.parallelism, len(points)))
        futures: list[Future[None]] = []
        try:
            for point in points:
                futures.append(pool.submit(self._in_thread(job_tag, point, on_done)))
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # a point's failure, raised here
        except BaseException:
            self._stop_all(job_tag)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _in_thread(
        self, job_tag: str, point: GridPoint, on_done: Callable[[GridPoint], None]
    ) -> Callable[[], None]:
        """The point's work, carrying this thread's Spark properties (the run's job tag, which
        the task capture reads) plus the search's own tag, as CrossValidator's threads do."""
        from pyspark.util import inheritable_thread_target

        add_job_tag(self.spark, job_tag)
        try:
            target = inheritable_thread_target(self.spark)(lambda: self._one(point, on_done))
        finally:
            remove_job_tag(self.spark, job_tag)
        return target

    def _one(self, point: GridPoint, on_done: Callable[[GridPoint], None]) -> None:
        from mlflow.tracking import MlflowClient

        with self._lock:
            if self._stop.is_set():
                return
            child = MlflowClient().create_run(
                self.experiment_id,
                run_name=point.name,
                tags={
                    PARENT_TAG: self.parent_id,
                    POINT_HASH_TAG: point.digest,
                    POINT_INDEX_TAG: str(point.index),
                },
            )
            child_id = child.info.run_id
            self._running[point.index] = child_id
        tracking.log_batch(child_id, params=point.values)
        try:
            scores = self.score(point, self._stop)
        except BaseException:
            with self._lock:
                if self._running.pop(point.index, None) is not None:
                    status = "KILLED" if self._stop.is_set() else "FAILED"
                    MlflowClient().set_terminated(child_id, status)
            raise
        metrics = summarise(scores, self.metric, self.cross_validated)
        with self._lock:
            if self._running.pop(point.index, None) is None:  # ended KILLED by a stop
                return
            tracking.log_series(child_id, {f"{self.metric}_fold": scores})
            tracking.log_batch(child_id, metrics=metrics)
            MlflowClient().set_terminated(child_id, "FINISHED")  # last: FINISHED means complete
            self.rows[point.index] = {**point.values, **metrics}
            self.child_ids[point.index] = child_id
        on_done(point)

    def _stop_all(self, job_tag: str) -> None:
        """Stop new points, cancel the running ones' Spark jobs, end their child runs KILLED.
        Never raises: the interrupt or failure being handled is what the user must see."""
        from mlflow.tracking import MlflowClient

        with self._lock:
            self._stop.set()
            running, self._running = dict(self._running), {}
        with contextlib.suppress(Exception):  # the driver may be gone: nothing left to cancel
            cancel_jobs_with_tag(self.spark, job_tag)
        for child_id in running.values():
            # the store may be what failed; a resume re-runs the point anyway
            with contextlib.suppress(Exception):
                MlflowClient().set_terminated(child_id, "KILLED")
