"""The Spark ML pipeline: the one place to edit when you bring your own model.

Column names the rest of the template relies on are constants here. The label is indexed on the
way in (training only) and mapped back on the way out, so ``prediction`` holds the original label
strings (which is also what MLflow's pyfunc flavour returns when the model is served).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel

    from sparkml_template.data import DatasetProfile

LABEL_INDEX = "label_index"
FEATURES = "features"
PREDICTION_INDEX = "prediction_index"
PREDICTION = "prediction"
PROBABILITY = "probability"
RAW_PREDICTION = "raw_prediction"


def build_pipeline(profile: DatasetProfile, label: str, params: dict[str, Any]) -> Pipeline:
    """Label indexer, feature encoding, logistic regression, and the label mapped back.

    The label indexer is built from the classes the validation job already counted, so fitting
    it costs no extra pass over the data. Categorical features are indexed and one-hot encoded;
    numeric columns with nulls are imputed (only when the profile found nulls).
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import (
        Imputer,
        IndexToString,
        OneHotEncoder,
        StringIndexer,
        StringIndexerModel,
        VectorAssembler,
    )

    labels = profile.labels
    # Only the training pipeline indexes the label; inference_model() drops this stage.
    stages: list[Any] = [
        StringIndexerModel.from_labels(labels, inputCol=label, outputCol=LABEL_INDEX)
    ]
    numeric = list(profile.numeric_features)
    assembled = list(numeric)
    with_nulls = profile.columns_with_nulls(numeric)
    if with_nulls:
        imputed = [f"{name}_imputed" for name in with_nulls]
        stages.append(Imputer(inputCols=with_nulls, outputCols=imputed, strategy="median"))
        assembled = [f"{n}_imputed" if n in with_nulls else n for n in numeric]
    categorical = list(profile.categorical_features)
    if categorical:
        indexed = [f"{name}_index" for name in categorical]
        encoded = [f"{name}_vec" for name in categorical]
        stages.append(
            StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep")
        )
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"))
        assembled += encoded
    stages += [
        VectorAssembler(inputCols=assembled, outputCol=FEATURES, handleInvalid="keep"),
        LogisticRegression(
            featuresCol=FEATURES,
            labelCol=LABEL_INDEX,
            predictionCol=PREDICTION_INDEX,
            probabilityCol=PROBABILITY,
            rawPredictionCol=RAW_PREDICTION,
            regParam=params["regParam"],
            elasticNetParam=params["elasticNetParam"],
            maxIter=params["maxIter"],
        ),
        IndexToString(inputCol=PREDICTION_INDEX, outputCol=PREDICTION, labels=labels),
    ]
    return Pipeline(stages=stages)


def inference_model(fitted: PipelineModel) -> PipelineModel:
    """The fitted pipeline without its label indexer: what is logged, served and evaluated.

    Scoring data need not have a label, and evaluation data may hold classes the model never
    saw (they count as errors); neither must reach an indexer fitted on the training labels.
    """
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import StringIndexerModel

    first = fitted.stages[0]
    if isinstance(first, StringIndexerModel) and first.getOutputCol() == LABEL_INDEX:
        return PipelineModel(fitted.stages[1:])
    return fitted


def model_labels(model: Any) -> list[str]:
    """The label classes of a fitted pipeline, in index order (from its IndexToString stage)."""
    from pyspark.ml.feature import IndexToString

    for stage in reversed(model.stages):
        if isinstance(stage, IndexToString):
            return list(stage.getLabels())
    raise ValueError("the model has no IndexToString stage, so its label classes are unknown")
