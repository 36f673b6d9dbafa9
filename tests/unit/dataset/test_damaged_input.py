"""Damaged or unreadable input (dataset/read_errors.py): Spark's real errors for real damaged
files, turned into one line naming the file and the cause (docs/failures.md). The entry points
end on these lines through the runner: tests/unit/workflows/test_bad_input.py and
test_predict.py."""

from __future__ import annotations

import os
import random
import shutil

import pytest
from conftest import SHIPPED_DATA

from sparkml_template.contract.dataset import DataSource
from sparkml_template.dataset.read_errors import unreadable_input
from sparkml_template.yours.data import read_source


@pytest.fixture(scope="module")
def parquet_dir(spark, tmp_path_factory):
    """The shipped data as three Parquet files, without Spark's .crc side files (a user's
    copied or uploaded files have none)."""
    out = tmp_path_factory.mktemp("damaged") / "good"
    spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).repartition(3).write.parquet(
        str(out)
    )
    for crc in out.glob(".*.crc"):
        crc.unlink()
    return out


def _copy(parquet_dir, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(parquet_dir, target)
    return target, sorted(target.glob("*.parquet"))


def _failure(fn) -> BaseException:
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("Spark read the damaged data without an error")


def _line(exc: BaseException) -> str:
    error = unreadable_input(exc)
    assert error is not None, str(exc)[:2000]
    return str(error)


def test_a_truncated_parquet_part_names_the_file(spark, parquet_dir, tmp_path):
    data, parts = _copy(parquet_dir, tmp_path)
    whole = parts[1].read_bytes()
    parts[1].write_bytes(whole[: len(whole) // 2])
    exc = _failure(lambda: spark.read.parquet(str(data)).collect())
    line = _line(exc)
    assert line.startswith(f"cannot read {parts[1]}: not a readable Parquet file"), line
    assert "\n" not in line


def test_a_parquet_part_of_random_bytes_names_the_file(spark, parquet_dir, tmp_path):
    data, parts = _copy(parquet_dir, tmp_path)
    parts[2].write_bytes(random.Random(7).randbytes(4000))
    line = _line(_failure(lambda: spark.read.parquet(str(data)).collect()))
    assert line.startswith(f"cannot read {parts[2]}: "), line


def test_a_single_damaged_parquet_file_fails_at_its_footer(spark, parquet_dir, tmp_path):
    """One file: Spark reads its footer for the schema, before any job."""
    single = tmp_path / "one.parquet"
    single.write_bytes(next(parquet_dir.glob("*.parquet")).read_bytes()[:300])
    exc = _failure(lambda: read_source(spark, DataSource(str(single), "parquet")))
    line = _line(exc)
    assert line.startswith(f"cannot read {single}: not a readable Parquet file"), line


def test_a_file_deleted_after_the_read_was_planned(spark, parquet_dir, tmp_path):
    data, parts = _copy(parquet_dir, tmp_path)
    df = spark.read.parquet(str(data))
    parts[0].unlink()
    line = _line(_failure(df.collect))
    assert line == f"cannot read {parts[0]}: the file disappeared while it was being read " + (
        "(deleted or replaced)"
    )


def test_a_binary_csv_part_is_refused_not_read_as_nulls(spark, tmp_path):
    """Spark's default (PERMISSIVE) turns such rows into nulls; the template's reader refuses
    them (FAILFAST), naming the part."""
    data = tmp_path / "csv"
    data.mkdir()
    shutil.copy(SHIPPED_DATA, data / "part-0.csv")
    (data / "part-1.csv").write_bytes(random.Random(3).randbytes(20000))
    df = read_source(spark, DataSource(str(data), "csv"))
    line = _line(_failure(df.cache().count))
    assert line.startswith(f"cannot read {data / 'part-1.csv'}: Malformed CSV record"), line
    assert "mode=FAILFAST" in line
    assert len(line) < 400


def test_a_short_csv_row_is_refused(spark, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("x,y,z\n1,2,a\n3,4\n5,6,b\n")
    df = read_source(spark, DataSource(str(path), "csv"))
    line = _line(_failure(df.collect))
    assert line.startswith(f"cannot read {path}: Malformed CSV record: 3,4 "), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file (subprocess tests)")
def test_an_unreadable_file_says_permission_denied(spark, parquet_dir, tmp_path):
    data, parts = _copy(parquet_dir, tmp_path)
    parts[0].chmod(0)
    try:
        line = _line(_failure(lambda: spark.read.parquet(str(data)).collect()))
    finally:
        parts[0].chmod(0o644)
    assert line == f"cannot read {parts[0]}: permission denied"


def test_other_errors_are_left_alone(spark):
    from pyspark.sql import functions as F

    exc = _failure(lambda: spark.range(3).select(F.raise_error(F.lit("a bug"))).collect())
    assert unreadable_input(exc) is None
    assert unreadable_input(ValueError("reading file x.csv")) is None
