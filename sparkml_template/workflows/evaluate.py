"""The ``evaluate`` workflow: score a logged model on labelled data, log metrics and charts, and
gate on the task's primary metric, ``minAccuracy`` or ``minR2`` (after everything is logged)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.gates import check_gate
from sparkml_template.contract.names import PREDICTION
from sparkml_template.dataset.sources import content_digest, resolve_source
from sparkml_template.observability.partitions import prediction_partitions, record_partitions
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.workflows.fitting import describe_report
from sparkml_template.workflows.models import (
    load_model,
    log_evaluation_artifacts,
    newest_model_uri,
    score_labelled,
)
from sparkml_template.yours.scoring import Report, validation_thresholds

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def prepare_evaluation(params: dict[str, Any]) -> DataSource:
    """Checks that need no Spark: that local data exists."""
    return resolve_source(params["data"])


def run_evaluation(
    spark: SparkSession, params: dict[str, Any], source: DataSource, run_id: str, experiment_id: str
) -> Report:
    """Evaluate and log; raise QualityGateError below the task's minimum (after logging)."""
    uri = params["modelUri"] or newest_model_uri(experiment_id, exclude_run_id=run_id)
    label = params["label"]
    say = console()
    with say.phase("load the model", uri):
        model = load_model(uri)
    with say.phase("score", source.uri) as phase:
        df, predictions, report = score_labelled(model, spark, source, label)
        phase.done(describe_report(report))
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
        tags={"evaluated_model_uri": uri, "task": report.task},
    )
    log_evaluation_artifacts(report)
    check_gate(report.metrics, validation_thresholds(report.task, params))
    return report
