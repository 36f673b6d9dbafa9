"""What a run records in MLflow, besides the Spark task metrics and the evaluation charts:
params, tags, conf, lineage and the model.

Everything small is collected into dicts and sent in one ``log_batch`` call: each separate
logging call is a round trip to the tracking store.
"""

from __future__ import annotations

import contextlib
import json
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.runtime.redaction import redact_conf
from sparkml_template.runtime.session import active_session, is_connect_session

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from sparkml_template.contract.dataset import DataSource

MODEL_ARTIFACT_PATH = "model"
MODEL_TAG = "sparkml_template.model_artifact"  # set on runs that logged a model, for `evaluate`
ERROR_TAG = "sparkml_template.error"
REGISTERED_TAG = "sparkml_template.registered_model"  # "name/version" of the version it made
SERVING_FORM_TAG = "sparkml_template.serving_form"  # "fast" (numpy, no JVM) or "spark"
SERVING_REASON_TAG = "sparkml_template.serving_form.reason"  # why "spark"
PARITY_METRIC = "serving/parity_max_relative_difference"  # fast form against Spark
PARITY_ROWS_METRIC = "serving/parity_rows"
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000
# How SQLite, PostgreSQL and MySQL word a unique-constraint violation.
_DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
INTEGER_HINT = "Hint: Inferred schema contains integer column"  # MLflow's UserWarning


def environment_tags(spark: SparkSession) -> dict[str, str]:
    """Versions and placement of the run: what you need to reproduce or debug it.

    Over Spark Connect the client has no JVM: the master and application id come from the
    server's conf, the Java version is not known here, and ``spark.connect`` says so.
    """
    import mlflow
    import pyspark

    tags = {
        "spark.version": spark.version,
        "pyspark.version": pyspark.__version__,
        "python.version": platform.python_version(),
        "mlflow.version": mlflow.__version__,
    }
    if is_connect_session(spark):
        conf = spark.conf.getAll
        return {
            **tags,
            "spark.master": conf.get("spark.master", ""),
            "spark.app_id": conf.get("spark.app.id", ""),
            "spark.connect": "true",
        }
    sc = spark.sparkContext
    java_version = sc._jvm.java.lang.System.getProperty("java.version")  # type: ignore[union-attr]
    return {
        **tags,
        "java.version": str(java_version),
        "spark.master": sc.master,
        "spark.app_id": sc.applicationId,
    }


def spark_conf_items(spark: SparkSession) -> dict[str, str]:
    """The session's Spark conf: SparkConf in a classic session, the server's over Connect."""
    if is_connect_session(spark):
        return dict(spark.conf.getAll)
    return dict(spark.sparkContext.getConf().getAll())


def redacted_spark_conf(spark: SparkSession) -> dict[str, str]:
    """The effective Spark conf with secrets replaced, by Spark's own ``spark.redaction.regex``."""
    conf = spark_conf_items(spark)
    return redact_conf(conf.items(), conf.get("spark.redaction.regex"))


def stage_params(model: PipelineModel) -> dict[str, str]:
    """Every param of every fitted stage, keyed ``Class.param`` (``Class_2.param`` if repeated)."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for stage in model.stages:
        name = type(stage).__name__
        seen[name] = seen.get(name, 0) + 1
        prefix = name if seen[name] == 1 else f"{name}_{seen[name]}"
        for param, value in stage.extractParamMap().items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[f"{prefix}.{param.name}"] = text[:MAX_PARAM_LENGTH]
    return out


def pip_requirements() -> list[str]:
    """What a served copy of the model needs, pinned to the versions that trained it.

    Passed explicitly: MLflow's inference would start a second Spark session to find out.
    """
    import mlflow
    import pandas
    import pyspark

    return [
        f"mlflow=={mlflow.__version__}",
        f"pyspark=={pyspark.__version__}",
        f"pandas=={pandas.__version__}",
    ]


def preload_requirement_check() -> None:
    """Build MLflow's map of installed packages now, in a thread while Spark trains.

    Logging a model with explicit requirements checks them against that map, which MLflow
    builds on first use from every installed package's metadata, on the
    run's critical path. The function is MLflow's private one: if it moves, the map is built
    at logging time, as before.
    """
    with contextlib.suppress(Exception):
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        _init_packages_to_modules_map()


def end_run_failed(run_id: str, message: str, status: str = "FAILED") -> None:
    """End a run FAILED (or KILLED) with the one-line reason in ``ERROR_TAG`` (for the UI and
    for callers that submitted it elsewhere). While the tracking server is away both wait in
    the run's spool (``runtime.spool``)."""
    from sparkml_template.runtime import spool

    log_batch(run_id, tags={ERROR_TAG: message[:MAX_TAG_LENGTH]})
    spool.end_run(run_id, status)


def log_batch(
    run_id: str,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """One round trip for many values (the client splits over-long batches itself), through
    the run's spool when the tracking server is remote: nothing is lost if it goes away."""
    import time

    now = int(time.time() * 1000)
    records = [
        *({"kind": "metric", "key": k, "value": float(v), "timestamp": now, "step": 0}
          for k, v in (metrics or {}).items()),
        *({"kind": "param", "key": k, "value": str(v)} for k, v in (params or {}).items()),
        *({"kind": "tag", "key": k, "value": str(v), "timestamp": now}
          for k, v in (tags or {}).items()),
    ]  # fmt: skip
    _log_points(run_id, records)


def log_series(run_id: str, series: dict[str, list[float]]) -> None:
    """Step metrics (step 0, 1, ...) for each named series, in one batch call."""
    import time

    now = int(time.time() * 1000)
    _log_points(
        run_id,
        [
            {"kind": "metric", "key": name, "value": float(value), "timestamp": now, "step": step}
            for name, values in series.items()
            for step, value in enumerate(values)
        ],
    )


def _log_points(run_id: str, records: list[dict[str, Any]]) -> None:
    """Spooled for an HTTP tracking server; straight to a local store (nothing to survive)."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime import spool

    if not records:
        return
    uri = mlflow.get_tracking_uri()
    if spool.spooled_uri(uri):
        spool.log_records(run_id, records, uri)
        return
    MlflowClient().log_batch(
        run_id,
        metrics=[Metric(r["key"], r["value"], r["timestamp"], r["step"])
                 for r in records if r["kind"] == "metric"],
        params=[Param(r["key"], r["value"]) for r in records if r["kind"] == "param"],
        tags=[RunTag(r["key"], r["value"]) for r in records if r["kind"] == "tag"],
    )  # fmt: skip


def _known_size(dataset: Any, rows: int | None) -> Any:
    """The dataset with a profile we already know (or none) instead of MLflow's own.

    ``SparkDataset.profile`` runs an approximate count through Python workers over every row
    (``df.rdd``), blocking for seconds and leaving the job running.
    """
    from mlflow.data.spark_dataset import SparkDataset

    class _SizedSparkDataset(SparkDataset):
        @property
        def profile(self) -> Any:
            return None if rows is None else {"num_rows": rows}

    return _SizedSparkDataset(
        df=dataset.df, source=dataset.source, name=dataset.name, digest=dataset.digest
    )


def log_dataset(
    df: DataFrame, source: DataSource, digest: str | None, context: str, rows: int | None = None
) -> None:
    """Dataset lineage: source, schema, a digest of the data the run read, its size if known.

    MLflow infers the dataset's schema and, for integer columns, warns that they cannot hold
    missing values at inference time. That is advice about a model's signature, which the
    template declares itself (``long``, or ``any`` and optional where the data has nulls), so
    in a run's output it would only mislead: it is silenced here, and only here.
    """
    import mlflow

    name = Path(source.uri.rstrip("/")).name or source.uri
    if source.format == "table":
        dataset = mlflow.data.from_spark(df, table_name=source.uri, name=name, digest=digest)
    else:
        dataset = mlflow.data.from_spark(df, path=source.uri, name=name, digest=digest)
    dataset = _known_size(dataset, rows)
    if _spool_instead(dataset, context):
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", INTEGER_HINT, UserWarning)
        try:
            mlflow.log_input(dataset, context=context)
        except mlflow.exceptions.MlflowException as exc:
            # The server looks the dataset up, then inserts it: two runs logging the same data
            # at once race, and the loser gets a unique-constraint error. Again, it finds the row.
            if not any(text in str(exc) for text in _DUPLICATE_ROW):
                raise
            mlflow.log_input(dataset, context=context)


def _spool_instead(dataset: Any, context: str) -> bool:
    """While the tracking server is away, the dataset input waits in the run's spool."""
    import mlflow

    from sparkml_template.runtime import spool

    uri, run = mlflow.get_tracking_uri(), mlflow.active_run()
    if run is None or not spool.spooled_uri(uri) or not spool.server_away(uri):
        return False
    try:  # MLflow's own conversion (private): if it moves, the input is sent as before
        entity = dataset._to_mlflow_entity().to_dictionary()
    except Exception:
        return False
    payload = json.dumps(entity).encode()
    spool.log_file(run.info.run_id, uri, "input", dataset.name, payload, context=context)
    return True


def log_run_context(
    run_id: str,
    spark: SparkSession,
    source: DataSource,
    digest: str | None,
    dataset: DataFrame,
    context: str,
    *,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    rows: int | None = None,
) -> None:
    """What every run that reads data logs, the same way in train, evaluate and predict.

    One batch with the run's own params, metrics and tags plus the environment tags and the
    data's URI and content digest; then the redacted Spark conf and the dataset lineage.
    """
    context_tags = {**environment_tags(spark), "data.uri": source.uri}
    if digest:
        context_tags["data.digest"] = digest
    log_batch(run_id, params=params, metrics=metrics, tags={**context_tags, **(tags or {})})
    log_json(redacted_spark_conf(spark), "spark_conf.json")
    log_dataset(dataset, source, digest, context=context, rows=rows)


def log_json(obj: Any, artifact_file: str) -> None:
    """A JSON artifact (through ``log_dict`` for a local store, through the run's spool for a
    tracking server, which may go away)."""
    import mlflow

    from sparkml_template.runtime import spool

    uri, run = mlflow.get_tracking_uri(), mlflow.active_run()
    if run is None or not spool.spooled_uri(uri):
        mlflow.log_dict(obj, artifact_file)
        return
    payload = json.dumps(obj, indent=2, default=str).encode()
    spool.log_file(run.info.run_id, uri, "artifact", artifact_file, payload)


def log_artifact_files(run_id: str, local: Path, artifact_dir: str | None = None) -> None:
    """A file, or every file under a directory (keeping their relative paths), as the run's
    artifacts under ``artifact_dir``: straight to a local store; through the run's spool for a
    tracking server, so that files logged while it is away are sent when it is back (or by the
    replay) instead of failing after MLflow's retries."""
    import mlflow

    from sparkml_template.runtime import spool

    uri = mlflow.get_tracking_uri()
    if not spool.spooled_uri(uri):
        client = mlflow.tracking.MlflowClient()
        if local.is_dir():
            client.log_artifacts(run_id, str(local), artifact_dir)
        else:
            client.log_artifact(run_id, str(local), artifact_dir)
        return
    files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
    for path in files:
        relative = path.relative_to(local).as_posix() if local.is_dir() else path.name
        name = f"{artifact_dir.rstrip('/')}/{relative}" if artifact_dir else relative
        spool.log_file(run_id, uri, "artifact", name, path.read_bytes())


def log_table(run_id: str, frame: Any, artifact_file: str) -> None:
    """A pandas table (or a dict of columns) the UI shows as one (``MlflowClient.log_table``'s
    JSON and run tag), through the run's spool for a tracking server (see
    ``log_artifact_files``). Unlike MLflow's, a table logged again replaces the file instead of
    appending to it."""
    import mlflow

    from sparkml_template.runtime import spool

    uri = mlflow.get_tracking_uri()
    if not spool.spooled_uri(uri):
        mlflow.tracking.MlflowClient().log_table(run_id, frame, artifact_file)
        return
    if isinstance(frame, dict):
        import pandas as pd

        frame = pd.DataFrame(frame)
    payload = frame.to_json(orient="split", index=False, date_format="iso").encode()
    spool.log_file(run_id, uri, "table", artifact_file, payload)


def log_spark_model(
    model: PipelineModel,
    example_input: Any,
    signature: Any,
    registered_model_name: str | None,
    parity_rows: DataFrame | None = None,
) -> ModelInfo:
    """Log the fitted pipeline with a signature and input example (no requirement inference),
    and its fast form when it has one (``serving.flavor``).

    Goes through ``Model.log`` with ``validate_serving_input=False``: ``mlflow.spark.log_model``
    always reloads the saved model and scores the example (seconds of Spark jobs per run). The
    test suite does that check once instead (pyfunc reload, ``mlflow models predict``/``serve``).
    ``parity_rows`` (held-out input rows) are scored by Spark and by the numpy scorer: the fast
    form is kept only when they agree. The run gets ``SERVING_FORM_TAG`` and the parity metrics;
    a model served with Spark says why in one line. Over Spark Connect the server writes the
    model's files (``runtime.connect_models``) and the model keeps its Spark form.
    """
    import mlflow
    from mlflow.models import Model

    from sparkml_template.runtime.switches import switched_on
    from sparkml_template.serving import flavor as serving_flavor
    from sparkml_template.serving.fastform import fast_pipeline

    options = {
        "signature": signature,
        "input_example": example_input,
        "pip_requirements": pip_requirements(),
        "registered_model_name": registered_model_name or None,
        "validate_serving_input": False,
    }
    outcome = serving_flavor.Outcome()
    if is_connect_session(active_session()):  # no JVM here: the server saves the files
        from sparkml_template.runtime.connect_models import log_model_via_server

        info = log_model_via_server(model, MODEL_ARTIFACT_PATH, **options)
        outcome.reason = "over Spark Connect the model keeps its Spark form only"
    else:
        info = Model.log(
            artifact_path=None,  # deprecated in MLflow 3: the logged model's name is what resolves
            name=MODEL_ARTIFACT_PATH,  # runs:/<run id>/model
            flavor=serving_flavor,
            flavor_name=mlflow.spark.FLAVOR_NAME,  # the logged model's flavour, as before
            spark_model=model,
            parity_rows=parity_rows,
            outcome=outcome,
            fast=switched_on(fast_pipeline.SWITCH),
            **options,
        )
    record_serving_form(info.run_id, outcome)
    return info


def record_serving_form(run_id: str | None, outcome: Any) -> None:
    """The serving form as a tag (and why Spark), the parity result as metrics; one stderr line
    when the model is served with Spark."""
    import sys

    tags = {SERVING_FORM_TAG: outcome.form}
    metrics = {}
    if outcome.reason:
        tags[SERVING_REASON_TAG] = outcome.reason[:MAX_TAG_LENGTH]
        print(
            f"note: the model serves with Spark (a JVM, ~0.3 s a request): {outcome.reason}",
            file=sys.stderr,
        )
    if outcome.parity is not None:
        metrics[PARITY_METRIC] = min(outcome.parity.max_relative_difference, 1e300)
        metrics[PARITY_ROWS_METRIC] = outcome.parity.rows
    if run_id:
        log_batch(run_id, metrics=metrics, tags=tags)
