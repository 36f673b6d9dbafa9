"""Does the numpy scorer give the Spark model's answers? Both score the same rows; the labels
must be equal and every probability or regression value within ``TOLERANCE`` (relative)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sparkml_template.serving.fastform.fast_pipeline import PREDICTION, FastPipeline

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

TOLERANCE = 1e-6
MAX_ROWS = 2000
# Values this close to 0 are compared on an absolute scale: float sums in another order differ
# by a few units in the last place of their terms, not of a result that cancels to ~0.
FLOOR = 1e-12


@dataclass(frozen=True)
class Parity:
    """What the comparison found: rows compared, the largest relative difference of a number,
    how many labels differ, and whether it passes."""

    rows: int
    max_relative_difference: float
    label_mismatches: int

    @property
    def passed(self) -> bool:
        return self.label_mismatches == 0 and self.max_relative_difference <= TOLERANCE

    def describe(self) -> str:
        labels = f", {self.label_mismatches} labels differ" if self.label_mismatches else ""
        return (
            f"max relative difference {self.max_relative_difference:.1e} on {self.rows} rows"
            f"{labels}"
        )


def relative_difference(a: Any, b: Any) -> np.ndarray:
    """|a - b| / max(|a|, |b|, FLOOR), elementwise; NaN against NaN is 0, NaN against a number
    is infinite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), FLOOR)
        out = np.abs(a - b) / scale
    both_nan = np.isnan(a) & np.isnan(b)
    out = np.where(both_nan, 0.0, out)
    return np.where(np.isnan(out) | (np.isnan(a) != np.isnan(b)), np.inf, out)


def compare(fast: dict[str, Any], spark: pd.DataFrame, probability: str | None) -> Parity:
    """Compare the scorer's columns with Spark's (``prediction`` and, when given, the
    probability column as arrays)."""
    rows = len(spark)
    ours = np.asarray(fast[PREDICTION])
    theirs = spark[PREDICTION].to_numpy()
    worst = 0.0
    mismatches = 0
    if ours.dtype == object or theirs.dtype == object:
        mismatches = int(sum(a != b for a, b in zip(ours, theirs, strict=True)))
    elif rows:
        worst = float(relative_difference(ours, theirs).max())
    if probability and rows:
        expected = np.vstack([np.asarray(v, dtype=np.float64) for v in spark[probability]])
        worst = max(worst, float(relative_difference(fast[probability], expected).max()))
    return Parity(rows, worst, mismatches)


def spark_answers(
    model: PipelineModel, rows: DataFrame, inputs: list[str], probability: str | None
) -> pd.DataFrame:
    """The input columns and Spark's own answers for ``rows`` (vectors as arrays): one job."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = model.transform(rows)
    columns = [F.col(f"`{c}`") for c in inputs if c in rows.columns]
    columns.append(F.col(PREDICTION))
    if probability:
        columns.append(vector_to_array(F.col(probability)).alias(probability))
    return scored.select(*columns).toPandas()


def check_parity(
    pipeline: FastPipeline, model: PipelineModel, rows: DataFrame, limit: int = MAX_ROWS
) -> Parity:
    """Score up to ``limit`` of ``rows`` with Spark and with ``pipeline``; compare."""
    predictor = pipeline.predictor
    probability = predictor.probability_col if predictor and predictor.classifier else None
    answers = spark_answers(model, rows.limit(limit), pipeline.input_columns, probability)
    inputs = answers[[c for c in pipeline.input_columns if c in answers.columns]]
    return compare(pipeline.transform(inputs), answers, probability)
