"""Validating data (dataset/validation.py): each user mistake is one clear UserError."""

from __future__ import annotations

import pytest

from sparkml_template.dataset.sources import resolve_source
from sparkml_template.dataset.validation import profile_dataset, split_features
from sparkml_template.errors import UserError
from sparkml_template.yours.data import read_source


def test_shipped_dataset_profile(spark):
    df = read_source(spark, resolve_source("data/breast_cancer.csv"))
    profile = profile_dataset(df, "diagnosis")
    assert profile.rows == 569
    assert profile.label_counts == {"benign": 357, "malignant": 212}
    assert profile.labels == ["benign", "malignant"]  # StringIndexer's frequencyDesc order
    assert len(profile.numeric_features) == 30 and profile.categorical_features == []
    assert profile.columns_with_nulls(profile.numeric_features) == []


def test_empty_dataset(spark):
    df = spark.createDataFrame([], "x double, y string")
    with pytest.raises(UserError, match="the dataset has no rows"):
        profile_dataset(df, "y")


def test_missing_label_column_lists_columns(spark):
    df = spark.createDataFrame([(1.0, "a")], "x double, y string")
    with pytest.raises(UserError, match=r"label column 'target' is not in the data; columns: x, y"):
        profile_dataset(df, "target")


def test_single_class_label(spark):
    df = spark.createDataFrame([(1.0, "a"), (2.0, "a"), (3.0, None)], "x double, y string")
    with pytest.raises(UserError, match=r"label column 'y' has one class \('a'\)"):
        profile_dataset(df, "y")


def test_all_null_feature(spark):
    df = spark.createDataFrame([(1.0, None, "a"), (2.0, None, "b")], "x double, z double, y string")
    with pytest.raises(UserError, match="feature column\\(s\\) entirely null: z"):
        profile_dataset(df, "y")


def test_unsupported_feature_type(spark):
    df = spark.sql("select array(1, 2) as d, 'a' as y")
    with pytest.raises(UserError, match="feature column 'd' has type array<int>"):
        profile_dataset(df, "y")


def test_null_labels_are_counted_and_partial_nulls_found(spark):
    rows = [(1.0, "a"), (None, "b"), (3.0, None), (4.0, "b")]
    profile = profile_dataset(spark.createDataFrame(rows, "x double, y string"), "y")
    assert profile.null_label_rows == 1 and profile.rows == 4
    assert profile.columns_with_nulls(["x"]) == ["x"]


def test_numeric_labels_are_classes_as_spark_casts_them(spark):
    rows = [(1.0, 0), (2.0, 1), (3.0, 1), (4.0, True and 2)]
    profile = profile_dataset(spark.createDataFrame(rows, "x double, y int"), "y")
    assert profile.labels == ["1", "0", "2"]


def test_every_numeric_type_is_a_numeric_feature(spark):
    df = spark.sql(
        "select cast(1 as tinyint) a, cast(1 as smallint) b, 1 c, cast(1 as bigint) d,"
        " cast(1 as float) e, 1.5d f, cast(1 as decimal(5,2)) g, true h, 'x' i, 'lbl' y"
    )
    columns = split_features(df.schema, "y")
    assert columns.numeric == list("abcdefgh") and columns.categorical == ["i"]
