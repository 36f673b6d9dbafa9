"""The Spark ML pipeline: the one place to edit when you bring your own model.

``ESTIMATORS`` is the table of models the ``estimator`` parameter chooses from: per task, the
Spark class, the parameters it takes and its tuning grid. Adding an estimator is one entry there.

Column names the rest of the template relies on are constants here. For classification the label
is indexed on the way in (training only) and mapped back on the way out, so ``prediction`` holds
the original label strings (which is also what MLflow's pyfunc flavour returns when the model is
served). For regression the label is used as it is, cast to double, and ``prediction`` is the
number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkml_template.data import CLASSIFICATION, REGRESSION, TASKS
from sparkml_template.errors import UserError

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel

    from sparkml_template.data import DatasetProfile

LABEL_INDEX = "label_index"
LABEL_VALUE = "label_value"  # the regression label as a double
FEATURES = "features"
PREDICTION_INDEX = "prediction_index"
PREDICTION = "prediction"
PROBABILITY = "probability"
RAW_PREDICTION = "raw_prediction"


@dataclass(frozen=True)
class Estimator:
    """One row of the estimator table.

    ``classes`` maps a task to the dotted name of its Spark class (a task left out is refused
    with one line); ``params`` are the MLproject parameters passed to it under the same name, or
    under the Spark name given in ``rename``; ``grid`` is what ``tune`` searches (a parameter
    ``tune`` receives as a comma-separated string overrides its values here).
    """

    classes: dict[str, str]
    params: tuple[str, ...]
    grid: dict[str, list[float]]
    rename: dict[str, str] = field(default_factory=dict)
    binary_only: tuple[str, ...] = ()  # tasks whose Spark class takes two classes at most


ESTIMATORS: dict[str, Estimator] = {
    "linear": Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.LogisticRegression",
            REGRESSION: "pyspark.ml.regression.LinearRegression",
        },
        params=("regParam", "elasticNetParam", "maxIter"),
        grid={"regParam": [0.0, 0.01, 0.1], "elasticNetParam": [0.0, 0.5]},
    ),
    "random_forest": Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.RandomForestClassifier",
            REGRESSION: "pyspark.ml.regression.RandomForestRegressor",
        },
        params=("numTrees", "maxDepth", "seed"),
        grid={"numTrees": [20, 50], "maxDepth": [4, 8]},
    ),
    "gbt": Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.GBTClassifier",
            REGRESSION: "pyspark.ml.regression.GBTRegressor",
        },
        params=("maxIter", "maxDepth", "seed"),
        grid={"maxIter": [20, 50], "maxDepth": [3, 5]},
        binary_only=(CLASSIFICATION,),
    ),
}


def estimator_entry(name: str) -> Estimator:
    """The table's entry for ``name``, or one line listing the known ones."""
    if name not in ESTIMATORS:
        raise UserError(f"unknown estimator {name!r}; choose one of: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


def check_estimator_for(name: str, task: str, classes: int) -> None:
    """Refuse a (estimator, task) pair the table cannot build, before anything is fitted."""
    entry = estimator_entry(name)
    if task not in entry.classes:
        raise UserError(f"estimator {name!r} does not do {task}")
    if task in entry.binary_only and classes > 2:
        raise UserError(
            f"estimator {name!r} does binary {task} only and the label has {classes} classes; "
            "use estimator=random_forest or estimator=linear"
        )


def _spark_class(dotted: str) -> type:
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def make_estimator(name: str, task: str, params: dict[str, Any]) -> Any:
    """The Spark estimator for (``name``, ``task``), wired to the template's column names."""
    entry = estimator_entry(name)
    cls = _spark_class(entry.classes[task])
    kwargs: dict[str, Any] = {"featuresCol": FEATURES, "predictionCol": PREDICTION}
    if task == CLASSIFICATION:
        kwargs.update(labelCol=LABEL_INDEX, predictionCol=PREDICTION_INDEX)
    else:
        kwargs["labelCol"] = LABEL_VALUE
    for param in entry.params:
        if param in params:
            kwargs[entry.rename.get(param, param)] = params[param]
    estimator = cls(**kwargs)
    if task == CLASSIFICATION and estimator.hasParam("probabilityCol"):
        # set, not passed: GBTClassifier has these params but its __init__ does not take them
        estimator.set(estimator.getParam("probabilityCol"), PROBABILITY)
        estimator.set(estimator.getParam("rawPredictionCol"), RAW_PREDICTION)
    return estimator


def check_estimator_params(params: dict[str, Any]) -> None:
    """Refuse an unknown estimator or task before Spark starts."""
    estimator_entry(params["estimator"])
    if params["task"] not in TASKS:
        raise UserError(f"unknown task {params['task']!r}; choose one of: {', '.join(TASKS)}")


def estimator_stage(pipeline: Pipeline, name: str, task: str) -> Any:
    """The estimator stage of a pipeline ``build_pipeline`` made (for tune's grid)."""
    cls = _spark_class(estimator_entry(name).classes[task])
    return next(stage for stage in pipeline.getStages() if isinstance(stage, cls))


def tuning_grid(name: str, params: dict[str, Any]) -> dict[str, list[float]]:
    """The grid ``tune`` searches: the table's, where a parameter given as a comma-separated
    string (tune's regParam, elasticNetParam) replaces that parameter's values."""
    grid: dict[str, list[float]] = {}
    for param, values in estimator_entry(name).grid.items():
        given = params.get(param)
        grid[param] = parse_grid(param, given) if isinstance(given, str) else list(values)
    return grid


def parse_grid(name: str, raw: str) -> list[float]:
    """``"0.0, 0.1"`` -> [0.0, 0.1] (duplicates dropped, order kept)."""
    import math

    values: list[float] = []
    for item in str(raw).split(","):
        text = item.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{name} grid value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{name} grid value {text!r} is not a finite number")
        if value not in values:
            values.append(value)
    if not values:
        raise UserError(f"{name} grid is empty: give comma-separated numbers, e.g. 0.0,0.1")
    return values


def used_params(name: str) -> tuple[str, ...]:
    """The MLproject parameters the estimator ``name`` takes (the others it ignores)."""
    return estimator_entry(name).params


def build_pipeline(profile: DatasetProfile, label: str, params: dict[str, Any]) -> Pipeline:
    """Label preparation, feature encoding, the chosen estimator, and the label mapped back.

    The label indexer is built from the classes the validation job already counted, so fitting
    it costs no extra pass over the data. Numeric features are cast to double (so a served model
    takes int64 or float64 alike); categorical features are indexed and one-hot encoded; numeric
    columns with nulls are imputed (only when the profile found nulls).
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import (
        Imputer,
        IndexToString,
        OneHotEncoder,
        StringIndexer,
        StringIndexerModel,
        VectorAssembler,
    )

    task = profile.task
    name = params.get("estimator", "linear")
    check_estimator_for(name, task, len(profile.label_counts))
    stages: list[Any] = []
    if task == CLASSIFICATION:
        # Only the training pipeline indexes the label; inference_model() drops this stage.
        stages.append(
            StringIndexerModel.from_labels(profile.labels, inputCol=label, outputCol=LABEL_INDEX)
        )
    else:
        stages.append(_label_as_double(label))
    dates, timestamps = profile.date_features, profile.timestamp_features
    numeric = [f"{n}_double" for n in profile.numeric_features] + derived_names(dates, timestamps)
    if numeric:
        stages.append(_numeric_as_double(profile.numeric_features, dates, timestamps))
    with_nulls = [f"{n}_double" for n in profile.columns_with_nulls(profile.numeric_features)]
    with_nulls += derived_names(profile.columns_with_nulls(dates), timestamps)
    assembled = list(numeric)
    if with_nulls:
        stages.append(
            Imputer(
                inputCols=with_nulls, outputCols=[f"{n}_imputed" for n in with_nulls],
                strategy="median",
            )
        )  # fmt: skip
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
        make_estimator(name, task, params),
    ]
    if task == CLASSIFICATION:
        stages.append(
            IndexToString(inputCol=PREDICTION_INDEX, outputCol=PREDICTION, labels=profile.labels)
        )
    return Pipeline(stages=stages)


DATE_PARTS = {"year": "year", "month": "month", "dow": "dayofweek", "doy": "dayofyear"}


def derived_names(dates: list[str], timestamps: list[str]) -> list[str]:
    """The numeric columns a date (year, month, day of week, day of year) or timestamp (the same
    and the hour) column becomes."""
    names = []
    for column in dates:
        names += [f"{column}_{part}" for part in DATE_PARTS]
        if column in timestamps:
            names.append(f"{column}_hour")
    return names


def _numeric_as_double(numeric: list[str], dates: list[str], timestamps: list[str]) -> Any:
    """One SQL stage: every numeric feature cast to double, every date split into numbers.

    Inside the pipeline, so a served model applies it: int64 from pandas, int32 from Spark and
    float64 with NaN all arrive at the estimator as doubles, and a date string or timestamp
    becomes the same numbers in training and in serving.
    """
    from pyspark.ml.feature import SQLTransformer

    parts = [f"CAST(`{n}` AS DOUBLE) AS `{n}_double`" for n in numeric]
    for column in dates:
        value = f"CAST(`{column}` AS TIMESTAMP)"
        parts += [
            f"CAST({fn}({value}) AS DOUBLE) AS `{column}_{part}`" for part, fn in DATE_PARTS.items()
        ]
        if column in timestamps:
            parts.append(f"CAST(hour({value}) AS DOUBLE) AS `{column}_hour`")
    return SQLTransformer(statement=f"SELECT *, {', '.join(parts)} FROM __THIS__")


def _label_as_double(label: str) -> Any:
    """The regression label as a double (training only; inference_model() drops this stage)."""
    from pyspark.ml.feature import SQLTransformer

    return SQLTransformer(
        statement=f"SELECT *, CAST(`{label}` AS DOUBLE) AS `{LABEL_VALUE}` FROM __THIS__"
    )


def _is_label_stage(stage: Any) -> bool:
    from pyspark.ml.feature import SQLTransformer, StringIndexerModel

    if isinstance(stage, StringIndexerModel):
        return stage.getOutputCol() == LABEL_INDEX
    return isinstance(stage, SQLTransformer) and f"AS `{LABEL_VALUE}`" in stage.getStatement()


def prediction_type(task: str) -> str:
    """The MLflow type of the ``prediction`` column a pipeline of ``task`` outputs.

    Every Spark ML predictor outputs a double; a classification pipeline ends with
    ``IndexToString``, which turns it back into the label's class as a string. Known from the
    pipeline's shape, so the logged signature needs no Spark job to find it out.
    """
    return "string" if task == CLASSIFICATION else "double"


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
