"""Your scoring (yours/scoring.py): metrics from a confusion matrix and regression sums worked
out by hand, the same as scikit-learn's and Spark's own evaluators on the same predictions,
and the gate: thresholds from parameters, a missing or NaN metric failing."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from sparkml_template.contract.gates import Threshold, check_gate
from sparkml_template.contract.names import CLASSIFICATION, PREDICTION, PROBABILITY, REGRESSION
from sparkml_template.errors import QualityGateError
from sparkml_template.yours.scoring import (
    GATES,
    RegressionReport,
    evaluate_model_output,
    evaluate_predictions,
    evaluate_regression,
    regression_metrics,
    report_from_counts,
    roc_from_histogram,
    validation_thresholds,
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
    params = {"estimator": "linear", "regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 50}
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
    params = {"estimator": "linear", "regParam": 0.1, "elasticNetParam": 0.0, "maxIter": 20}
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
    report = RegressionReport({"rmse": 1.0, "mae": 1.0, "r2": 0.4}, rows=10)
    check_gate(report.metrics, validation_thresholds(REGRESSION, {"minR2": 0.3}))
    with pytest.raises(QualityGateError, match=r"r2 0.4000 is below minR2 0.5000"):
        check_gate(report.metrics, validation_thresholds(REGRESSION, {"minR2": 0.5}))


def test_binary_confusion_matrix_metrics_worked_out_by_hand():
    counts = {("no", "no"): 4, ("no", "yes"): 2, ("yes", "no"): 1, ("yes", "yes"): 3}
    report = report_from_counts(counts, ["no", "yes"])
    assert report.confusion == [[4, 2], [1, 3]] and report.rows == 10
    assert report.per_class["no"] == pytest.approx(
        {"precision": 4 / 5, "recall": 4 / 6, "f1": 8 / 11, "support": 6}
    )
    assert report.per_class["yes"] == pytest.approx(
        {"precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "support": 4}
    )
    assert report.metrics == pytest.approx(
        {
            "accuracy": 7 / 10,
            "f1": 0.6 * 8 / 11 + 0.4 * 2 / 3,
            "weightedPrecision": 0.6 * 4 / 5 + 0.4 * 3 / 5,
            "weightedRecall": 7 / 10,  # weighted recall is accuracy
        }
    )


def test_predictions_of_a_tiny_frame_give_the_hand_counted_report(spark):
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import StringType, StructField, StructType

    rows = [  # actual, predicted, P(yes): one ranking mistake (0.4 below 0.6) in four pairs
        ("yes", "yes", 0.9), ("yes", "no", 0.4), ("no", "yes", 0.6), ("no", "no", 0.1),
        (None, "yes", 0.8),  # no label: not scored
    ]  # fmt: skip
    predictions = spark.createDataFrame(
        [(a, p, Vectors.dense([1 - q, q])) for a, p, q in rows],
        StructType(
            [
                StructField("y", StringType()),
                StructField(PREDICTION, StringType()),
                StructField(PROBABILITY, VectorUDT()),
            ]
        ),
    )
    report = evaluate_model_output(predictions, "y", CLASSIFICATION, ["no", "yes"])
    assert report.confusion == [[1, 1], [1, 1]]
    assert report.metrics["accuracy"] == 0.5
    assert report.metrics["areaUnderROC"] == pytest.approx(3 / 4)
    assert report.roc[0] == (0.0, 0.0) and report.roc[-1] == (1.0, 1.0)


def test_regression_of_a_tiny_frame_gives_the_hand_computed_metrics(spark):
    rows = [(1.0, 1.5), (2.0, 2.0), (3.0, 2.5), (4.0, 5.0), (None, 9.0)]
    predictions = spark.createDataFrame(rows, f"y double, {PREDICTION} double")
    report = evaluate_regression(predictions, "y")
    # errors 0.5, 0, -0.5, 1: SSE 1.5; the labels' mean 2.5, SST 5
    assert report.rows == 4
    assert report.metrics == pytest.approx({"rmse": 0.375**0.5, "mae": 0.5, "r2": 0.7})
    assert sorted(report.points) == [(1.0, 1.5), (2.0, 2.0), (3.0, 2.5), (4.0, 5.0)]


def test_regression_metrics_without_rows_or_spread_are_nan():
    assert all(math.isnan(v) for v in regression_metrics(0, 0.0, 0.0, 0.0, 0.0).values())
    constant = regression_metrics(3, 0.75, 1.5, 6.0, 12.0)  # labels 2, 2, 2: SST 0
    assert math.isnan(constant["r2"]) and constant["mae"] == 0.5


def test_each_tasks_gate_is_a_metric_its_report_has():
    classification = report_from_counts({("a", "a"): 1, ("b", "b"): 1}, ["a", "b"])
    assert GATES[CLASSIFICATION].metric in classification.metrics
    assert GATES[REGRESSION].metric in regression_metrics(2, 0.0, 0.0, 3.0, 5.0)


def test_validation_thresholds_take_the_minimum_from_its_parameter():
    params = {"minAccuracy": 0.9, "minR2": 0.25}
    assert validation_thresholds(CLASSIFICATION, params) == {
        "accuracy": Threshold(minimum=0.9, source="minAccuracy")
    }
    assert validation_thresholds(REGRESSION, params) == {
        "r2": Threshold(minimum=0.25, source="minR2")
    }
    thresholds = validation_thresholds(CLASSIFICATION, params)
    check_gate({"accuracy": 0.9, "f1": 0.1}, thresholds)  # the bound itself passes
    with pytest.raises(QualityGateError, match=r"^accuracy 0.8999 is below minAccuracy 0.9000$"):
        check_gate({"accuracy": 0.8999}, thresholds)


def test_a_maximum_bound_fails_above_it_and_names_itself():
    thresholds = {"rmse": Threshold(maximum=50.0)}
    check_gate({"rmse": 50.0}, thresholds)
    with pytest.raises(QualityGateError, match=r"^rmse 50.5000 is above the maximum 50.0000$"):
        check_gate({"rmse": 50.5}, thresholds)


def test_a_gate_on_a_metric_the_report_lacks_fails():
    with pytest.raises(QualityGateError, match="the gate needs areaUnderROC"):
        check_gate({"accuracy": 1.0}, {"areaUnderROC": Threshold(minimum=0.5)})


@pytest.mark.parametrize(
    ("bound", "message"),
    [(Threshold(minimum=0.0), "is below"), (Threshold(maximum=1.0), "is above")],
)
def test_nan_fails_every_bound(bound, message):
    with pytest.raises(QualityGateError, match=f"r2 nan {message}"):
        check_gate({"r2": float("nan")}, {"r2": bound})
