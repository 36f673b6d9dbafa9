"""The contract `pipeline.py` keeps with the rest of the template, whatever estimator it holds:
the first stage indexes the label into `label_index` (and is dropped from the logged model), the
last writes the original label values to `prediction`, and the classes can be read back; and
a profile written by hand (nulls, a string, a date) gives a pipeline that fits a tiny frame."""

from __future__ import annotations

import datetime

import pytest
from pyspark.ml.feature import IndexToString, StringIndexerModel

from sparkml_template.contract.dataset import DatasetProfile
from sparkml_template.contract.fitted import inference_model, model_labels, model_task
from sparkml_template.contract.names import (
    CLASSIFICATION,
    FEATURES,
    LABEL_INDEX,
    LABEL_VALUE,
    PREDICTION,
    PROBABILITY,
    REGRESSION,
)
from sparkml_template.dataset.validation import profile_dataset
from sparkml_template.yours.pipeline import build_pipeline

PARAMS = {"estimator": "linear", "regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 20}
ROWS = [(float(i % 7), "red" if i % 3 else "blue", 7 if i % 2 else 3) for i in range(40)]
SCHEMA = "x double, colour string, grade int"


@pytest.fixture(scope="module")
def fitted(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    profile = profile_dataset(df, "grade")
    pipeline = build_pipeline(profile, "grade", PARAMS)
    return df, profile, pipeline, pipeline.fit(df)


def test_first_stage_indexes_the_label_with_the_profiled_classes(fitted):
    _, profile, pipeline, _ = fitted
    first = pipeline.getStages()[0]
    assert isinstance(first, StringIndexerModel)
    assert first.getInputCol() == "grade" and first.getOutputCol() == LABEL_INDEX
    assert list(first.labels) == profile.labels == ["3", "7"]  # frequency order, ties by value


def test_last_stage_maps_predictions_back_to_the_label_values(fitted):
    _, profile, pipeline, _ = fitted
    last = pipeline.getStages()[-1]
    assert isinstance(last, IndexToString)
    assert last.getOutputCol() == PREDICTION and list(last.getLabels()) == profile.labels


def test_the_logged_model_drops_the_label_indexer_and_scores_unlabelled_rows(fitted):
    df, profile, _, model = fitted
    served = inference_model(model)
    assert len(served.stages) == len(model.stages) - 1
    assert not any(
        isinstance(s, StringIndexerModel) and s.getOutputCol() == LABEL_INDEX for s in served.stages
    )
    scored = served.transform(df.drop("grade"))  # no label column at all
    values = {row[PREDICTION] for row in scored.select(PREDICTION).collect()}
    assert values <= {"3", "7"} and values
    probabilities = [row[PROBABILITY] for row in scored.select(PROBABILITY).collect()]
    assert all(len(p) == 2 and sum(p) == pytest.approx(1.0) for p in probabilities)
    assert model_labels(served) == profile.labels


def test_inference_model_leaves_a_pipeline_without_label_indexer_alone(fitted):
    _, _, _, model = fitted
    served = inference_model(model)
    assert inference_model(served) is served


def test_model_labels_needs_the_mapping_stage(fitted):
    _, _, _, model = fitted
    from pyspark.ml import PipelineModel

    with pytest.raises(ValueError, match="IndexToString"):
        model_labels(PipelineModel(model.stages[:-1]))


# A profile written by hand, as validation would report it: `x` numeric with two nulls, `colour`
# a string, `day` a date; the frame is as small as a fit allows.
DAY = datetime.date(2024, 3, 1)  # a Friday: Spark's dayofweek 6, day of year 61
TINY = [
    (1.0, "red", DAY, "no"), (None, "blue", DAY, "no"), (3.0, "red", DAY, "yes"),
    (4.0, "blue", DAY, "no"), (None, "red", DAY, "yes"), (6.0, "red", DAY, "no"),
    (7.0, "blue", DAY, "yes"), (8.0, "red", DAY, "no"),
]  # fmt: skip
TINY_SCHEMA = "x double, colour string, day date, y string"


def _hand_made_profile(task: str = CLASSIFICATION) -> DatasetProfile:
    return DatasetProfile(
        rows=len(TINY),
        label_counts={"no": 5, "yes": 3} if task == CLASSIFICATION else {},
        null_label_rows=0,
        numeric_features=["x"],
        categorical_features=["colour"],
        non_null={"x": 6},
        date_features=["day"],
        task=task,
    )


def test_a_hand_made_profile_gives_a_pipeline_that_fits_and_predicts_label_strings(spark):
    df = spark.createDataFrame(TINY, TINY_SCHEMA)
    pipeline = build_pipeline(_hand_made_profile(), "y", {**PARAMS, "maxIter": 10})
    stages = [type(stage).__name__ for stage in pipeline.getStages()]
    assert stages == [
        "StringIndexerModel", "SQLTransformer", "Imputer", "StringIndexer", "OneHotEncoder",
        "VectorAssembler", "LogisticRegression", "IndexToString",
    ]  # fmt: skip
    scored = inference_model(pipeline.fit(df)).transform(df.drop("y"))
    rows = scored.collect()
    assert len(rows) == len(TINY)
    assert {row[PREDICTION] for row in rows} <= {"no", "yes"}
    # the nulls in x take the median of the other six values (Spark's quantile picks 4.0)
    assert [row["x_double_imputed"] for row in rows] == [1.0, 4.0, 3.0, 4.0, 4.0, 6.0, 7.0, 8.0]
    first = rows[0]
    assert (first["day_year"], first["day_month"], first["day_dow"], first["day_doy"]) == (
        2024.0, 3.0, 6.0, 61.0,
    )  # fmt: skip
    # x, four date parts, colour one-hot over red, blue and the slot for unseen values
    assert len(first[FEATURES]) == 1 + 4 + 3


def test_a_hand_made_regression_profile_predicts_numbers(spark):
    df = spark.createDataFrame(TINY, TINY_SCHEMA).selectExpr(
        "x", "colour", "day", "coalesce(x, 0.0) + length(colour) AS y"
    )
    pipeline = build_pipeline(_hand_made_profile(REGRESSION), "y", PARAMS)
    first = pipeline.getStages()[0]
    assert f"AS `{LABEL_VALUE}`" in first.getStatement()
    served = inference_model(pipeline.fit(df))
    assert model_task(served) == REGRESSION
    predictions = [row[PREDICTION] for row in served.transform(df.drop("y")).collect()]
    assert len(predictions) == len(TINY) and all(isinstance(p, float) for p in predictions)
    assert len(set(predictions)) > 1  # the features move the prediction
