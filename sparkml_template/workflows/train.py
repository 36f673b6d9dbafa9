"""The ``train`` workflow: read and validate the data, fit the pipeline, score the held-out
split, log it all (and register the model when asked)."""

from __future__ import annotations

import contextlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import COUNTED_FROM_FOOTERS, DatasetProfile, DataSource
from sparkml_template.contract.estimator_spec import check_values, choose, described
from sparkml_template.contract.figures import preload as preload_figures
from sparkml_template.contract.fitted import Learned, inference_model
from sparkml_template.contract.names import PREDICTION, prediction_type
from sparkml_template.dataset.sources import content_digest, resolve_source
from sparkml_template.dataset.validation import MAX_CATEGORIES, profile_dataset
from sparkml_template.errors import UserError
from sparkml_template.observability.learned import what_the_model_learned
from sparkml_template.observability.partitions import data_partitions, record_partitions
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.params import check_training_params
from sparkml_template.workflows.models import log_what_the_model_learned
from sparkml_template.workflows.registry import register_training_run
from sparkml_template.yours.data import read_for_passes, split_labelled
from sparkml_template.yours.estimators import ESTIMATORS
from sparkml_template.yours.pipeline import build_pipeline
from sparkml_template.yours.scoring import Report, evaluate_model_output

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame, SparkSession


def prepare_training(params: dict[str, Any]) -> DataSource:
    """Checks that need no Spark: hyper-parameter ranges and that local data exists."""
    check_training_params(params)
    choose(ESTIMATORS, params["estimator"])
    check_values(ESTIMATORS, params)
    return resolve_source(params["data"])


@dataclass
class Fitted:
    """The Spark side of a training run: the model, what it was fitted and scored on."""

    model: PipelineModel
    profile: DatasetProfile
    report: Report
    data: DataFrame  # the input as read, before the split
    train: DataFrame
    test: DataFrame


@dataclass(frozen=True)
class Validated:
    """Data already read and validated by the caller (``tune``'s search, which caches it), so
    that training reuses both instead of reading and validating the same data again."""

    data: DataFrame
    profile: DatasetProfile


@dataclass
class TrainingResult:
    """A logged training run: what was fitted and scored, and the logged model's URI."""

    fitted: Fitted
    model_uri: str


def fit_and_score(
    spark: SparkSession,
    params: dict[str, Any],
    source: DataSource,
    validated: Validated | None = None,
) -> Fitted:
    """The Spark part of training, with no MLflow in it (tests and benchmarks call it bare)."""
    label = params["label"]
    say = console()
    if validated is None:
        with say.phase("read and validate", source.uri) as phase:
            raw = read_for_passes(spark, source)  # validation, fit and scoring each read it
            profile = profile_dataset(
                raw, label, params["task"], params["features"], params["excludeColumns"]
            )
            phase.done(describe_profile(profile, label))
        announce_profile(profile)
    else:
        raw, profile = validated.data, validated.profile
    fraction = params["testFraction"]
    train, test = split_labelled(raw, label, fraction, params["seed"])
    pipeline = build_pipeline(profile, label, params)
    with say.phase("fit", describe_estimator(pipeline, params["estimator"])):
        model = inference_model(pipeline.fit(train))
    with say.phase("evaluate", "the held-out split") as phase:
        report = evaluate_model_output(model.transform(test), label, profile.task, profile.labels)
        phase.done(describe_report(report))
    if report.rows == 0:
        raise UserError(
            f"the test split is empty: testFraction={fraction} of {profile.rows} rows; raise it"
        )
    return Fitted(model, profile, report, raw, train, test)


def describe_profile(profile: DatasetProfile, label: str) -> str:
    """ "569 rows, 30 features (30 numeric, 0 categorical), label diagnosis: 2 classes"."""
    dropped = f", {profile.null_label_rows} without a label" if profile.null_label_rows else ""
    target = f"{len(profile.labels)} classes" if profile.labels else profile.task
    counted = (
        " (counted from the Parquet footers)"
        if profile.counted_from == COUNTED_FROM_FOOTERS
        else ""
    )
    return (
        f"{profile.rows} rows{counted}{dropped}, {len(profile.features)} features "
        f"({len(profile.numeric_features)} numeric, {len(profile.categorical_features)} "
        f"categorical), label {label}: {target}"
    )


def describe_estimator(pipeline: Pipeline, name: str) -> str:
    """The estimator stage and the hyper-parameters set on it ("LogisticRegression regParam=…")."""
    from pyspark.ml import Estimator

    estimator = next(s for s in reversed(pipeline.getStages()) if isinstance(s, Estimator))
    return described(estimator, choose(ESTIMATORS, name))


def describe_report(report: Report) -> str:
    shown = ("accuracy", "f1", "areaUnderROC", "rmse", "mae", "r2")
    values = [f"{k} {report.metrics[k]:.4f}" for k in shown if k in report.metrics]
    return f"{', '.join(values)} on {report.rows} rows"


def announce_profile(profile: DatasetProfile) -> None:
    """One line with the task and why; one warning line per string column left out."""
    print(f"task: {profile.task} ({profile.task_reason})", file=sys.stderr)
    for name, count in profile.left_out.items():
        print(
            f"warning: string column {name!r} has about {count} distinct values "
            f"(> {MAX_CATEGORIES}): left out of the features (excludeColumns={name} to say so)",
            file=sys.stderr,
        )


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
        fitted = fit_and_score(spark, params, source, validated)
        data_digest = digest.result()
    model, profile, report = fitted.model, fitted.profile, fitted.report
    record_partitions(run_id, "data", data_partitions, profile)

    say = console()
    metrics = dict(report.metrics)
    metrics["test_rows"] = report.rows
    metrics["train_rows"] = profile.labelled_rows - report.rows
    if profile.null_label_rows:
        metrics["rows_dropped_null_label"] = profile.null_label_rows
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
        )
        phase.done(info.model_uri)
    if info.registered_model_version is not None:  # description, lineage tags, @challenger
        register_training_run(
            params["registeredModelName"], info.registered_model_version, run_id, report
        )
    return TrainingResult(fitted, info.model_uri)
