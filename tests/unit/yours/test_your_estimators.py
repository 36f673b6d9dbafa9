"""Your estimator table (yours/estimators.py), entry by entry: each builds its Spark class for
every task it declares, wired to the pipeline's columns with the table's defaults, refuses what it
cannot do in one line, and fits a tiny frame. MLproject's side of the table:
tests/unit/test_estimator_table.py."""

from __future__ import annotations

import pytest

from sparkml_template.contract.dataset import DatasetProfile
from sparkml_template.contract.estimator_spec import hyper_params
from sparkml_template.contract.fitted import inference_model
from sparkml_template.contract.names import (
    CLASSIFICATION,
    FEATURES,
    LABEL_INDEX,
    LABEL_VALUE,
    PREDICTION,
    PREDICTION_INDEX,
    PROBABILITY,
    REGRESSION,
)
from sparkml_template.errors import UserError
from sparkml_template.yours.estimators import ESTIMATORS
from sparkml_template.yours.pipeline import build_pipeline

DEFAULTS = {name: param.default for name, param in hyper_params(ESTIMATORS).items()}
EVERY_CLASS = [(name, task) for name, entry in ESTIMATORS.items() for task in entry.classes]
# Small enough for a 12-row frame to fit in a second or two.
SMALL = {"maxIter": 5, "numTrees": 3, "maxDepth": 2, "regParam": 0.01, "seed": 3}


@pytest.mark.parametrize(("name", "task"), EVERY_CLASS)
def test_each_entry_makes_its_spark_class_on_the_pipelines_columns(spark, name, task):
    entry = ESTIMATORS[name]
    estimator = entry.make(task, {**DEFAULTS, "seed": 3})
    assert type(estimator) is entry.spark_class(task)
    assert estimator.getFeaturesCol() == FEATURES
    if task == CLASSIFICATION:
        assert estimator.getLabelCol() == LABEL_INDEX
        assert estimator.getPredictionCol() == PREDICTION_INDEX
        assert estimator.getProbabilityCol() == PROBABILITY
    else:
        assert (estimator.getLabelCol(), estimator.getPredictionCol()) == (LABEL_VALUE, PREDICTION)
    for param in entry.params:
        assert estimator.getOrDefault(param.spark) == param.default, param.name
    if "seed" in entry.shared:
        assert estimator.getSeed() == 3


def test_a_binary_only_entry_refuses_more_classes_in_one_line():
    gbt = ESTIMATORS["gbt"]
    gbt.check_task("gbt", CLASSIFICATION, 2)
    gbt.check_task("gbt", REGRESSION, 0)
    with pytest.raises(UserError, match=r"^estimator 'gbt' does binary classification only and"):
        gbt.check_task("gbt", CLASSIFICATION, 3)
    ESTIMATORS["linear"].check_task("linear", CLASSIFICATION, 3)


def test_a_task_an_entry_lacks_is_refused():
    entry = ESTIMATORS["linear"]
    with pytest.raises(UserError, match="estimator 'linear' does not do clustering"):
        entry.check_task("linear", "clustering", 0)


@pytest.mark.parametrize(("name", "task"), EVERY_CLASS)
def test_each_entry_fits_a_tiny_frame(spark, name, task):
    rows = [(float(i), float(i % 3), "yes" if i % 2 else "no", i * 1.5) for i in range(12)]
    df = spark.createDataFrame(rows, "a double, b double, y_class string, y_value double")
    label = "y_class" if task == CLASSIFICATION else "y_value"
    profile = DatasetProfile(
        rows=12,
        label_counts={"no": 6, "yes": 6} if task == CLASSIFICATION else {},
        null_label_rows=0,
        numeric_features=["a", "b"],
        categorical_features=[],
        task=task,
    )
    features = df.select("a", "b", label)
    model = build_pipeline(profile, label, {"estimator": name, **SMALL}).fit(features)
    predictions = [r[PREDICTION] for r in inference_model(model).transform(df).collect()]
    assert len(predictions) == 12
    if task == CLASSIFICATION:
        assert set(predictions) <= {"no", "yes"}
    else:
        assert all(isinstance(p, float) for p in predictions)
