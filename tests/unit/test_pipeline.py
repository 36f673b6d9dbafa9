"""The contract `pipeline.py` keeps with the rest of the template, whatever estimator it holds:
the first stage indexes the label into `label_index` (and is dropped from the logged model), the
last writes the original label values to `prediction`, and the classes can be read back."""

from __future__ import annotations

import pytest
from pyspark.ml.feature import IndexToString, StringIndexerModel

from sparkml_template.contract.fitted import inference_model, model_labels
from sparkml_template.contract.names import LABEL_INDEX, PREDICTION, PROBABILITY
from sparkml_template.dataset.validation import profile_dataset
from sparkml_template.yours.pipeline import build_pipeline

PARAMS = {"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 20}
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
    assert scored.schema[PROBABILITY] is not None
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
