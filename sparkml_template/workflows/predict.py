"""The ``predict`` workflow, batch scoring: a logged model over a table or files, written out
with lineage columns.

Scoring is the Spark model's own ``transform``, so it runs distributed on the executors (not
row by row through pyfunc). The output keeps every input column (a label column, if present, is
just another column) and adds the predicted label, the class probabilities as an array, which
model made them and when. It is written to a staging place and swapped in only once complete
(``dataset/outputs.py``): a predict that fails or is killed leaves the previous output as it was.
Without an ``output`` the rows are the run's own artifact ``predictions/``
(``predict_results.py``, which also reads any predict's rows back).
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.names import PREDICTION, PROBABILITY
from sparkml_template.dataset import outputs
from sparkml_template.dataset.sources import content_digest, is_table_name, resolve_source
from sparkml_template.errors import UserError, first_line
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.session import is_connect_session
from sparkml_template.workflows import predict_results
from sparkml_template.workflows.models import load_model, newest_model_uri
from sparkml_template.workflows.registry import ResolvedModel, resolve_model_uri
from sparkml_template.yours.data import read_for_passes

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

MODEL_URI_COLUMN = "model_uri"
MODEL_VERSION_COLUMN = "model_version"
MODEL_RUN_ID_COLUMN = "model_run_id"
SCORED_AT_COLUMN = "scored_at"
ADDED_COLUMNS = (
    PREDICTION,
    PROBABILITY,
    MODEL_URI_COLUMN,
    MODEL_VERSION_COLUMN,
    MODEL_RUN_ID_COLUMN,
    SCORED_AT_COLUMN,
)
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


@dataclass(frozen=True)
class PredictPlan:
    """What ``predict`` will read and where it will write, checked before Spark starts."""

    source: DataSource
    output: str  # empty: the rows go into the run's artifacts
    output_is_table: bool
    overwrite: bool

    @property
    def in_run(self) -> bool:
        return not self.output


def parse_flag(name: str, raw: str) -> bool:
    """MLproject has no boolean type: accept true/false/1/0/yes/no."""
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UserError(f"{name} must be true or false, got {raw!r}")


def is_table_output(output: str) -> bool:
    """``db.table`` or ``catalog.db.table`` is a table; any other output is a Parquet path/URI.

    An output needs the schema part, so that a bare ``scored`` stays a local directory.
    """
    return is_table_name(output, qualified=True)


def normalise_output(output: str) -> str:
    """Local paths become absolute (so the run records where the files really are)."""
    from pathlib import Path

    scheme = urlparse(output).scheme
    if scheme and len(scheme) > 1:
        return output
    return str(Path(output).expanduser().resolve())


def _comparable(name: str, table: bool) -> str:
    """A path or table name in the form two names of one place share: ``file:`` URIs as paths,
    tables lower-case and qualified (``scores`` is ``default.scores``)."""
    if table:
        parts = name.lower().split(".")
        parts = parts[1:] if len(parts) == 3 and parts[0] == "spark_catalog" else parts
        return ".".join(["default", *parts] if len(parts) == 1 else parts)
    return outputs.local_path(name).rstrip("/")


def check_output_apart(output: str, output_is_table: bool, source: DataSource) -> None:
    """Refuse an output that is the input, holds it, or lies inside it: replacing it would
    destroy the data being read."""
    if output_is_table or source.format == "table":
        same = output_is_table and source.format == "table"
        if same and _comparable(output, True) == _comparable(source.uri, True):
            raise UserError(f"output {output} is the input table; write predictions elsewhere")
        return
    out, data = _comparable(output, False), _comparable(source.uri, False)
    if data == out or data.startswith(out + "/"):
        raise UserError(f"output {output} holds the input data; write predictions elsewhere")
    if out.startswith(data + "/"):
        raise UserError(f"output {output} is inside the input {source.uri}; write it elsewhere")


def prepare_predict(params: dict[str, Any]) -> PredictPlan:
    """Checks that need no Spark: the flag, an output given, and apart from the input."""
    overwrite = parse_flag("overwrite", params["overwrite"])
    output = params["output"].strip()
    source = resolve_source(params["data"])
    if not output:
        return PredictPlan(source, "", False, overwrite)
    table = is_table_output(output)
    if not table:
        output = normalise_output(output)
    check_output_apart(output, table, source)
    return PredictPlan(source, output, table, overwrite)


def signature_columns(uri: str) -> list[str]:
    """The input columns the model's signature declares (empty if it has no signature)."""
    from mlflow.models import get_model_info

    signature = get_model_info(uri).signature
    return list(signature.inputs.input_names()) if signature is not None else []


def check_input_columns(df: DataFrame, uri: str) -> None:
    """Refuse data missing a signature column, or holding a column the output would add."""
    missing = [c for c in signature_columns(uri) if c not in df.columns]
    if missing:
        raise UserError(f"the data lacks column(s) the model {uri} needs: {', '.join(missing)}")
    clashing = [c for c in ADDED_COLUMNS if c in df.columns]
    if clashing:
        raise UserError(
            f"the data already has column(s) predict adds: {', '.join(clashing)}; "
            "rename or drop them first"
        )


def refuse_existing(output: str) -> str:
    return f"output {output} already exists; pass -P overwrite=true to replace it"


def output_exists(spark: SparkSession, plan: PredictPlan) -> bool:
    """Whether the output table or path exists (Hadoop's FileSystem: local, HDFS, S3, …)."""
    if plan.output_is_table:
        return spark.catalog.tableExists(plan.output)
    if is_connect_session(spark):
        return _path_exists_on_server(spark, plan.output)
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(plan.output)
    return bool(path.getFileSystem(conf).exists(path))


def _path_exists_on_server(spark: SparkSession, path: str) -> bool:
    """Over Spark Connect: resolving a file listing of ``path`` on the server (no job) fails
    with PATH_NOT_FOUND when there is nothing there."""
    from pyspark.errors import AnalysisException

    try:
        spark.read.format("binaryFile").load(path).schema  # noqa: B018 -- analysis only
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc):
            return False
        raise
    return True


def predict_frame(
    model: PipelineModel, df: DataFrame, resolved: ResolvedModel, scored_at: datetime
) -> DataFrame:
    """Input columns plus prediction, probability array (classifiers that give one) and lineage
    columns (lazy)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = model.transform(df)
    probability = (
        [vector_to_array(F.col(PROBABILITY)).alias(PROBABILITY)]
        if PROBABILITY in scored.columns
        else []
    )
    return scored.select(
        *[F.col(c) for c in df.columns],
        F.col(PREDICTION),
        *probability,
        F.lit(resolved.uri).alias(MODEL_URI_COLUMN),
        F.lit(resolved.version).cast("string").alias(MODEL_VERSION_COLUMN),
        F.lit(resolved.run_id).cast("string").alias(MODEL_RUN_ID_COLUMN),
        F.lit(scored_at).cast("timestamp").alias(SCORED_AT_COLUMN),
    )


def _run_ended(run_id: str) -> bool:
    """Whether the MLflow run that wrote a staging output on another host has ended."""
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient().get_run(run_id).info.status != "RUNNING"
    except Exception:  # unknown: leave its staging output alone
        return False


def clean_stale_outputs(spark: SparkSession, plan: PredictPlan) -> None:
    """Remove what earlier predicts to the same output left when killed (one line each)."""
    if is_connect_session(spark) and not plan.output_is_table:
        return  # no filesystem of the server's to look at from here
    try:
        if plan.output_is_table:
            done = outputs.clean_stale_tables(spark, plan.output, _run_ended)
        else:
            done = outputs.clean_stale_files(spark, plan.output, _run_ended)
    except Exception as exc:  # leftovers are not worth failing this run for
        done = [
            f"could not look for what earlier predicts to {plan.output} left: {first_line(exc)}"
        ]
    for line in done:
        print(f"note: {line}", file=sys.stderr)


def write_predictions(
    spark: SparkSession, predictions: DataFrame, plan: PredictPlan, run_id: str = ""
) -> int:
    """Write Parquet (or a table), replacing the output whole or not at all, and return the
    row count read back from what was written.

    Over Spark Connect a file output is written with Spark's own overwrite (this process has
    no access to the server's filesystem to rename with): a failed write there can leave it
    empty, and a line says so.
    """
    from pyspark.errors import AnalysisException

    owner = outputs.current_owner(spark, run_id or uuid.uuid4().hex)
    mode = "error"  # the staging place is new; Spark Connect knows no "errorifexists"
    try:
        if plan.output_is_table:
            outputs.replace_table(
                spark,
                plan.output,
                owner,
                lambda name: predictions.write.mode(mode).saveAsTable(name),
                plan.overwrite,
            )
            return spark.table(plan.output).count()
        if is_connect_session(spark):
            if plan.overwrite:
                print(
                    f"warning: over Spark Connect {plan.output} is replaced by Spark's "
                    "overwrite, not atomically: a failed write leaves it empty",
                    file=sys.stderr,
                )
            predictions.write.mode("overwrite" if plan.overwrite else mode).parquet(plan.output)
        else:
            outputs.replace_files(
                spark,
                plan.output,
                owner,
                lambda path: predictions.write.mode(mode).parquet(path),
                plan.overwrite,
            )
        return spark.read.parquet(plan.output).count()
    except AnalysisException as exc:  # e.g. created by someone else since output_exists
        if "ALREADY_EXISTS" in str(exc):
            raise UserError(refuse_existing(plan.output)) from None
        raise UserError(f"cannot write predictions to {plan.output}: {first_line(exc)}") from None


def run_predict(
    spark: SparkSession, params: dict[str, Any], plan: PredictPlan, run_id: str, experiment_id: str
) -> dict[str, Any]:
    """Score the data with the model and log counts and the output location to ``run_id``."""
    if not plan.in_run:
        clean_stale_outputs(spark, plan)
        if output_exists(spark, plan) and not plan.overwrite:
            raise UserError(refuse_existing(plan.output))
    uri = params["modelUri"].strip() or newest_model_uri(experiment_id, exclude_run_id=run_id)
    resolved = resolve_model_uri(uri)
    df = read_for_passes(spark, plan.source)  # counted, then scored and written
    check_input_columns(df, uri)
    say = console()
    with say.phase("load the model", uri):
        model = load_model(uri)
    scored_at = datetime.now(UTC).replace(microsecond=0)
    target = plan.output or f"the run's artifacts ({predict_results.RESULTS_ARTIFACT}/)"
    in_run: dict[str, str] = {}
    with say.phase("score and write", f"{plan.source.uri} -> {target}") as phase:
        input_rows = df.count()
        frame = predict_frame(model, df, resolved, scored_at)
        if plan.in_run:
            written = predict_results.write_with_run(spark, frame, run_id)
            output, output_rows = written.location, written.rows
            in_run[predict_results.IN_RUN_TAG] = written.how
        else:
            output, output_rows = plan.output, write_predictions(spark, frame, plan, run_id)
        phase.done(f"{output_rows} rows written")
    df.unpersist()  # a no-op unless it was cached
    tags = {
        "predict.model_uri": uri,
        "predict.model_version": resolved.version or "",
        "predict.model_run_id": resolved.run_id or "",
        predict_results.OUTPUT_TAG: output,
        predict_results.FORMAT_TAG: "table" if plan.output_is_table else "parquet",
        "predict.scored_at": scored_at.isoformat(),
        **in_run,
    }
    metrics = {"input_rows": input_rows, "output_rows": output_rows}
    digest = content_digest(plan.source)
    tracking.log_run_context(
        run_id, spark, plan.source, digest, df, "scoring", metrics=metrics, tags=tags
    )
    return {**metrics, "output": output, "model_uri": uri, "scored_at": scored_at}
