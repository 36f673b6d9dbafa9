"""The Spark form behind pyfunc, made to take what the signature allows.

MLflow's Spark pyfunc builds its Spark DataFrame with ``spark.createDataFrame(pandas_df)``, which
infers each column's type from its values: a column that is entirely null (a one-row request
with the category missing) becomes ``NullType``, and the pipeline's first stage refuses it
("must be either string type or numeric type, but got NullType"). The same row inside a bigger
batch scores. And an optional column left out of the request is simply missing for Spark. Here
such columns are left out of the inference and added as typed nulls (the type the model's
signature gives, else string), so a batch scores as its rows would anywhere, and as the numpy
form scores it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PREDICTION = "prediction"
_ROW = "__sparkml_row__"  # keeps a frame whose every column is null from having no column


class SparkForm:
    """MLflow's ``_PyFuncModelWrapper`` with all-null columns typed by the signature."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def get_raw_model(self) -> Any:
        return self.wrapped.get_raw_model()

    def _inputs(self) -> dict[str, Any]:
        signature = getattr(self.wrapped, "signature", None)
        if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
            return {}
        return signature.inputs.input_dict()

    def _null_type(self, column: str) -> Any:
        from pyspark.sql.types import StringType

        spec = self._inputs().get(column)
        if spec is not None and hasattr(spec.type, "to_spark"):
            return spec.type.to_spark()
        return StringType()

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> list[Any]:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        spark = getattr(self.wrapped, "spark", None)
        empty = [c for c in frame.columns if len(frame) and frame[c].isna().all()]
        absent = [c for c in self._inputs() if c not in frame.columns]  # optional, left out
        if not (empty or absent) or spark is None:
            return self.wrapped.predict(frame, params)
        from pyspark.sql import functions as F

        known = frame.drop(columns=empty).assign(**{_ROW: range(len(frame))})
        rows = spark.createDataFrame(known)
        for column in [*empty, *absent]:
            rows = rows.withColumn(column, F.lit(None).cast(self._null_type(column)))
        rows = rows.select(*frame.columns, *absent, _ROW)
        scored = self.wrapped.spark_model.transform(rows).orderBy(_ROW).select(PREDICTION)
        return [row[PREDICTION] for row in scored.collect()]


def load_spark_form(path: str) -> SparkForm:
    """MLflow's Spark pyfunc for the ``sparkml`` directory at ``path``, wrapped."""
    import mlflow.spark

    return SparkForm(mlflow.spark._load_pyfunc(path))
