"""Yours: the Spark ML pipeline, from a validated dataset's columns to a prediction. Edit this to
encode features differently or to add stages; bring your own model as an entry of
``yours/estimators.py``.

``build_pipeline`` is the hook the machinery calls. The pipeline keeps the shape the rest of the
template reads back (``contract/fitted.py``): the label prepared by the first stage, an
estimator reading ``features``, and for classification an ``IndexToString`` at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkml_template.contract.estimator_spec import choose
from sparkml_template.contract.names import (
    CLASSIFICATION,
    FEATURES,
    LABEL_INDEX,
    LABEL_VALUE,
    PREDICTION,
    PREDICTION_INDEX,
)
from sparkml_template.yours.estimators import ESTIMATORS

if TYPE_CHECKING:
    from pyspark.ml import Pipeline

    from sparkml_template.contract.dataset import DatasetProfile


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
    entry = choose(ESTIMATORS, params["estimator"])
    entry.check_task(params["estimator"], task, len(profile.label_counts))
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
        indexed = [f"{n}_index" for n in categorical]
        encoded = [f"{n}_vec" for n in categorical]
        stages.append(
            StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep")
        )
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"))
        assembled += encoded
    stages += [
        VectorAssembler(inputCols=assembled, outputCol=FEATURES, handleInvalid="keep"),
        entry.make(task, params),
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
