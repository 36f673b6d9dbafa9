"""What several workflows do with a logged model: find it, load it, score labelled data with it,
and log the evaluation (evaluate, promote, predict and main share these)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.fitted import Learned, model_labels, model_task
from sparkml_template.contract.names import CLASSIFICATION
from sparkml_template.errors import UserError, first_line
from sparkml_template.runtime import tracking
from sparkml_template.runtime.connect_models import load_model_via_server
from sparkml_template.runtime.session import active_session, is_connect_session
from sparkml_template.yours.data import read_for_passes
from sparkml_template.yours.scoring import ClassificationReport, Report, evaluate_model_output

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession


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
        if is_connect_session(active_session()):  # no JVM here: the server loads the files
            return load_model_via_server(uri)
        return mlflow.spark.load_model(uri)
    except UserError:
        raise
    except Exception as exc:  # MlflowException, OSError, Py4J errors: all "cannot load"
        raise UserError(f"cannot load model {uri!r}: {first_line(exc)}") from None


def score_labelled(
    model: PipelineModel, spark: SparkSession, source: DataSource, label: str
) -> tuple[DataFrame, DataFrame, Report]:
    """The data, the model's predictions on it and their report; refuses unlabelled data.

    The data is read for several passes (metrics, then per-partition accuracy); callers that
    are done with it ``unpersist`` it.
    """
    df = read_for_passes(spark, source)
    if label not in df.columns:
        raise UserError(
            f"label column {label!r} is not in the data; columns: {', '.join(df.columns)}"
        )
    from pyspark.errors import AnalysisException, IllegalArgumentException

    try:
        predictions = model.transform(df)
    except (AnalysisException, IllegalArgumentException) as exc:
        raise UserError(f"the model cannot score {source.uri}: {first_line(exc)}") from None
    task = model_task(model)
    classes = model_labels(model) if task == CLASSIFICATION else []
    report = evaluate_model_output(predictions, label, task, classes)
    if report.rows == 0:
        raise UserError(f"no row of {source.uri} has a label in column {label!r}")
    return df, predictions, report


def log_evaluation_artifacts(report: Report, prefix: str = "evaluation") -> None:
    """The charts of ``yours/charts.evaluation_charts`` and the report as JSON; for
    classification also the per-class report as a UI table."""
    import mlflow

    from sparkml_template.yours.charts import evaluation_charts

    run_id = mlflow.active_run().info.run_id
    if isinstance(report, ClassificationReport):
        name = "per_class_report.json"
        summary: dict[str, Any] = {
            "classes": report.classes,
            "confusion": report.confusion,
            "per_class": report.per_class,
            "metrics": report.metrics,
        }
    else:
        name, summary = "regression_report.json", {"metrics": report.metrics, "rows": report.rows}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        evaluation_charts(report, out)
        (out / name).write_text(json.dumps(summary, indent=2))
        tracking.log_artifact_files(run_id, out, prefix)
    if isinstance(report, ClassificationReport):
        tracking.log_table(
            run_id,
            {
                "class": list(report.per_class),
                **{
                    key: [report.per_class[c][key] for c in report.per_class]
                    for key in ("precision", "recall", "f1", "support")
                },
            },
            f"{prefix}/per_class_report_table.json",
        )


def log_what_the_model_learned(run_id: str, learned: Learned, prefix: str = "learned") -> None:
    """``training_loss`` and ``validation_loss`` as step metrics; the coefficients or feature
    importances as UI tables under ``learned/`` with ``yours/charts.learned_charts``: not
    under ``model/``, which ``runs:/<id>/model`` would mix into the logged model's files."""

    from sparkml_template.yours.charts import learned_charts

    tracking.log_series(
        run_id, {"training_loss": learned.training_loss, "validation_loss": learned.validation_loss}
    )
    if learned.coefficients:
        tracking.log_table(run_id, learned.coefficients, f"{prefix}/coefficients.json")
    if learned.importances:
        tracking.log_table(run_id, learned.importances, f"{prefix}/feature_importances.json")
    with tempfile.TemporaryDirectory() as tmp:
        if learned_charts(learned, Path(tmp)):
            tracking.log_artifact_files(run_id, Path(tmp), prefix)
