"""The flavour module ``runtime.tracking`` logs a model with (``Model.log(flavor=...)``).

``save_model`` writes MLflow's Spark flavour as ``mlflow.spark.save_model`` does, then, when the
saved pipeline converts (``fast_pipeline``) and scores the held-out rows as Spark does
(``parity``), makes the numpy scorer the model's ``python_function`` loader: shipped in the
model's ``code/`` folder, so ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and
``build-docker`` score without a JVM. The ``spark`` flavour stays as it was, for
``mlflow.spark.load_model`` and batch scoring. Otherwise pyfunc serves the Spark form (the
MLmodel and the outcome say why), through the same shipped package.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.serving.fastform import fast_pipeline
from sparkml_template.serving.parity import Parity, check_parity

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

SPARKML_SUBDIR = "sparkml"
CODE_SUBDIR = "code"
# The numpy form travels in the model's code folder under a name of its own, so that it never
# shadows the project's package in a process that has both.
SHIPPED_PACKAGE = "sparkml_fastform"
FAST = fast_pipeline.FAST  # the values of the serving-form tag
SPARK = "spark"


@dataclass
class Outcome:
    """How the model is served: ``fast`` with its parity result, or ``spark`` and why."""

    form: str = SPARK
    reason: str = ""
    parity: Parity | None = None


def convert(path: Path, spark_model: PipelineModel, parity_rows: DataFrame | None) -> Outcome:
    """Load the saved pipeline with the numpy scorer and check it against Spark on
    ``parity_rows``; never raises for a model it cannot serve (the outcome says why)."""
    try:
        pipeline = fast_pipeline.load_pipeline(path / SPARKML_SUBDIR)
    except fast_pipeline.NotConvertible as exc:
        return Outcome(SPARK, f"{exc.stage} is not convertible: {exc.reason}")
    if parity_rows is None:
        return Outcome(SPARK, "no held-out rows to check its answers against Spark's")
    try:
        parity = check_parity(pipeline, spark_model, parity_rows)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Outcome(SPARK, f"the numpy scorer failed on the held-out rows: {exc}")
    if parity.rows == 0:
        return Outcome(SPARK, "no held-out rows to check its answers against Spark's", parity)
    if not parity.passed:
        return Outcome(SPARK, f"its answers differ from Spark's: {parity.describe()}", parity)
    return Outcome(FAST, "", parity)


def save_model(
    spark_model: PipelineModel,
    path: str,
    mlflow_model: Any = None,
    parity_rows: DataFrame | None = None,
    outcome: Outcome | None = None,
    fast: bool = True,
    **kwargs: Any,
) -> None:
    """``mlflow.spark.save_model``, then the fast pyfunc form when it converts and agrees.

    ``parity_rows``: held-out input rows (up to ``parity.MAX_ROWS`` are scored by both);
    ``outcome``: filled in with what happened; ``fast=False`` keeps the Spark form alone.
    """
    import mlflow.spark
    from mlflow.models.model import MLMODEL_FILE_NAME

    mlflow.spark.save_model(spark_model, path, mlflow_model=mlflow_model, **kwargs)
    result = outcome if outcome is not None else Outcome()
    if fast:
        found = convert(Path(path), spark_model, parity_rows)
        result.form, result.reason, result.parity = found.form, found.reason, found.parity
    else:
        result.form, result.reason = SPARK, f"{fast_pipeline.SWITCH} is off"
    if mlflow_model is None:
        return
    # Both forms load through the shipped package: the Spark one then takes a batch whose
    # column is all null, which MLflow's own Spark pyfunc refuses (``spark_form``).
    code = Path(path) / CODE_SUBDIR
    code.mkdir(exist_ok=True)
    shipped = code / SHIPPED_PACKAGE
    shutil.rmtree(shipped, ignore_errors=True)
    shutil.copytree(
        Path(fast_pipeline.__file__).parent, shipped, ignore=shutil.ignore_patterns("__pycache__")
    )
    conf = mlflow_model.flavors["python_function"]
    conf["loader_module"] = f"{SHIPPED_PACKAGE}.fast_pipeline"
    conf["code"] = CODE_SUBDIR
    parity = result.parity
    conf[fast_pipeline.CONF_KEY] = {
        fast_pipeline.FORM_KEY: result.form,
        "parity_rows": parity.rows if parity else 0,
        "max_relative_difference": parity.max_relative_difference if parity else 0,
        "spark_form": f"{fast_pipeline.SWITCH}=off when serving",
    }
    if result.form != FAST:
        conf[fast_pipeline.CONF_KEY]["why_spark"] = result.reason
    mlflow_model.save(str(Path(path) / MLMODEL_FILE_NAME))
