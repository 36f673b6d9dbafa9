"""The ``main`` workflow (what ``mlflow run .`` runs): train, then evaluate the model on the
held-out split in the same run, and gate on ``minAccuracy`` (classification) or ``minR2``
(regression)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.gates import check_gate
from sparkml_template.workflows.models import log_evaluation_artifacts
from sparkml_template.workflows.train import TrainingResult, prepare_training, run_training
from sparkml_template.yours.scoring import validation_thresholds

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

prepare_main = prepare_training  # the same checks: main takes train's parameters and a gate


def run_main(
    spark: SparkSession, params: dict[str, Any], source: DataSource, run_id: str
) -> TrainingResult:
    """Train and log as ``train`` does, add the evaluation charts, then apply the gate."""
    result = run_training(spark, params, source, run_id)
    log_evaluation_artifacts(result.fitted.report)
    report = result.fitted.report
    check_gate(report.metrics, validation_thresholds(report.task, params))
    return result
