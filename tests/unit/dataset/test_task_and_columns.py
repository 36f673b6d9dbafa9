"""Bring your own data: the task decided from the label (and why), the bounded validation job,
the columns a user picks, dates as features and string columns with too many values left out."""

from __future__ import annotations

import pytest

from sparkml_template.contract.names import CLASSIFICATION, REGRESSION
from sparkml_template.dataset.validation import (
    AUTO_MAX_CLASSES,
    MAX_CATEGORIES,
    MAX_CLASSES,
    profile_dataset,
    split_features,
)
from sparkml_template.errors import UserError


def _df(spark, rows, schema):
    return spark.createDataFrame(rows, schema).repartition(2)


def test_text_label_is_classification(spark):
    profile = profile_dataset(_df(spark, [(1.0, "a"), (2.0, "b")], "x double, y string"), "y")
    assert profile.task == CLASSIFICATION and "text" in profile.task_reason


def test_few_whole_numbers_are_classes_many_are_a_regression(spark):
    few = [(float(i), i % 3) for i in range(60)]
    profile = profile_dataset(_df(spark, few, "x double, y int"), "y")
    assert profile.task == CLASSIFICATION and profile.labels == ["0", "1", "2"]
    many = [(float(i), i % (AUTO_MAX_CLASSES + 5)) for i in range(200)]
    profile = profile_dataset(_df(spark, many, "x double, y int"), "y")
    assert profile.task == REGRESSION and profile.label_counts == {}
    assert profile.label_min == 0 and profile.label_max == AUTO_MAX_CLASSES + 4
    assert profile.labelled_rows == 200


def test_fractional_label_is_regression(spark):
    rows = [(float(i), i * 0.5) for i in range(20)]
    profile = profile_dataset(_df(spark, rows, "x double, y double"), "y")
    assert profile.task == REGRESSION and "fractional" in profile.task_reason


def test_a_label_with_very_many_values_stays_bounded(spark):
    # More distinct values than the cap: the label-grouped rows are cut short, then one
    # label-free pass profiles the data (rows, nulls) for regression.
    rows = [(float(i), None if i == 0 else i) for i in range(4 * MAX_CLASSES)]
    profile = profile_dataset(_df(spark, rows, "x double, y int"), "y")
    assert profile.task == REGRESSION and f"more than {MAX_CLASSES}" in profile.task_reason
    assert profile.rows == 4 * MAX_CLASSES and profile.null_label_rows == 1
    with pytest.raises(UserError, match=r"more than 100 distinct values: too many classes"):
        profile_dataset(_df(spark, rows, "x double, y int"), "y", task="classification")


def test_regression_on_text_label_and_single_value_are_one_line(spark):
    df = _df(spark, [(1.0, "a"), (2.0, "b")], "x double, y string")
    with pytest.raises(UserError, match="task=regression needs a numeric label"):
        profile_dataset(df, "y", task="regression")
    same = _df(spark, [(1.0, 3.5), (2.0, 3.5)], "x double, y double")
    with pytest.raises(UserError, match=r"label column 'y' has one value \(3.5\)"):
        profile_dataset(same, "y", task="regression")
    with pytest.raises(UserError, match="unknown task 'clustering'"):
        profile_dataset(df, "y", task="clustering")


def test_features_and_exclude_columns(spark):
    schema = "a int, b double, c string, d string, y int"
    df = spark.createDataFrame([(1, 2.0, "a", "b", 0)], schema)
    cols = split_features(df.schema, "y", features="a, c")
    assert cols.numeric == ["a"] and cols.categorical == ["c"]
    cols = split_features(df.schema, "y", exclude="b,d")
    assert cols.numeric == ["a"] and cols.categorical == ["c"]
    with pytest.raises(UserError, match=r"column\(s\) not in the data: nope"):
        split_features(df.schema, "y", features="a,nope")
    with pytest.raises(UserError, match=r"column\(s\) not in the data: zz"):
        split_features(df.schema, "y", exclude="zz")
    with pytest.raises(UserError, match="features lists the label 'y'"):
        split_features(df.schema, "y", features="a,y")
    with pytest.raises(UserError, match="no feature column left"):
        split_features(df.schema, "y", exclude="a,b,c,d")


def test_dates_are_features_and_an_id_column_is_left_out(spark):
    rows = [(i, f"name{i}", f"c{i % 3}", i % 2) for i in range(3 * MAX_CATEGORIES)]
    df = spark.createDataFrame(rows, "n int, name string, colour string, y int").selectExpr(
        "*", "date_add(date'2024-01-01', n) as day", "timestamp'2024-01-01 10:00:00' as at"
    )
    profile = profile_dataset(df, "y")
    assert profile.date_features == ["day", "at"] and profile.timestamp_features == ["at"]
    assert list(profile.left_out) == ["name"] and profile.left_out["name"] > MAX_CATEGORIES
    assert profile.categorical_features == ["colour"]
