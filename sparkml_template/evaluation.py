"""Evaluation: score a logged model on labelled data, log metrics and charts, gate on accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkml_template import tracking
from sparkml_template.data import DataSource, content_digest, read_for_passes, resolve_source
from sparkml_template.errors import UserError
from sparkml_template.metrics import ClassificationReport, evaluate_predictions
from sparkml_template.partition_metrics import prediction_partitions, record_partitions
from sparkml_template.pipeline import PREDICTION, model_labels
from sparkml_template.training import check_min_accuracy
from sparkml_template.validation import validate_evaluation_params

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession


def prepare_evaluation(params: dict[str, Any]) -> DataSource:
    """Checks that need no Spark."""
    validate_evaluation_params(params)
    return resolve_source(params["data"])


def newest_model_uri(experiment_id: str, exclude_run_id: str | None = None) -> str:
    """``runs:/…/model`` of the newest successful run in the experiment that logged a model."""
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{tracking.MODEL_TAG}` = '{tracking.MODEL_ARTIFACT_PATH}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=2,
    )
    for run in runs:
        if run.info.run_id != exclude_run_id:
            return f"runs:/{run.info.run_id}/{tracking.MODEL_ARTIFACT_PATH}"
    raise UserError(
        f"no finished training run with a model in experiment {experiment_id}; "
        "run the train entry point first or pass -P modelUri=..."
    )


def load_model(uri: str) -> PipelineModel:
    """Load a Spark model by URI (runs:/, models:/name/1, models:/name@alias, a path)."""
    import mlflow

    try:
        return mlflow.spark.load_model(uri)
    except Exception as exc:  # MlflowException, OSError, Py4J errors: all "cannot load"
        text = str(exc).strip().splitlines()
        raise UserError(
            f"cannot load model {uri!r}: {text[0] if text else type(exc).__name__}"
        ) from None


def score(model: PipelineModel, spark: SparkSession, params: dict[str, Any], source: DataSource):
    """Predictions of ``model`` on the data, with its label column checked first."""
    df = read_for_passes(spark, source)  # scored for the metrics, then per partition
    label = params["label"]
    if label not in df.columns:
        raise UserError(
            f"label column {label!r} is not in the data; columns: {', '.join(df.columns)}"
        )
    from pyspark.errors import AnalysisException, IllegalArgumentException

    try:
        return df, model.transform(df)
    except (AnalysisException, IllegalArgumentException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"the model cannot score {source.uri}: {first}") from None


def run_evaluation(
    spark: SparkSession, params: dict[str, Any], source: DataSource, run_id: str, experiment_id: str
) -> ClassificationReport:
    """Evaluate and log; raise QualityGateError below ``minAccuracy`` (after logging)."""
    uri = params["modelUri"] or newest_model_uri(experiment_id, exclude_run_id=run_id)
    model = load_model(uri)
    df, predictions = score(model, spark, params, source)
    report = evaluate_predictions(predictions, params["label"], model_labels(model))
    if report.rows == 0:
        raise UserError(f"no row of {source.uri} has a label in column {params['label']!r}")
    label = params["label"]
    record_partitions(run_id, "eval", prediction_partitions, predictions, label, PREDICTION)
    metrics = dict(report.metrics)
    metrics["eval_rows"] = report.rows
    tracking.log_run_context(
        run_id,
        spark,
        source,
        content_digest(source),
        df,
        "evaluation",
        metrics=metrics,
        tags={"evaluated_model_uri": uri},
    )
    tracking.log_evaluation_artifacts(report)
    check_min_accuracy(report, params["minAccuracy"])
    return report
