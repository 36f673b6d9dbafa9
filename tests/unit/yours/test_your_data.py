"""Your data hooks (yours/data.py) on tiny frames: how a source is read (CSV, TSV, Parquet, a
table; a missing one in one line), which sources are cached for several passes, and the split
into training and held-out rows (disjoint, complete, the same for the same seed)."""

from __future__ import annotations

import pytest

from sparkml_template.contract.dataset import DataSource
from sparkml_template.dataset.sources import resolve_source
from sparkml_template.errors import UserError
from sparkml_template.yours.data import read_for_passes, read_source, split_labelled


def _ids(df) -> list[int]:
    return sorted(row["id"] for row in df.select("id").collect())


def test_split_of_a_tiny_frame_is_disjoint_complete_and_seed_stable(spark):
    rows = [(i, None if i % 5 == 0 else ("yes" if i % 2 else "no")) for i in range(30)]
    df = spark.createDataFrame(rows, "id int, y string")
    train, test = split_labelled(df, "y", 0.3, seed=11)
    labelled = [i for i, y in rows if y is not None]
    assert set(_ids(train)).isdisjoint(_ids(test))
    assert sorted(_ids(train) + _ids(test)) == labelled  # every labelled row, no null label
    assert _ids(train) and _ids(test)
    again_train, again_test = split_labelled(df, "y", 0.3, seed=11)
    assert (_ids(again_train), _ids(again_test)) == (_ids(train), _ids(test))
    assert _ids(split_labelled(df, "y", 0.3, seed=12)[1]) != _ids(test)


def test_a_tsv_file_is_read_with_tabs(spark, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("x\ty\n1.5\ta\n2.5\tb\n")
    df = read_source(spark, DataSource(str(path), "csv"))
    assert df.columns == ["x", "y"]
    assert sorted(tuple(row) for row in df.collect()) == [(1.5, "a"), (2.5, "b")]


def test_a_table_is_read_by_name(spark):
    rows = [(1, "a"), (2, "b")]
    spark.createDataFrame(rows, "id int, y string").createOrReplaceTempView("your_data_rows")
    try:
        df = read_source(spark, DataSource("your_data_rows", "table"))
        assert sorted(tuple(row) for row in df.collect()) == rows
    finally:
        spark.catalog.dropTempView("your_data_rows")


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [("nowhere.parquet", "parquet"), ("nowhere.csv", "csv"), ("no_such_table", "table")],
)
def test_a_source_that_is_not_there_is_one_line(spark, tmp_path, uri, fmt):
    where = uri if fmt == "table" else str(tmp_path / uri)
    with pytest.raises(UserError, match=f"cannot read {where}: ") as info:
        read_source(spark, DataSource(where, fmt))
    assert "\n" not in str(info.value)


def test_parquet_and_csv_directories(spark, tmp_path):
    df = spark.createDataFrame([(1.0, "a"), (2.0, "b")], "x double, y string")
    df.write.parquet(str(tmp_path / "pq"))
    df.write.option("header", True).csv(str(tmp_path / "csvdir"))
    for name, fmt in (("pq", "parquet"), ("csvdir", "csv")):
        source = resolve_source(str(tmp_path / name))
        assert source.format == fmt
        assert sorted(read_source(spark, source).collect()) == sorted(df.collect())


def test_csv_is_cached_for_passes_and_parquet_is_read_again(spark, tmp_path):
    df = spark.createDataFrame([(1.0, "a"), (2.0, "b")], "x double, y string")
    df.write.parquet(str(tmp_path / "pq"))
    df.write.option("header", True).csv(str(tmp_path / "csv"))
    csv = read_for_passes(spark, resolve_source(str(tmp_path / "csv")))
    parquet = read_for_passes(spark, resolve_source(str(tmp_path / "pq")))
    assert csv.storageLevel.useMemory and not parquet.storageLevel.useMemory
    assert sorted(csv.collect()) == sorted(parquet.collect()) == sorted(df.collect())
    csv.unpersist()


def test_split_is_disjoint_complete_and_the_same_on_every_read(spark, tmp_path):
    rows = [(i, float(i % 7), None if i % 50 == 0 else f"c{i % 3}") for i in range(2000)]
    spark.createDataFrame(rows, "id int, x double, y string").repartition(4).write.parquet(
        str(tmp_path / "d")
    )

    def split_ids(seed: int, columns: tuple[str, ...] = ("id",)) -> tuple[set, set]:
        df = read_source(spark, resolve_source(str(tmp_path / "d")))  # a fresh read every time
        train, test = split_labelled(df, "y", 0.25, seed)
        return (
            {r.id for r in train.select(*columns).collect()},
            {r.id for r in test.select(*columns).collect()},
        )

    train, test = split_ids(7)
    labelled = {i for i, _, y in rows if y is not None}
    assert train.isdisjoint(test) and train | test == labelled
    assert 0.2 < len(test) / len(labelled) < 0.3
    assert split_ids(7, ("id", "x", "y")) == (train, test)  # what is read does not move a row
    assert split_ids(8)[1] != test
