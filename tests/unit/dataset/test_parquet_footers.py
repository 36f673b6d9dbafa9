"""Validation from Parquet footers gives what the validation job gives, or steps aside.

Each comparison profiles the same files twice: as a bare scan (footers) and behind a no-op
filter, which the footers refuse, so the validation job counts the same partitions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime

import pytest
from pyspark.sql import functions as F

from sparkml_template.contract.dataset import COUNTED_FROM_FOOTERS, COUNTED_FROM_JOB
from sparkml_template.dataset.validation import profile_dataset
from sparkml_template.errors import UserError
from sparkml_template.observability.partitions import data_partitions


@contextlib.contextmanager
def _small_splits(spark, max_bytes: int):
    """Smaller file splits, so one file is read by several partitions."""
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, str(max_bytes))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _rows(n: int) -> list[tuple]:
    day = datetime.date(2024, 1, 1)
    return [
        (
            float(i % 97) if i % 13 else None,  # nulls in a double feature
            i % 7 if i % 11 else None,  # nulls in an integer feature
            day + datetime.timedelta(days=i % 400) if i % 17 else None,
            i * 0.37 + 1.5,  # a fractional label
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def parquet_dir(spark, tmp_path_factory):
    """A directory of two files of 12 row groups each (written by pyarrow, as pandas does)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("footers") / "data.parquet"
    path.mkdir()
    rows = _rows(30_000)
    schema = pa.schema([("x", pa.float64()), ("k", pa.int32()), ("d", pa.date32()),
                        ("y", pa.float64())])  # fmt: skip
    for part, chunk in enumerate((rows[:15_000], rows[15_000:])):
        table = pa.Table.from_pylist(
            [dict(zip(schema.names, r, strict=True)) for r in chunk], schema
        )
        pq.write_table(table, path / f"part-{part}.parquet", row_group_size=1250)
    assert pq.ParquetFile(path / "part-0.parquet").metadata.num_row_groups == 12
    return str(path)


def _same_as_the_job(spark, path: str, **kwargs):
    df = spark.read.parquet(path)
    footers = profile_dataset(df, "y", **kwargs)
    job = profile_dataset(df.where(F.lit(True)), "y", **kwargs)
    assert footers.counted_from == COUNTED_FROM_FOOTERS
    assert job.counted_from == COUNTED_FROM_JOB
    assert dataclasses.replace(footers, counted_from=COUNTED_FROM_JOB) == job
    assert data_partitions(footers) == data_partitions(job)
    return footers


@pytest.mark.parametrize("task", ["regression", "auto"])
def test_footers_count_what_the_job_counts_per_partition(spark, parquet_dir, task):
    profile = _same_as_the_job(spark, parquet_dir, task=task)
    assert profile.rows == 30_000 and profile.task == "regression"
    assert profile.columns_with_nulls(["x", "k", "d"]) == ["x", "k", "d"]


def test_several_partitions_per_file_read_the_row_groups_spark_reads(spark, parquet_dir):
    with _small_splits(spark, 24 * 1024):  # a few row groups per split
        profile = _same_as_the_job(spark, parquet_dir, task="regression")
    filled = [p for p in profile.partitions if p.rows]
    assert len(filled) > 2  # more partitions hold rows than there are files


def test_a_constant_label_is_refused_from_the_footers_too(spark, tmp_path):
    path = str(tmp_path / "constant.parquet")
    spark.createDataFrame([(float(i), 2.5) for i in range(50)], "x double, y double").write.parquet(
        path
    )
    with pytest.raises(UserError, match="has one value"):
        profile_dataset(spark.read.parquet(path), "y", task="regression")


@pytest.mark.parametrize(
    ("rows", "schema", "task", "why"),
    [
        ([(1.0, 2.5), (2.0, None), (3.0, 4.5)], "x double, y double", "regression", "null label"),
        ([(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)], "x double, y double", "auto", "whole numbers"),
        ([("a", 2.5), ("b", 3.5), ("c", 4.5)], "x string, y double", "regression", "text"),
        ([(1.0, 2.5), (2.0, 3.5)], "x double, y double", "classification", "classes"),
    ],
)
def test_the_job_runs_where_the_footers_cannot_answer(spark, tmp_path, rows, schema, task, why):
    path = str(tmp_path / "data.parquet")
    spark.createDataFrame(rows, schema).write.parquet(path)
    profile = profile_dataset(spark.read.parquet(path), "y", task=task)
    assert profile.counted_from == COUNTED_FROM_JOB, why


def test_a_filtered_or_derived_dataframe_is_counted_by_the_job(spark, parquet_dir):
    df = spark.read.parquet(parquet_dir)
    filtered = profile_dataset(df.where(F.col("y") > 100), "y", task="regression")
    assert filtered.counted_from == COUNTED_FROM_JOB
    assert filtered.rows == df.where(F.col("y") > 100).count()
    derived = profile_dataset(df.withColumn("x", F.col("x") * 2), "y", task="regression")
    assert derived.counted_from == COUNTED_FROM_JOB


def test_hive_partition_columns_are_not_in_the_footers(spark, tmp_path):
    path = str(tmp_path / "by_k.parquet")
    df = spark.createDataFrame([(float(i), i % 3, i * 0.5 + 0.25) for i in range(60)],
                               "x double, k int, y double")  # fmt: skip
    df.write.partitionBy("k").parquet(path)
    profile = profile_dataset(spark.read.parquet(path), "y", task="regression")
    assert profile.counted_from == COUNTED_FROM_JOB and profile.rows == 60
