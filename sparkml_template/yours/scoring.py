"""Yours: how a model is scored and what it must meet. Edit ``validation_thresholds`` to gate on
other metrics or fixed bounds; edit the evaluators to add metrics (every key of a report's
``metrics`` is logged).

Classification: a group-by gives the confusion matrix, from which accuracy and the weighted
metrics follow exactly (the definitions of Spark's MulticlassClassificationEvaluator). For binary
labels the same group-by also buckets the positive-class probability, rounded to 1e-4, which
gives the ROC curve and the area under it (ties within a bucket count half, as in the
Mann-Whitney form of AUC). Regression: one aggregate gives rmse, mae and r2 (the definitions of
Spark's RegressionEvaluator); the charts take at most ``CHART_ROWS`` rows. Either way one Spark
job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.gates import Gate, Threshold
from sparkml_template.contract.names import CLASSIFICATION, PREDICTION, PROBABILITY, REGRESSION

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ROC_RESOLUTION = 10_000
CHART_ROWS = 2000

# Each task's primary metric (a name Spark's evaluators know): what its min parameter gates on,
# what promote compares and tune maximises.
GATES = {
    CLASSIFICATION: Gate("accuracy", "minAccuracy"),
    REGRESSION: Gate("r2", "minR2"),
}


def validation_thresholds(task: str, params: Mapping[str, Any]) -> dict[str, Threshold]:
    """What a model of ``task`` must meet to pass evaluate's, main's and promote's gate.

    The primary metric's minimum comes from its parameter (``-P minAccuracy=0.9``); add fixed
    bounds on any metric the report has, e.g. ``"areaUnderROC": Threshold(minimum=0.95)`` for a
    binary classifier or ``"rmse": Threshold(maximum=50.0)`` for a regression.
    """
    gate = GATES[task]
    return {gate.metric: Threshold(minimum=params[gate.min_param], source=gate.min_param)}


@dataclass
class ClassificationReport:
    """Everything evaluation logs: headline metrics, the confusion matrix, per-class scores."""

    classes: list[str]
    confusion: list[list[int]]  # confusion[actual][predicted], rows/cols in `classes` order
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    roc: list[tuple[float, float]] = field(default_factory=list)  # (fpr, tpr), from (0,0) to (1,1)

    task = CLASSIFICATION

    @property
    def rows(self) -> int:
        return sum(map(sum, self.confusion))


@dataclass
class RegressionReport:
    """What evaluation logs for a regression model: metrics and (actual, predicted) points."""

    metrics: dict[str, float]
    rows: int
    points: list[tuple[float, float]] = field(default_factory=list)  # at most CHART_ROWS
    classes: list[str] = field(default_factory=list)  # none: kept so callers need not ask
    task = REGRESSION


Report = ClassificationReport | RegressionReport


def _safe_div(num: float, den: float) -> float:
    return num / den if den else 0.0


def report_from_counts(
    counts: dict[tuple[str, str], int], model_classes: list[str]
) -> ClassificationReport:
    """Metrics from (actual, predicted) -> count. Classes the model never saw are kept."""
    seen = {c for pair in counts for c in pair}
    classes = list(model_classes) + sorted(seen - set(model_classes))
    pos = {c: i for i, c in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for (actual, predicted), n in counts.items():
        confusion[pos[actual]][pos[predicted]] += n
    total = sum(map(sum, confusion))
    per_class: dict[str, dict[str, float]] = {}
    for i, c in enumerate(classes):
        tp = confusion[i][i]
        support = sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        precision = _safe_div(tp, predicted)
        recall = _safe_div(tp, support)
        f1 = _safe_div(2 * precision * recall, precision + recall)
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    weights = {c: _safe_div(per_class[c]["support"], total) for c in classes}
    metrics = {
        "accuracy": _safe_div(sum(confusion[i][i] for i in range(len(classes))), total),
        "f1": sum(weights[c] * per_class[c]["f1"] for c in classes),
        "weightedPrecision": sum(weights[c] * per_class[c]["precision"] for c in classes),
        "weightedRecall": sum(weights[c] * per_class[c]["recall"] for c in classes),
    }
    return ClassificationReport(classes, confusion, metrics, per_class)


def roc_from_histogram(
    histogram: dict[tuple[int, bool], int],
) -> tuple[float, list[tuple[float, float]]]:
    """AUC and ROC points from (score bucket, is_positive) -> count."""
    buckets = sorted({b for b, _ in histogram}, reverse=True)
    positives = sum(n for (_, p), n in histogram.items() if p)
    negatives = sum(n for (_, p), n in histogram.items() if not p)
    if not positives or not negatives:
        return float("nan"), []
    tp = fp = 0
    auc = 0.0
    points = [(0.0, 0.0)]
    for b in buckets:
        dp = histogram.get((b, True), 0)
        dn = histogram.get((b, False), 0)
        auc += dn * (tp + dp / 2)
        tp += dp
        fp += dn
        points.append((fp / negatives, tp / positives))
    return auc / (positives * negatives), points


def evaluate_predictions(
    predictions: DataFrame, label: str, model_classes: list[str]
) -> ClassificationReport:
    """Score ``predictions`` (output of the template's pipeline) against the ``label`` column.

    One Spark job: the group-by keys are (actual, predicted) and, for binary labels, the score
    bucket too; the confusion matrix sums over buckets and the ROC histogram over predictions.
    At most classes x ROC_RESOLUTION rows come back, whatever the size of the data.
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    actual = F.col(label).cast("string")
    keys = [actual.alias("actual"), F.col(PREDICTION).alias("predicted")]
    binary = len(model_classes) == 2
    if binary:
        bucket = F.round(vector_to_array(F.col(PROBABILITY))[1] * ROC_RESOLUTION).cast("int")
        keys.append(bucket.alias("bucket"))
    rows = predictions.where(actual.isNotNull()).groupBy(*keys).count().collect()

    counts: dict[tuple[str, str], int] = {}
    histogram: dict[tuple[int, bool], int] = {}
    for r in rows:
        pair = (r["actual"], r["predicted"])
        counts[pair] = counts.get(pair, 0) + r["count"]
        if binary and r["actual"] in model_classes:
            key = (r["bucket"], r["actual"] == model_classes[1])
            histogram[key] = histogram.get(key, 0) + r["count"]
    report = report_from_counts(counts, model_classes)
    if binary:
        auc, points = roc_from_histogram(histogram)
        if points:
            report.metrics["areaUnderROC"] = auc
            report.roc = points
    return report


def regression_metrics(rows: int, sse: float, sae: float, total: float, total_sq: float) -> dict:
    """rmse, mae and r2 from the sums one aggregate gives (r2 = 1 - SSE / SST)."""
    if not rows:
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}
    sst = total_sq - total * total / rows
    return {
        "rmse": (sse / rows) ** 0.5,
        "mae": sae / rows,
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
    }


def evaluate_regression(predictions: DataFrame, label: str) -> RegressionReport:
    """Score a regression model's ``predictions`` against ``label``: one aggregate job for the
    metrics, and a bounded read of the first ``CHART_ROWS`` rows for the charts."""
    from pyspark.sql import functions as F

    actual = F.col(label).cast("double")
    error = F.col(PREDICTION) - actual
    scored = predictions.where(actual.isNotNull())
    sums = scored.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(error * error).alias("sse"),
        F.sum(F.abs(error)).alias("sae"),
        F.sum(actual).alias("total"),
        F.sum(actual * actual).alias("total_sq"),
    ).first()
    rows = int(sums["n"] or 0)
    metrics = regression_metrics(
        rows, sums["sse"] or 0.0, sums["sae"] or 0.0, sums["total"] or 0.0, sums["total_sq"] or 0.0
    )
    points = []
    if rows:
        head = scored.select(actual.alias("a"), F.col(PREDICTION).alias("p")).limit(CHART_ROWS)
        points = [(r["a"], r["p"]) for r in head.collect()]
    return RegressionReport(metrics, rows, points)


def evaluate_model_output(
    predictions: DataFrame, label: str, task: str, model_classes: list[str]
) -> Report:
    """The report for ``task``: classification (confusion matrix, ROC) or regression."""
    if task == REGRESSION:
        return evaluate_regression(predictions, label)
    return evaluate_predictions(predictions, label, model_classes)
