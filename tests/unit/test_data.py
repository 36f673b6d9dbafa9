"""Reading and validating data: each user mistake is one clear UserError."""

from __future__ import annotations

import pytest

from sparkml_template import PROJECT_ROOT
from sparkml_template.contract.dataset import DataSource
from sparkml_template.dataset.sources import content_digest, resolve_source
from sparkml_template.dataset.validation import profile_dataset, split_features
from sparkml_template.errors import UserError
from sparkml_template.yours.data import read_for_passes, read_source, split_labelled


def test_shipped_data_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = resolve_source("data/breast_cancer.csv")
    assert source.format == "csv"
    assert source.local_path == PROJECT_ROOT / "data" / "breast_cancer.csv"


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [
        ("s3a://bucket/path/train.csv", "csv"),
        ("dbfs:/mnt/data/train.parquet", "parquet"),
        ("dbfs:/mnt/data/table_dir", "parquet"),
        ("main.default.training_data", "table"),
        ("training_data", "table"),
    ],
)
def test_remote_uris_and_table_names(uri, fmt):
    assert resolve_source(uri) == DataSource(uri, fmt)


def test_missing_local_file_is_one_line():
    with pytest.raises(UserError, match=r"data not found: nowhere/x\.csv"):
        resolve_source("nowhere/x.csv")


def test_shipped_dataset_profile(spark):
    df = read_source(spark, resolve_source("data/breast_cancer.csv"))
    profile = profile_dataset(df, "diagnosis")
    assert profile.rows == 569
    assert profile.label_counts == {"benign": 357, "malignant": 212}
    assert profile.labels == ["benign", "malignant"]  # StringIndexer's frequencyDesc order
    assert len(profile.numeric_features) == 30 and profile.categorical_features == []
    assert profile.columns_with_nulls(profile.numeric_features) == []


def _df(spark, rows, schema):
    return spark.createDataFrame(rows, schema)


def test_empty_dataset(spark):
    df = _df(spark, [], "x double, y string")
    with pytest.raises(UserError, match="the dataset has no rows"):
        profile_dataset(df, "y")


def test_missing_label_column_lists_columns(spark):
    df = _df(spark, [(1.0, "a")], "x double, y string")
    with pytest.raises(UserError, match=r"label column 'target' is not in the data; columns: x, y"):
        profile_dataset(df, "target")


def test_single_class_label(spark):
    df = _df(spark, [(1.0, "a"), (2.0, "a"), (3.0, None)], "x double, y string")
    with pytest.raises(UserError, match=r"label column 'y' has one class \('a'\)"):
        profile_dataset(df, "y")


def test_all_null_feature(spark):
    df = _df(spark, [(1.0, None, "a"), (2.0, None, "b")], "x double, z double, y string")
    with pytest.raises(UserError, match="feature column\\(s\\) entirely null: z"):
        profile_dataset(df, "y")


def test_unsupported_feature_type(spark):
    df = spark.sql("select array(1, 2) as d, 'a' as y")
    with pytest.raises(UserError, match="feature column 'd' has type array<int>"):
        profile_dataset(df, "y")


def test_null_labels_are_counted_and_partial_nulls_found(spark):
    rows = [(1.0, "a"), (None, "b"), (3.0, None), (4.0, "b")]
    profile = profile_dataset(_df(spark, rows, "x double, y string"), "y")
    assert profile.null_label_rows == 1 and profile.rows == 4
    assert profile.columns_with_nulls(["x"]) == ["x"]


def test_numeric_labels_are_classes_as_spark_casts_them(spark):
    rows = [(1.0, 0), (2.0, 1), (3.0, 1), (4.0, True and 2)]
    profile = profile_dataset(_df(spark, rows, "x double, y int"), "y")
    assert profile.labels == ["1", "0", "2"]


def test_parquet_and_csv_directories(spark, tmp_path):
    df = _df(spark, [(1.0, "a"), (2.0, "b")], "x double, y string")
    df.write.parquet(str(tmp_path / "pq"))
    df.write.option("header", True).csv(str(tmp_path / "csvdir"))
    for name, fmt in (("pq", "parquet"), ("csvdir", "csv")):
        source = resolve_source(str(tmp_path / name))
        assert source.format == fmt
        assert sorted(read_source(spark, source).collect()) == sorted(df.collect())


def test_csv_is_cached_for_passes_and_parquet_is_read_again(spark, tmp_path):
    df = _df(spark, [(1.0, "a"), (2.0, "b")], "x double, y string")
    df.write.parquet(str(tmp_path / "pq"))
    df.write.option("header", True).csv(str(tmp_path / "csv"))
    csv = read_for_passes(spark, resolve_source(str(tmp_path / "csv")))
    parquet = read_for_passes(spark, resolve_source(str(tmp_path / "pq")))
    assert csv.storageLevel.useMemory and not parquet.storageLevel.useMemory
    assert sorted(csv.collect()) == sorted(parquet.collect()) == sorted(df.collect())
    csv.unpersist()


def test_content_digest_follows_content(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("x,y\n1,a\n")
    first = content_digest(resolve_source(str(f)))
    assert first == content_digest(resolve_source(str(f)))
    f.write_text("x,y\n2,a\n")
    assert content_digest(resolve_source(str(f))) != first
    assert content_digest(DataSource("s3a://b/k.csv", "csv")) is None


def test_every_numeric_type_is_a_numeric_feature(spark):
    df = spark.sql(
        "select cast(1 as tinyint) a, cast(1 as smallint) b, 1 c, cast(1 as bigint) d,"
        " cast(1 as float) e, 1.5d f, cast(1 as decimal(5,2)) g, true h, 'x' i, 'lbl' y"
    )
    columns = split_features(df.schema, "y")
    assert columns.numeric == list("abcdefgh") and columns.categorical == ["i"]


def test_split_is_disjoint_complete_and_the_same_on_every_read(spark, tmp_path):
    rows = [(i, float(i % 7), None if i % 50 == 0 else f"c{i % 3}") for i in range(2000)]
    _df(spark, rows, "id int, x double, y string").repartition(4).write.parquet(str(tmp_path / "d"))

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
