"""The Spark part of training that ``train``, ``tune``, ``main`` and the JVM warm-up share: read
and validate, split, fit, score the held-out rows, and the one-line descriptions of each step.
No MLflow here."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import COUNTED_FROM_FOOTERS, DatasetProfile, DataSource
from sparkml_template.contract.estimator_spec import choose, described
from sparkml_template.contract.fitted import inference_model
from sparkml_template.dataset.validation import MAX_CATEGORIES, profile_dataset
from sparkml_template.errors import UserError
from sparkml_template.runtime.console import console
from sparkml_template.workflows.checkpoints import FitCheckpoints, fit_checkpoints
from sparkml_template.yours.data import read_for_passes, read_source, split_labelled
from sparkml_template.yours.estimators import ESTIMATORS
from sparkml_template.yours.pipeline import build_pipeline
from sparkml_template.yours.scoring import Report, evaluate_model_output

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class Fitted:
    """The Spark side of a training run: the model, what it was fitted and scored on."""

    model: PipelineModel
    profile: DatasetProfile
    report: Report
    data: DataFrame  # the input as read, before the split
    train: DataFrame
    test: DataFrame
    checkpoints: FitCheckpoints | None = None  # what the fit's checkpoints did


@dataclass(frozen=True)
class Validated:
    """Data already read and validated by the caller (``tune``'s search, which caches it), so
    that training reuses both instead of reading and validating the same data again."""

    data: DataFrame
    profile: DatasetProfile


def fit_and_score(
    spark: SparkSession,
    params: dict[str, Any],
    source: DataSource,
    validated: Validated | None = None,
    *,
    artifact_uri: str | None = None,
) -> Fitted:
    """The Spark part of training, with no MLflow in it (tests and benchmarks call it bare):
    read and validate (unless ``validated`` brings both), split, fit, score the held-out rows.

    ``artifact_uri``: the run's artifact location, under which a long tree or GBT fit
    checkpoints (``checkpoints.fit_checkpoints``); ``None``, a bare fit, never checkpoints.
    """
    label = params["label"]
    say = console()
    if validated is None:
        validated = read_and_validate(spark, params, source)
    raw, profile = validated.data, validated.profile
    fraction = params["testFraction"]
    train, test = split_labelled(raw, label, fraction, params["seed"])
    pipeline = build_pipeline(profile, label, params)
    train_rows = round(profile.labelled_rows * (1 - fraction))  # the split's, without a job
    with (
        fit_checkpoints(spark, pipeline, train_rows, artifact_uri) as checkpoints,
        say.phase("fit", describe_estimator(pipeline, params["estimator"])),
    ):
        model = inference_model(checkpoints.pipeline.fit(train))
    if checkpoints.used:
        say.say(f"fit checkpoints: {checkpoints.describe()}")
    with say.phase("evaluate", "the held-out split") as phase:
        report = evaluate_model_output(model.transform(test), label, profile.task, profile.labels)
        phase.done(describe_report(report))
    if report.rows == 0:
        raise UserError(
            f"the test split is empty: testFraction={fraction} of {profile.rows} rows; raise it"
        )
    return Fitted(model, profile, report, raw, train, test, checkpoints)


def read_and_validate(
    spark: SparkSession, params: dict[str, Any], source: DataSource, cache: bool = False
) -> Validated:
    """Read ``source`` and validate it in one job, then say the task and why.

    ``cache``: keep any format in memory, for a caller that passes over the data many times
    (tune: every fold of every grid point; the caller unpersists it). Otherwise the reader's
    own rule applies (``read_for_passes``: CSV cached, columnar sources re-read).
    """
    label = params["label"]
    with console().phase("read and validate", source.uri) as phase:
        raw = read_source(spark, source).cache() if cache else read_for_passes(spark, source)
        profile = profile_dataset(
            raw, label, params["task"], params["features"], params["excludeColumns"]
        )
        phase.done(describe_profile(profile, label))
    announce_profile(profile)
    return Validated(raw, profile)


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
