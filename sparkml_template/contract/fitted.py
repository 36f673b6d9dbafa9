"""What the machinery reads off a fitted pipeline that ``build_pipeline`` made.

These rely on the pipeline's shape, which your ``build_pipeline`` keeps: the label prepared by
its first stage (an indexer writing ``label_index``, or a SQL stage writing ``label_value``), an
estimator reading ``features``, and for classification an ``IndexToString`` at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.names import (
    CLASSIFICATION,
    FEATURES,
    LABEL_INDEX,
    LABEL_VALUE,
    REGRESSION,
)

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel

INTERCEPT = "(intercept)"


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


def _is_label_stage(stage: Any) -> bool:
    from pyspark.ml.feature import SQLTransformer, StringIndexerModel

    if isinstance(stage, StringIndexerModel):
        return stage.getOutputCol() == LABEL_INDEX
    return isinstance(stage, SQLTransformer) and f"AS `{LABEL_VALUE}`" in stage.getStatement()


def inference_model(fitted: PipelineModel) -> PipelineModel:
    """The fitted pipeline without its label stage: what is logged, served and evaluated.

    Scoring data need not have a label, and evaluation data may hold classes the model never
    saw (they count as errors); neither must reach an indexer fitted on the training labels.
    """
    from pyspark.ml import PipelineModel

    if fitted.stages and _is_label_stage(fitted.stages[0]):
        return PipelineModel(fitted.stages[1:])
    return fitted


def model_task(model: Any) -> str:
    """``classification`` if the fitted pipeline maps predictions back to classes, else
    ``regression`` (read from the model itself, so any logged model can be evaluated)."""
    from pyspark.ml.feature import IndexToString

    has_classes = any(isinstance(stage, IndexToString) for stage in model.stages)
    return CLASSIFICATION if has_classes else REGRESSION


def model_labels(model: Any) -> list[str]:
    """The label classes of a fitted pipeline, in index order (from its IndexToString stage)."""
    from pyspark.ml.feature import IndexToString

    for stage in reversed(model.stages):
        if isinstance(stage, IndexToString):
            return list(stage.getLabels())
    raise ValueError("the model has no IndexToString stage, so its label classes are unknown")


def fitted_estimator(model: PipelineModel) -> tuple[int, Any]:
    """The position and stage of the fitted estimator (the stage that writes ``features`` into
    a prediction): the last stage whose featuresCol is ``features``."""
    for i in range(len(model.stages) - 1, -1, -1):
        stage = model.stages[i]
        if stage.hasParam("featuresCol") and stage.getOrDefault("featuresCol") == FEATURES:
            return i, stage
    raise ValueError("the model has no stage reading the features column")
