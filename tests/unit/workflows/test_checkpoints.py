"""A long tree or GBT fit checkpoints under the run and its checkpoints are removed afterwards
(workflows/checkpoints.py): real fits on the shared local session, with the row threshold set
low through its environment variable."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from sparkml_template.workflows import checkpoints
from sparkml_template.workflows.checkpoints import (
    DEFAULT_MIN_ROWS,
    MIN_ROWS_ENV,
    fit_checkpoints,
    min_rows,
    off_reason,
)
from sparkml_template.workflows.train import CHECKPOINTS_TAG, checkpoint_record

ROWS = 600
FAST_POLL_S = 0.01  # the fits here are short: sample often enough to see their files


def _path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _files(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.rglob("*") if p.is_file()]
    except FileNotFoundError:  # not there yet, or removed while listing
        return []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # Spark deleted an older checkpoint meanwhile
        return 0


@pytest.fixture(scope="module")
def data(spark):
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    frame = (
        spark.range(ROWS)
        .select(F.rand(1).alias("a"), F.rand(2).alias("b"), F.rand(3).alias("c"))
        .withColumn("label", (F.col("a") + F.col("b") > 1.0).cast("double"))
    )
    return VectorAssembler(inputCols=["a", "b", "c"], outputCol="features").transform(frame).cache()


def _pipeline(estimator):
    from pyspark.ml import Pipeline

    return Pipeline(stages=[estimator])


def _gbt(**params):
    from pyspark.ml.classification import GBTClassifier

    return GBTClassifier(maxDepth=2, seed=5, **params)


@pytest.fixture
def artifact_uri(tmp_path) -> str:
    return (tmp_path / "artifacts").as_uri()


@pytest.fixture
def low_threshold(monkeypatch):
    monkeypatch.setenv(MIN_ROWS_ENV, "100")


@pytest.fixture
def context_dir(spark):
    """The SparkContext's checkpoint directory, put back as it was after the test."""
    sc = spark.sparkContext
    before = sc.getCheckpointDir()
    yield sc
    checkpoints._restore(sc, before)


def test_gbt_checkpoints_under_the_run_and_removes_them(
    spark, data, artifact_uri, low_threshold, context_dir, tmp_path
):
    context_dir.setCheckpointDir(str(tmp_path / "previous"))
    previous = context_dir.getCheckpointDir()
    pipeline = _pipeline(_gbt(maxIter=12, checkpointInterval=2))

    with fit_checkpoints(spark, pipeline, ROWS, artifact_uri, poll_s=FAST_POLL_S) as record:
        assert _path(context_dir.getCheckpointDir()).parent == _path(record.uri)
        model = record.pipeline.fit(data)

    assert record.used and record.applies and record.interval == 2
    assert record.uri.startswith(f"{artifact_uri}/checkpoints/")
    assert record.peak_files > 0 and record.peak_bytes > 0  # Spark really wrote checkpoints
    assert record.removed
    assert not _path(record.uri).exists()
    assert not (_path(artifact_uri) / "checkpoints").exists()  # no empty folder in the run
    assert context_dir.getCheckpointDir() == previous
    assert model.transform(data).count() == ROWS
    assert record.describe().startswith(f"removed {record.removed_files} files (")
    tags, metrics = checkpoint_record(record)
    assert tags == {CHECKPOINTS_TAG: record.describe()}
    assert metrics["spark/checkpoint_files_peak"] == record.peak_files


def test_random_forest_caches_node_ids_so_that_it_checkpoints(
    spark, data, artifact_uri, low_threshold, context_dir
):
    from pyspark.ml.classification import RandomForestClassifier

    checkpoints._restore(context_dir, None)  # a SparkContext without a checkpoint directory
    forest = RandomForestClassifier(numTrees=4, maxDepth=6, checkpointInterval=1, seed=5)
    pipeline = _pipeline(forest)

    with fit_checkpoints(spark, pipeline, ROWS, artifact_uri, poll_s=FAST_POLL_S) as record:
        fitted_with = checkpoints.final_estimator(record.pipeline)
        record.pipeline.fit(data)

    assert fitted_with.getOrDefault("cacheNodeIds") is True
    assert forest.getOrDefault("cacheNodeIds") is False  # the caller's pipeline is unchanged
    assert record.used and record.peak_files > 0
    assert record.removed and not _path(record.uri).exists()
    assert context_dir.getCheckpointDir() is None


def test_a_failed_fit_still_removes_what_spark_left(
    spark, data, artifact_uri, low_threshold, context_dir
):
    """A fit cancelled once its checkpoints exist: Spark leaves them; they are removed."""
    before = context_dir.getCheckpointDir()
    pipeline = _pipeline(_gbt(maxIter=500, checkpointInterval=1))
    fit_over = threading.Event()
    seen: list[int] = []

    def cancel_once_written(where: Path) -> None:
        """Cancel every job once a checkpoint partition is complete (``part-*``; Spark writes
        it as ``.part-*-attempt-*`` first and deletes that when its task is killed)."""
        deadline = time.monotonic() + 120
        while not fit_over.is_set() and time.monotonic() < deadline:
            done = [f for f in _files(where) if f.name.startswith("part-") and _size(f)]
            if done and not seen:
                seen.append(len(done))
            if seen:
                context_dir.cancelAllJobs()
            time.sleep(0.02)

    with (
        pytest.raises(Exception, match="cancel"),
        fit_checkpoints(spark, pipeline, ROWS, artifact_uri, poll_s=FAST_POLL_S) as record,
    ):
        canceller = threading.Thread(target=cancel_once_written, args=(_path(record.uri),))
        canceller.start()
        try:
            record.pipeline.fit(data)
        finally:
            fit_over.set()
            canceller.join()

    assert seen, "no checkpoint file appeared before the fit ended"
    assert record.removed_files > 0 and record.removed_bytes > 0
    assert record.removed and not _path(record.uri).exists()
    assert context_dir.getCheckpointDir() == before


def test_no_checkpoints_below_the_threshold(spark, data, artifact_uri, context_dir, monkeypatch):
    monkeypatch.delenv(MIN_ROWS_ENV, raising=False)
    before = context_dir.getCheckpointDir()
    pipeline = _pipeline(_gbt(maxIter=4, checkpointInterval=1))

    with fit_checkpoints(spark, pipeline, ROWS, artifact_uri) as record:
        assert context_dir.getCheckpointDir() == before
        record.pipeline.fit(data)

    assert record.applies and not record.used
    assert record.reason == (
        f"off: about {ROWS} training rows, fewer than {MIN_ROWS_ENV}={DEFAULT_MIN_ROWS}"
    )
    assert record.pipeline is pipeline
    assert not _path(artifact_uri).exists()
    assert checkpoint_record(record) == ({CHECKPOINTS_TAG: record.reason}, {})


def test_logistic_regression_is_left_alone(spark, data, artifact_uri, low_threshold, context_dir):
    from pyspark.ml.classification import LogisticRegression

    before = context_dir.getCheckpointDir()
    pipeline = _pipeline(LogisticRegression(maxIter=5))

    with fit_checkpoints(spark, pipeline, ROWS, artifact_uri) as record:
        assert context_dir.getCheckpointDir() == before
        record.pipeline.fit(data)

    assert not record.applies and not record.used
    assert record.pipeline is pipeline
    assert not _path(artifact_uri).exists()
    assert checkpoint_record(record) == ({}, {})  # a default run logs nothing new


def test_a_bare_fit_never_checkpoints(spark, data, low_threshold, context_dir):
    before = context_dir.getCheckpointDir()
    with fit_checkpoints(spark, _pipeline(_gbt(maxIter=2)), ROWS, None) as record:
        assert context_dir.getCheckpointDir() == before
    assert not record.applies


def test_a_store_is_counted_and_emptied_through_hadoop(spark, tmp_path):
    """The branch for s3a, gs, hdfs…: Hadoop's FileSystem API, here on its local one."""
    sc = spark.sparkContext
    folder = tmp_path / "checkpoints"
    mine, other = folder / "ab12cd34", folder / "ef56ab78"
    (mine / "rdd-3").mkdir(parents=True)
    (mine / "rdd-3" / "part-00000").write_bytes(b"x" * 100)
    (mine / "rdd-3" / "part-00001").write_bytes(b"y" * 50)
    other.mkdir()

    assert checkpoints._measure_store(sc, mine.as_uri()) == (2, 150)
    assert checkpoints._remove_from_store(sc, mine.as_uri())
    assert not mine.exists() and other.exists()  # another fit's folder is kept, so is the parent
    assert checkpoints._measure_store(sc, mine.as_uri()) == (0, 0)
    assert checkpoints._remove_from_store(sc, other.as_uri())
    assert not folder.exists()  # the last one out removes the run's empty checkpoints folder


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (812, "812 B"), (7_532, "7.5 kB"), (1_250_000, "1.2 MB"),
     (3_400_000_000, "3.4 GB")],
)  # fmt: skip
def test_sizes_read_as_people_say_them(size, text):
    assert checkpoints._size(size) == text


def test_why_not():
    assert off_reason(ROWS, 100, 10, connect=False) is None
    assert off_reason(ROWS, 100, -1, connect=False) == "off: checkpointInterval=-1 on the estimator"
    assert off_reason(99, 100, 10, connect=False).startswith("off: about 99 training rows")
    assert off_reason(ROWS, 100, 10, connect=True).startswith("off: Spark Connect (")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", DEFAULT_MIN_ROWS), ("5", 5), ("0", 0), (" 2_000 ", 2000), ("-3", DEFAULT_MIN_ROWS),
     ("many", DEFAULT_MIN_ROWS)],
)  # fmt: skip
def test_threshold_from_the_environment(raw, expected):
    assert min_rows({MIN_ROWS_ENV: raw}) == expected
    assert min_rows({}) == DEFAULT_MIN_ROWS


@pytest.mark.slow
def test_train_logs_what_the_checkpoints_did(spark, tmp_path, monkeypatch):
    """``train`` with gbt (checkpointInterval 10, 12 iterations): the tag, the metrics, and
    nothing left in the run's artifacts."""
    from lifecycle_support import module_tracking, newest_run, run_script

    monkeypatch.setenv(MIN_ROWS_ENV, "1")
    with module_tracking(tmp_path) as store:
        code = run_script("train", "--master", "local[2]", "--estimator", "gbt", "--maxIter", "12")
        run = newest_run(store)
        assert code == 0, run.data.tags.get("sparkml_template.error")
        top_level = {a.path for a in store.client().list_artifacts(run.info.run_id)}

    tag = run.data.tags[CHECKPOINTS_TAG]
    assert tag.startswith("removed ") and f"{run.info.run_id}/artifacts/checkpoints/" in tag
    assert "every 10 iterations" in tag
    assert {"spark/checkpoint_files_peak", "spark/checkpoint_files_removed"} <= set(
        run.data.metrics
    )
    assert "checkpoints" not in top_level
