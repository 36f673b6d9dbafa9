"""What the logged model declares to its callers: the signature a served model enforces, and
five input rows as its example."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkml_template.contract.names import PREDICTION, prediction_type
from sparkml_template.workflows.fitting import Fitted

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature


def model_example(fitted: Fitted) -> pd.DataFrame:
    """Five input rows: the logged example.

    Taken from the start of the input, where Spark stops reading after the first five rows:
    the least work of any choice of rows. The model is not run on them: the signature's output
    type is known from the pipeline (``prediction_type``), and scoring five rows through the
    whole pipeline cost a Spark job per run (docs/performance.md). Dates are given as
    ISO strings, as a CSV or JSON client sends them.
    """
    import pandas as pd

    profile = fitted.profile
    example = fitted.data.select(*profile.features).limit(5).toPandas()
    for name in profile.date_features:
        example[name] = [None if pd.isna(v) else v.isoformat() for v in example[name]]
    return example


def serving_signature(fitted: Fitted) -> ModelSignature:
    """The signature a served model enforces, declared for what clients send.

    ``pd.read_csv`` and JSON give int64 for whole numbers and float64 once a value is missing,
    so an integer column is ``long`` (Spark's int would refuse int64), and ``any`` where the
    data has nulls (MLflow's ``double`` refuses int64, and a batch without a gap is int64);
    the pipeline casts every number to double itself. Columns with nulls in the data are
    optional. Dates and timestamps are ``datetime``, which takes both the ISO strings of a CSV
    or JSON and pandas' datetime64 (``parse_dates``); MLflow converts either to datetime64.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema
    from pyspark.sql.types import (
        BooleanType,
        ByteType,
        IntegerType,
        LongType,
        ShortType,
    )

    profile = fitted.profile
    types = {f.name: f.dataType for f in fitted.data.schema.fields}
    nullable = set(profile.columns_with_nulls(profile.features))
    columns = []
    for name in profile.features:
        dtype = types[name]
        optional = name in nullable
        if isinstance(dtype, ByteType | ShortType | IntegerType | LongType):
            kind: Any = AnyType() if optional else "long"
        elif isinstance(dtype, BooleanType):
            kind = "boolean"
        elif name in profile.date_features:
            kind = "datetime"
        elif name in profile.numeric_features:
            kind = "double"
        else:
            kind = "string"
        columns.append(ColSpec(kind, name, required=not optional))
    outputs = Schema([ColSpec(prediction_type(profile.task), PREDICTION)])
    return ModelSignature(inputs=Schema(columns), outputs=outputs)
