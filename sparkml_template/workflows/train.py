"""The ``train`` workflow: read and validate the data, fit the pipeline, score the held-out
split, log it all (and register the model when asked)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.data import (
    DatasetProfile,
    DataSource,
    content_digest,
    profile_dataset,
    read_for_passes,
    resolve_source,
    split_labelled,
)
from sparkml_template.errors import UserError
from sparkml_template.metrics import ClassificationReport, evaluate_predictions
from sparkml_template.observability.partitions import data_partitions, record_partitions
from sparkml_template.pipeline import PREDICTION, build_pipeline, inference_model
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.params import check_training_params
from sparkml_template.workflows.registry import register_training_run

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame, SparkSession


def prepare_training(params: dict[str, Any]) -> DataSource:
    """Checks that need no Spark: hyper-parameter ranges and that local data exists."""
    check_training_params(params)
    return resolve_source(params["data"])


@dataclass
class Fitted:
    """The Spark side of a training run: the model, what it was fitted and scored on."""

    model: PipelineModel
    profile: DatasetProfile
    report: ClassificationReport
    data: DataFrame  # the input as read, before the split
    train: DataFrame
    test: DataFrame


@dataclass
class TrainingResult:
    """A logged training run: what was fitted and scored, and the logged model's URI."""

    fitted: Fitted
    model_uri: str


def fit_and_score(spark: SparkSession, params: dict[str, Any], source: DataSource) -> Fitted:
    """The Spark part of training, with no MLflow in it (tests and benchmarks call it bare)."""
    label = params["label"]
    say = console()
    with say.phase("read and validate", source.uri) as phase:
        raw = read_for_passes(spark, source)  # validation, fit and scoring each read it
        profile = profile_dataset(raw, label)
        phase.done(describe_profile(profile, label))
    fraction = params["testFraction"]
    train, test = split_labelled(raw, label, fraction, params["seed"])
    pipeline = build_pipeline(profile, label, params)
    with say.phase("fit", describe_estimator(pipeline)):
        model = inference_model(pipeline.fit(train))
    with say.phase("evaluate", "the held-out split") as phase:
        report = evaluate_predictions(model.transform(test), label, profile.labels)
        phase.done(describe_report(report))
    if report.rows == 0:
        raise UserError(
            f"the test split is empty: testFraction={fraction} of {profile.rows} rows; raise it"
        )
    return Fitted(model, profile, report, raw, train, test)


def describe_profile(profile: DatasetProfile, label: str) -> str:
    """ "569 rows, 30 features (30 numeric, 0 categorical), label diagnosis: 2 classes"."""
    dropped = f", {profile.null_label_rows} without a label" if profile.null_label_rows else ""
    return (
        f"{profile.rows} rows{dropped}, {len(profile.features)} features "
        f"({len(profile.numeric_features)} numeric, {len(profile.categorical_features)} "
        f"categorical), label {label}: {len(profile.labels)} classes"
    )


def describe_estimator(pipeline: Pipeline) -> str:
    """The estimator stage and the hyper-parameters set on it ("LogisticRegression regParam=…")."""
    from pyspark.ml.feature import IndexToString

    stages = [s for s in pipeline.getStages() if not isinstance(s, IndexToString)]
    estimator = stages[-1]
    keys = ("regParam", "elasticNetParam", "maxIter", "numTrees", "maxDepth")
    values = [
        f"{k}={estimator.getOrDefault(k):g}"
        for k in keys
        if estimator.hasParam(k) and estimator.isSet(k)
    ]
    return " ".join([type(estimator).__name__, *values])


def describe_report(report: ClassificationReport) -> str:
    shown = ("accuracy", "f1", "areaUnderROC")
    values = [f"{k} {report.metrics[k]:.4f}" for k in shown if k in report.metrics]
    return f"{', '.join(values)} on {report.rows} rows"


def model_example(fitted: Fitted) -> pd.DataFrame:
    """Five input rows and the model's predictions for them: the logged signature and example.

    Taken from the start of the input, where Spark stops reading after the first five rows:
    the least work of any choice of rows.
    """
    features = fitted.profile.features
    head = fitted.data.select(*features).limit(5)
    return fitted.model.transform(head).select(*features, PREDICTION).toPandas()


def run_training(
    spark: SparkSession, params: dict[str, Any], source: DataSource, run_id: str
) -> TrainingResult:
    """Train and log params, metrics, tags, conf, lineage and the model to run ``run_id``."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(content_digest, source)  # hashes the file while Spark trains
        fitted = fit_and_score(spark, params, source)
        data_digest = digest.result()
    model, profile, report = fitted.model, fitted.profile, fitted.report
    record_partitions(run_id, "data", data_partitions, profile)

    say = console()
    metrics = dict(report.metrics)
    metrics["test_rows"] = report.rows
    metrics["train_rows"] = profile.rows - profile.null_label_rows - report.rows
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
        tags={tracking.MODEL_TAG: tracking.MODEL_ARTIFACT_PATH},
        rows=int(metrics["train_rows"]),
    )
    with say.phase("log the model", "Spark flavour, signature, input example") as phase:
        example = model_example(fitted)
        info = tracking.log_spark_model(
            model,
            example_input=example[profile.features],
            example_output=example[PREDICTION],
            registered_model_name=params.get("registeredModelName"),
        )
        phase.done(info.model_uri)
    if info.registered_model_version is not None:  # description, lineage tags, @challenger
        register_training_run(
            params["registeredModelName"], info.registered_model_version, run_id, report
        )
    return TrainingResult(fitted, info.model_uri)
