"""Where a predict's rows go when it has no ``output``, and the driver-side staging used where
the executors cannot write into the run's artifact location (a cluster, Spark Connect): real
Spark, Parquet read back with pandas and compared value by value."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from sparkml_template.runtime import run_files
from sparkml_template.workflows import predict_results


@pytest.mark.parametrize(
    ("artifact_uri", "expected"),
    [
        ("s3://bucket/mlruns/1/abc/artifacts", "s3a://bucket/mlruns/1/abc/artifacts/predictions"),
        ("gs://bucket/x", "gs://bucket/x/predictions"),
        ("hdfs://nn:8020/mlruns/2/", "hdfs://nn:8020/mlruns/2/predictions"),
        ("dbfs:/Volumes/main/ml/runs/abc", "dbfs:/Volumes/main/ml/runs/abc/predictions"),
        ("dbfs:/databricks/mlflow-tracking/123/abc/artifacts", None),  # managed: MLflow's API
        ("mlflow-artifacts:/1/abc/artifacts", None),  # a tracking server's proxy: HTTP only
        ("https://host/artifacts", None),
    ],
)
def test_where_the_executors_can_write_under_the_run(spark, artifact_uri, expected):
    assert run_files.spark_uri_under_run(spark, artifact_uri, "predictions") == expected


def test_a_local_store_is_written_directly_only_by_local_executors(spark, tmp_path):
    assert run_files.is_local_master(spark)  # the tests' session is local[2]
    for uri in (tmp_path.as_uri(), str(tmp_path)):
        direct = run_files.spark_uri_under_run(spark, uri, "predictions")
        assert direct == (tmp_path / "predictions").as_uri()


def _frame(spark, rows: int):
    from pyspark.sql import functions as F

    return spark.range(rows, numPartitions=4).select(
        F.col("id"),
        F.when(F.col("id") % 7 == 0, F.lit(None)).otherwise(F.col("id") * 0.5).alias("x"),
        F.when(F.col("id") % 5 == 0, F.lit(None))
        .otherwise(F.concat(F.lit("c"), F.col("id")))
        .alias("category"),
        F.array(F.col("id") / 10.0, 1 - F.col("id") / 10.0).alias("probability"),
        F.lit(dt.datetime(2026, 12, 3, 16, 0, tzinfo=dt.UTC)).cast("timestamp").alias("at"),
    )


def test_staging_on_the_driver_writes_every_row_in_bounded_files(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_results, "ROWS_PER_FILE", 300)
    monkeypatch.setattr(predict_results, "BATCH_ROWS", 70)
    frame = _frame(spark, 1000)
    rows = predict_results.stream_to_parquet(frame, tmp_path / "out")
    assert rows == 1000
    files = sorted((tmp_path / "out").glob("*.parquet"))
    assert len(files) == 4  # 300 + 300 + 300 + 100
    assert [len(pd.read_parquet(f)) for f in files] == [300, 300, 300, 100]

    written = pd.read_parquet(tmp_path / "out").sort_values("id").reset_index(drop=True)
    expected = frame.toPandas().sort_values("id").reset_index(drop=True)
    assert list(written.columns) == list(expected.columns)
    pd.testing.assert_series_equal(written["x"], expected["x"])
    assert written["category"].isna().sum() == expected["category"].isna().sum() == 200
    assert [list(p) for p in written["probability"]] == [list(p) for p in expected["probability"]]
    assert written["at"].dt.tz is not None  # an instant, as Spark's timestamp is


def test_staging_an_empty_result_still_gives_a_readable_file(spark, tmp_path):
    frame = _frame(spark, 10).limit(0)
    assert predict_results.stream_to_parquet(frame, tmp_path / "none") == 0
    empty = pd.read_parquet(tmp_path / "none")
    assert len(empty) == 0 and list(empty.columns) == frame.columns


def test_staged_timestamps_are_the_same_instants_in_any_local_time_zone(spark, tmp_path):
    """PySpark hands the driver naive local datetimes; staged Parquet must hold the instant."""
    import os
    import time

    frame = _frame(spark, 3)
    expected = frame.select("at").first()["at"].astimezone(dt.UTC)
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        predict_results.stream_to_parquet(frame, tmp_path / "tz")
    finally:
        if old is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = old
        time.tzset()
    written = pd.read_parquet(tmp_path / "tz")["at"]
    assert set(written) == {pd.Timestamp(expected)}
