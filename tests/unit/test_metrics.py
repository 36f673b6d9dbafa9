"""Metrics agree with scikit-learn and Spark's own evaluators on the same predictions."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from sparkml_template.yours.scoring import (
    evaluate_predictions,
    report_from_counts,
    roc_from_histogram,
)


def test_report_from_counts_handles_unseen_classes():
    counts = {("a", "a"): 3, ("a", "b"): 1, ("b", "b"): 2, ("c", "a"): 2}
    report = report_from_counts(counts, ["a", "b"])
    assert report.classes == ["a", "b", "c"]
    assert report.confusion == [[3, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert report.metrics["accuracy"] == pytest.approx(5 / 8)
    assert report.per_class["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_roc_from_histogram_matches_sklearn():
    scores = [0.1, 0.4, 0.35, 0.8, 0.8, 0.2, 0.9, 0.6]
    labels = [0, 0, 1, 1, 0, 0, 1, 1]
    hist: dict[tuple[int, bool], int] = {}
    for s, y in zip(scores, labels, strict=True):
        key = (round(s * 10_000), bool(y))
        hist[key] = hist.get(key, 0) + 1
    auc, points = roc_from_histogram(hist)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    assert points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
    assert math.isnan(roc_from_histogram({(1, True): 3})[0])


def _trained_predictions(spark, rows, schema, label):
    from sparkml_template.contract.fitted import inference_model
    from sparkml_template.dataset.validation import profile_dataset
    from sparkml_template.yours.pipeline import build_pipeline

    df = spark.createDataFrame(rows, schema)
    profile = profile_dataset(df, label)
    params = {"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 50}
    model = inference_model(build_pipeline(profile, label, params).fit(df))
    return model.transform(df), profile


def test_binary_metrics_match_sklearn_and_spark(spark):
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        MulticlassClassificationEvaluator,
    )

    from sparkml_template.dataset.sources import resolve_source
    from sparkml_template.dataset.validation import profile_dataset
    from sparkml_template.yours.data import read_source
    from sparkml_template.yours.pipeline import build_pipeline

    df = read_source(spark, resolve_source("data/breast_cancer.csv"))
    profile = profile_dataset(df, "diagnosis")
    params = {"regParam": 0.1, "elasticNetParam": 0.0, "maxIter": 20}
    fitted = build_pipeline(profile, "diagnosis", params).fit(df)
    predictions = fitted.transform(df).cache()  # the training pipeline keeps label_index
    report = evaluate_predictions(predictions, "diagnosis", profile.labels)

    pdf = predictions.select("diagnosis", "prediction", "probability").toPandas()
    y, p = pdf["diagnosis"], pdf["prediction"]
    assert report.metrics["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert report.metrics["f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert report.metrics["weightedPrecision"] == pytest.approx(
        precision_score(y, p, average="weighted")
    )
    assert report.metrics["weightedRecall"] == pytest.approx(recall_score(y, p, average="weighted"))
    positive = [prob[1] for prob in pdf["probability"]]
    sk_auc = roc_auc_score(y == "malignant", positive)
    assert report.metrics["areaUnderROC"] == pytest.approx(sk_auc, abs=1e-3)
    spark_auc = BinaryClassificationEvaluator(
        rawPredictionCol="raw_prediction", labelCol="label_index", numBins=0
    ).evaluate(predictions)
    assert report.metrics["areaUnderROC"] == pytest.approx(spark_auc, abs=1e-3)
    spark_f1 = MulticlassClassificationEvaluator(
        predictionCol="prediction_index", labelCol="label_index", metricName="f1"
    ).evaluate(predictions)
    assert report.metrics["f1"] == pytest.approx(spark_f1)


def test_multiclass_categorical_and_nulls(spark):
    """Three string classes, a categorical feature, a numeric column with nulls: no AUC."""
    rows = []
    for i in range(90):
        cls = ("red", "green", "blue")[i % 3]
        shape = ("square", "round")[i % 2]
        x = None if i % 17 == 0 else float(i % 3) + (i % 5) * 0.01
        rows.append((x, shape, cls))
    predictions, profile = _trained_predictions(
        spark, rows, "x double, shape string, colour string", "colour"
    )
    assert profile.categorical_features == ["shape"]
    report = evaluate_predictions(predictions, "colour", profile.labels)
    assert "areaUnderROC" not in report.metrics
    assert set(report.classes) == {"red", "green", "blue"}
    assert report.rows == 90
    assert report.metrics["accuracy"] > 0.8
    # predictions come back as the original label strings
    assert {r["prediction"] for r in predictions.select("prediction").collect()} <= {
        "red",
        "green",
        "blue",
    }


def test_binary_label_trains_a_binary_model(spark):
    """The label indexer must not add an 'unknown' class: LR would turn multinomial."""
    rows = [(float(i), "yes" if i % 2 else "no") for i in range(20)]
    predictions, _ = _trained_predictions(spark, rows, "x double, y string", "y")
    assert len(predictions.first()["raw_prediction"]) == 2
    assert "label_index" not in predictions.columns


def test_regression_metrics_from_sums_match_their_definitions():
    from sparkml_template.yours.scoring import regression_metrics

    actual, predicted = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0]
    errors = [p - a for a, p in zip(actual, predicted, strict=True)]
    mean = sum(actual) / 4
    got = regression_metrics(
        4,
        sum(e * e for e in errors),
        sum(abs(e) for e in errors),
        sum(actual),
        sum(a * a for a in actual),
    )
    assert got["rmse"] == pytest.approx((sum(e * e for e in errors) / 4) ** 0.5)
    assert got["mae"] == pytest.approx(0.5)
    sst = sum((a - mean) ** 2 for a in actual)
    assert got["r2"] == pytest.approx(1 - sum(e * e for e in errors) / sst)


def test_the_regression_gate_names_r2_and_min_r2():
    from sparkml_template.contract.gates import check_gate
    from sparkml_template.errors import QualityGateError
    from sparkml_template.yours.scoring import RegressionReport

    report = RegressionReport({"rmse": 1.0, "mae": 1.0, "r2": 0.4}, rows=10)
    check_gate(report, 0.3)
    with pytest.raises(QualityGateError, match=r"r2 0.4000 is below minR2 0.5000"):
        check_gate(report, 0.5)
