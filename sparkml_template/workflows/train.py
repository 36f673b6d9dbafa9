"""The ``train`` workflow: fit and score (``fitting``), then log it all: params, metrics, tags,
lineage, what the model learned and the model with its signature (and register it when asked)."""

from __future__ import annotations

import contextlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DatasetProfile, DataSource
from sparkml_template.contract.estimator_spec import check_values, choose
from sparkml_template.contract.figures import preload as preload_figures
from sparkml_template.contract.fitted import Learned
from sparkml_template.dataset.sources import content_digest, resolve_source
from sparkml_template.observability.learned import what_the_model_learned
from sparkml_template.observability.partitions import data_partitions, record_partitions
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.params import check_training_params
from sparkml_template.runtime.run_files import active_artifact_uri
from sparkml_template.workflows.checkpoints import FitCheckpoints
from sparkml_template.workflows.fitting import Fitted, Validated, fit_and_score
from sparkml_template.workflows.models import log_what_the_model_learned
from sparkml_template.workflows.registry import register_training_run
from sparkml_template.workflows.signature import model_example, serving_signature
from sparkml_template.yours.estimators import ESTIMATORS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CHECKPOINTS_TAG = "fit.checkpoints"  # "removed 4 files (1.2 MB) from <uri>; …" or "off: <why>"


def prepare_training(params: dict[str, Any]) -> DataSource:
    """Checks that need no Spark: hyper-parameter ranges and that local data exists."""
    check_training_params(params)
    choose(ESTIMATORS, params["estimator"])
    check_values(ESTIMATORS, params)
    return resolve_source(params["data"])


@dataclass
class TrainingResult:
    """A logged training run: what was fitted and scored, and the logged model's URI."""

    fitted: Fitted
    model_uri: str


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def describe_learned(learned: Learned) -> str:
    """ "12 training_loss steps, coefficients of 9 features"."""
    parts = [
        f"{len(values)} {name} steps"
        for name, values in (
            ("training_loss", learned.training_loss),
            ("validation_loss", learned.validation_loss),
        )
        if values
    ]
    if learned.coefficients:
        parts.append(f"coefficients of {len(learned.coefficients['feature']) - 1} features")
    if learned.importances:
        parts.append(f"importances of {len(learned.importances['feature'])} features")
    return ", ".join(parts) or "nothing this model exposes"


def profile_tags(profile: DatasetProfile) -> dict[str, str]:
    """The task decision and the columns left out, as run tags."""
    tags = {
        "task": profile.task,
        "task.reason": profile.task_reason,
        "data.counted_from": profile.counted_from,
    }
    if profile.left_out:
        tags["features.left_out"] = json.dumps(profile.left_out)
    return tags


def checkpoint_record(
    checkpoints: FitCheckpoints | None,
) -> tuple[dict[str, str], dict[str, float]]:
    """The tag and metrics of a fit whose estimator checkpoints (none for one that cannot)."""
    if checkpoints is None or not checkpoints.applies:
        return {}, {}
    tags = {CHECKPOINTS_TAG: checkpoints.describe()}
    if not checkpoints.used:
        return tags, {}
    return tags, {
        "spark/checkpoint_files_peak": checkpoints.peak_files,
        "spark/checkpoint_bytes_peak": checkpoints.peak_bytes,
        "spark/checkpoint_files_removed": checkpoints.removed_files,
        "spark/checkpoint_bytes_removed": checkpoints.removed_bytes,
    }


def _preload_for_logging() -> None:
    """Work the charts and the model's logging would do on the critical path, done while Spark
    fits: MLflow's installed-package map and the matplotlib import."""
    tracking.preload_requirement_check()
    with contextlib.suppress(Exception):
        preload_figures()


def run_training(
    spark: SparkSession,
    params: dict[str, Any],
    source: DataSource,
    run_id: str,
    validated: Validated | None = None,
) -> TrainingResult:
    """Train and log params, metrics, tags, conf, lineage and the model to run ``run_id``."""
    # Two workers: the preload must not queue behind hashing a large file, or leaving the
    # pool would wait for it after the fit.
    with ThreadPoolExecutor(max_workers=2) as pool:
        digest = pool.submit(content_digest, source)  # hashes the file while Spark trains
        pool.submit(_preload_for_logging)  # and prepares what logging would wait for
        fitted = fit_and_score(
            spark, params, source, validated, artifact_uri=active_artifact_uri(run_id)
        )
        data_digest = digest.result()
    model, profile, report = fitted.model, fitted.profile, fitted.report
    record_partitions(run_id, "data", data_partitions, profile)

    say = console()
    metrics = dict(report.metrics)
    metrics["test_rows"] = report.rows
    metrics["train_rows"] = profile.labelled_rows - report.rows
    if profile.null_label_rows:
        metrics["rows_dropped_null_label"] = profile.null_label_rows
    checkpoint_tags, checkpoint_metrics = checkpoint_record(fitted.checkpoints)
    metrics.update(checkpoint_metrics)
    tracking.log_run_context(
        run_id,
        spark,
        source,
        data_digest,
        fitted.train,
        "training",
        params=tracking.stage_params(model),
        metrics=metrics,
        tags={
            tracking.MODEL_TAG: tracking.MODEL_ARTIFACT_PATH,
            "estimator": params["estimator"],
            "estimator.params": ",".join(choose(ESTIMATORS, params["estimator"]).used_params),
            **profile_tags(profile),
            **checkpoint_tags,
        },
        rows=int(metrics["train_rows"]),
    )
    with say.phase("what the model learned", "loss, coefficients or importances") as phase:
        learned = what_the_model_learned(model, fitted.test, params["label"], warn=_warn)
        log_what_the_model_learned(run_id, learned)
        phase.done(describe_learned(learned))
    with say.phase("log the model", "Spark flavour, signature, input example") as phase:
        info = tracking.log_spark_model(
            model,
            example_input=model_example(fitted),
            signature=serving_signature(fitted),
            registered_model_name=params.get("registeredModelName"),
            parity_rows=fitted.test,  # the fast form must score these as Spark does
        )
        phase.done(info.model_uri)
    if info.registered_model_version is not None:  # description, lineage tags, @challenger
        register_training_run(
            params["registeredModelName"], info.registered_model_version, run_id, report
        )
    return TrainingResult(fitted, info.model_uri)
