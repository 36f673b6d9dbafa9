"""What a fitted model learned, read from its estimator stage: the loss history, coefficients or
feature importances named by the assembler's ML attributes, and for gradient-boosted trees the
loss per iteration on the held-out split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkml_template.contract.fitted import (
    INTERCEPT,
    Learned,
    fitted_estimator,
    model_labels,
    model_task,
)
from sparkml_template.contract.names import CLASSIFICATION, FEATURES, LABEL_INDEX, LABEL_VALUE
from sparkml_template.errors import first_line

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame


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
        warn(f"warning: what the model learned is not logged: {first_line(exc)}")
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
        warn(f"warning: part of what {kind} learned is not logged: {first_line(exc)}")
    return learned


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
