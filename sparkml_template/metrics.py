"""How a model is scored: classification or regression metrics from a predictions DataFrame,
in one Spark job, and the quality gate every entry point applies to them.

Regression: one aggregate gives rmse, mae and r2 (the definitions of Spark's
RegressionEvaluator); the charts take at most ``CHART_ROWS`` rows from the start of the data.

A group-by gives the confusion matrix, from which accuracy and the weighted metrics follow
exactly (the same definitions as Spark's MulticlassClassificationEvaluator). For binary labels
the same group-by also buckets the positive-class probability, rounded to 1e-4, which gives the
ROC curve and the area under it (ties within a bucket count half, as in the Mann-Whitney form
of AUC).

What the model learned (``what_the_model_learned``) is read from the fitted estimator: its loss
history, coefficients or feature importances named by the assembler's ML attributes, and for
gradient-boosted trees the loss per iteration on the held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparkml_template.data import CLASSIFICATION, REGRESSION
from sparkml_template.errors import QualityGateError
from sparkml_template.pipeline import (
    FEATURES,
    LABEL_INDEX,
    LABEL_VALUE,
    PREDICTION,
    PROBABILITY,
    model_labels,
    model_task,
)

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

ROC_RESOLUTION = 10_000
# What minAccuracy gates on, promote compares and tune maximises (Spark's evaluator name too).
GATE_METRIC = "accuracy"
# The regression counterpart: what minR2 gates on, promote compares and tune maximises.
REGRESSION_GATE_METRIC = "r2"
CHART_ROWS = 2000


@dataclass(frozen=True)
class Gate:
    """A task's primary metric: its name, the parameter that sets its minimum, its direction."""

    metric: str
    min_param: str
    higher_is_better: bool = True


GATES = {
    CLASSIFICATION: Gate(GATE_METRIC, "minAccuracy"),
    REGRESSION: Gate(REGRESSION_GATE_METRIC, "minR2"),
}


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


def check_gate(report: Report, minimum: float) -> None:
    """The quality gate: raise (exit code 3) if the task's primary metric is below ``minimum``."""
    gate = GATES[report.task]
    value = report.metrics[gate.metric]
    if not value >= minimum:  # NaN fails too
        raise QualityGateError(f"{gate.metric} {value:.4f} is below {gate.min_param} {minimum:.4f}")


def gate_minimum(report: Report, params: dict) -> float:
    """The minimum the entry point's params set for the report's task."""
    return params[GATES[report.task].min_param]


def check_min_accuracy(report: ClassificationReport, min_accuracy: float) -> None:
    """The classification gate: raise (exit code 3) if accuracy is below the minimum."""
    check_gate(report, min_accuracy)


# What the model learned ----------------------------------------------------------------------
INTERCEPT = "(intercept)"
TOP_IMPORTANCES = 20  # bars in the feature importance chart


@dataclass
class Learned:
    """What a fitted model learned, as tables and series ready to log (empty when not known).

    ``coefficients``: column -> values, a ``feature`` column (the intercept last) and one column
    per class for a multiclass logistic regression, else one ``coefficient`` column.
    ``importances``: ``feature`` and ``importance``, largest first.
    """

    training_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    coefficients: dict[str, list] = field(default_factory=dict)
    importances: dict[str, list] = field(default_factory=dict)


def fitted_estimator(model: PipelineModel) -> tuple[int, object]:
    """The position and stage of the fitted estimator (the stage that writes ``features`` into
    a prediction): the last stage whose featuresCol is ``features``."""
    for i in range(len(model.stages) - 1, -1, -1):
        stage = model.stages[i]
        if stage.hasParam("featuresCol") and stage.getOrDefault("featuresCol") == FEATURES:
            return i, stage
    raise ValueError("the model has no stage reading the features column")


def readable_feature(slot: str) -> str:
    """The name a user knows for an assembled slot: ``age_double_imputed`` -> ``age``;
    one-hot slots (``colour_vec_red``) and date parts (``seen_year``) keep theirs."""
    for suffix in ("_imputed", "_double"):
        slot = slot.removesuffix(suffix)
    return slot


def feature_names(model: PipelineModel, data: DataFrame) -> list[str]:
    """The name of every slot of the features vector, from the assembler's ML attributes on a
    one-row head of ``data`` (one-hot slots named by their category)."""
    index, _ = fitted_estimator(model)
    from pyspark.ml import PipelineModel as Fitted

    head = Fitted(model.stages[:index]).transform(data.limit(1))
    meta = head.schema[FEATURES].metadata.get("ml_attr", {})
    size = int(meta.get("num_attrs", 0))
    names = [f"f{i}" for i in range(size)]
    for group in meta.get("attrs", {}).values():
        for attr in group:
            if attr.get("idx", size) < size and attr.get("name"):
                names[attr["idx"]] = readable_feature(attr["name"])
    return names


def _labelled_features(model: PipelineModel, data: DataFrame, label: str) -> DataFrame:
    """``data`` through the stages before the estimator, with the label column the estimator
    was trained on (``label_index`` or ``label_value``); unlabelled rows dropped."""
    from pyspark.ml import PipelineModel as Fitted
    from pyspark.ml.feature import StringIndexerModel
    from pyspark.sql.functions import col

    index, _ = fitted_estimator(model)
    labelled = data.where(col(label).isNotNull())
    if model_task(model) == CLASSIFICATION:
        indexer = StringIndexerModel.from_labels(
            model_labels(model), inputCol=label, outputCol=LABEL_INDEX, handleInvalid="skip"
        )
        labelled = indexer.transform(labelled)  # as in training: Spark casts the label itself
    else:
        labelled = labelled.withColumn(LABEL_VALUE, col(label).cast("double"))
    return Fitted(model.stages[:index]).transform(labelled)


def what_the_model_learned(
    model: PipelineModel, test: DataFrame, label: str, warn=print
) -> Learned:
    """Loss history, coefficients or importances by feature name, and for gradient-boosted
    trees the held-out loss per iteration (one pass over ``test``).

    Cheap: the names come from a one-row head; nothing here reads the training data. A model of
    a shape this does not know gives what can be read and one ``warn`` line, never an error.
    """
    learned = Learned()
    try:
        _, estimator = fitted_estimator(model)
        names = feature_names(model, test)
    except Exception as exc:  # an unknown pipeline shape: nothing to name
        warn(f"warning: what the model learned is not logged: {_first_line(exc)}")
        return learned
    kind = type(estimator).__name__
    try:
        learned.training_loss = _training_loss(estimator)
        if hasattr(estimator, "coefficientMatrix") and estimator.numClasses > 2:
            learned.coefficients = _coefficient_matrix(estimator, names, model_labels(model))
        elif hasattr(estimator, "coefficients"):
            values = [float(v) for v in estimator.coefficients.toArray()]
            learned.coefficients = {
                "feature": [*names, INTERCEPT],
                "coefficient": [*values, float(estimator.intercept)],
            }
        if hasattr(estimator, "featureImportances"):
            weights = [float(v) for v in estimator.featureImportances.toArray()]
            order = sorted(range(len(weights)), key=lambda i: -weights[i])
            learned.importances = {
                "feature": [names[i] for i in order],
                "importance": [weights[i] for i in order],
            }
        if hasattr(estimator, "evaluateEachIteration"):
            learned.validation_loss = _validation_loss(model, estimator, test, label)
    except Exception as exc:  # keep what was read; the run goes on
        warn(f"warning: part of what {kind} learned is not logged: {_first_line(exc)}")
    return learned


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _training_loss(estimator) -> list[float]:
    """The objective at every iteration, when the training summary is there (not after a
    reload; LinearRegression's normal solver has one value)."""
    if not getattr(estimator, "hasSummary", False):
        return []
    history = getattr(estimator.summary, "objectiveHistory", None) or []
    return [float(v) for v in history]


def _coefficient_matrix(estimator, names: list[str], classes: list[str]) -> dict[str, list]:
    matrix = estimator.coefficientMatrix.toArray()
    intercepts = estimator.interceptVector.toArray()
    table: dict[str, list] = {"feature": [*names, INTERCEPT]}
    for k, row in enumerate(matrix):
        name = classes[k] if k < len(classes) else str(k)
        table[name] = [*(float(v) for v in row), float(intercepts[k])]
    return table


def _validation_loss(model: PipelineModel, estimator, test: DataFrame, label: str) -> list[float]:
    data = _labelled_features(model, test, label)
    if model_task(model) == CLASSIFICATION:
        losses = estimator.evaluateEachIteration(data)
    else:
        losses = estimator.evaluateEachIteration(data, estimator.getLossType())
    return [float(v) for v in losses]
