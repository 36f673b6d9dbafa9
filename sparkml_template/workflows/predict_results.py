"""A ``predict`` without an ``output``: the scored rows live with the run, as its artifact
``predictions/`` (Parquet), and one call reads any predict's results back.

Where Spark's executors can write into the run's artifact location (``runtime/run_files.py``:
a local store under ``local[*]``, ``s3a``, ``gs``, ``abfss``, ``hdfs``, a volume), they write
there directly and nothing passes through the driver. Elsewhere (a tracking server's proxied
``mlflow-artifacts:`` store, a cluster or Spark Connect with a local artifact store) the rows
are staged and logged through MLflow's client: written by Spark to a local directory when the
executors are this process's own, else streamed to the driver one partition at a time
(``toLocalIterator``) into Parquet files. The run is new, so there is nothing to replace: no
staging swap is needed, and a failed predict leaves a FAILED run with no ``predict.output``.

Reading back (``read_predictions``) follows the run's ``predict.output`` tag, so it works the
same for results in the run, a Parquet path given as ``output`` and a table.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.errors import UserError
from sparkml_template.runtime.run_files import (
    active_artifact_uri,
    is_local_master,
    spark_uri_under_run,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

RESULTS_ARTIFACT = "predictions"  # the run's artifact directory holding a predict's rows
OUTPUT_TAG = "predict.output"  # where the rows are: a URI, a path or a table name
FORMAT_TAG = "predict.output_format"  # "parquet" or "table"
IN_RUN_TAG = "predict.output_in_run"  # "direct" (written by the executors) or "logged"
ROWS_PER_FILE = 1_000_000  # rows per Parquet file when the driver stages them
BATCH_ROWS = 50_000  # rows the driver holds at once while staging


@dataclass(frozen=True)
class Written:
    """Where a predict's rows went, how many, and how they got there."""

    location: str
    rows: int
    how: str  # IN_RUN_TAG's value


def artifact_uri_of(run_id: str) -> str:
    """The run's artifact location (from the active run when it is this one: no round trip)."""
    import mlflow

    active = active_artifact_uri(run_id)
    return active or str(mlflow.tracking.MlflowClient().get_run(run_id).info.artifact_uri)


def write_with_run(spark: SparkSession, predictions: DataFrame, run_id: str) -> Written:
    """Write ``predictions`` as the run's ``predictions/`` artifact and count what was written."""
    artifact_uri = artifact_uri_of(run_id)
    location = f"{artifact_uri.rstrip('/')}/{RESULTS_ARTIFACT}"
    direct = spark_uri_under_run(spark, artifact_uri, RESULTS_ARTIFACT)
    if direct is not None:
        predictions.write.mode("error").parquet(direct)
        return Written(direct, spark.read.parquet(direct).count(), "direct")
    staging = Path(tempfile.mkdtemp(prefix="sparkml-predictions-"))
    try:
        files = staging / RESULTS_ARTIFACT
        if is_local_master(spark):
            predictions.write.mode("error").parquet(str(files))
            rows = spark.read.parquet(str(files)).count()
            _drop_bookkeeping(files)
        else:
            rows = stream_to_parquet(predictions, files)
        from mlflow.tracking import MlflowClient

        MlflowClient().log_artifacts(run_id, str(files), RESULTS_ARTIFACT)
        return Written(location, rows, "logged")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _drop_bookkeeping(directory: Path) -> None:
    """Hadoop's checksum files and ``_SUCCESS`` mean nothing once logged through MLflow."""
    for path in directory.iterdir():
        if path.name.startswith((".", "_")):
            path.unlink()


def stream_to_parquet(frame: DataFrame, directory: Path) -> int:
    """Pull ``frame`` to the driver a partition at a time and write Parquet files of at most
    ``ROWS_PER_FILE`` rows, holding at most ``BATCH_ROWS`` rows in memory; the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import TimestampType

    schema = to_arrow_schema(frame.schema, timezone="UTC")
    # PySpark gives a timestamp as a naive datetime in this machine's local time: made an
    # instant again here, or Arrow would read the wall-clock time as UTC.
    instants = [f.name for f in frame.schema.fields if isinstance(f.dataType, TimestampType)]
    directory.mkdir(parents=True)
    rows, in_file, part, writer = 0, 0, 0, None
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer, in_file, part
        if writer is None:
            writer = pq.ParquetWriter(directory / f"part-{part:05d}.parquet", schema)
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        in_file += len(batch)
        batch.clear()
        if in_file >= ROWS_PER_FILE:
            writer.close()
            writer, in_file, part = None, 0, part + 1

    try:
        for row in frame.toLocalIterator(prefetchPartitions=True):
            record = row.asDict(recursive=True)
            for name in instants:
                if record[name] is not None:
                    record[name] = record[name].astimezone(UTC)
            batch.append(record)
            rows += 1
            if len(batch) >= min(BATCH_ROWS, ROWS_PER_FILE - in_file):
                flush()
        if batch or rows == 0:
            flush()  # an empty result is still a readable Parquet file with the schema
    finally:
        if writer is not None:
            writer.close()
    return rows


def read_predictions(run_id: str, spark: SparkSession | None = None) -> DataFrame | pd.DataFrame:
    """The rows a ``predict`` run wrote, wherever they went: a Spark DataFrame when ``spark``
    is given (read where they are when Spark can, else downloaded first), else pandas.

    >>> scored = read_predictions("0a1b…")                 # pandas
    >>> scored = read_predictions("0a1b…", spark=spark)    # Spark
    """
    import mlflow

    run = mlflow.tracking.MlflowClient().get_run(run_id)
    location = run.data.tags.get(OUTPUT_TAG)
    if not location:
        raise UserError(f"run {run_id} is not a finished predict: it has no {OUTPUT_TAG} tag")
    if run.data.tags.get(FORMAT_TAG) == "table":
        if spark is None:
            raise UserError(f"run {run_id} wrote the table {location}: pass a SparkSession")
        return spark.table(location)
    in_run = run.data.tags.get(IN_RUN_TAG)
    if spark is not None and in_run != "logged":
        return spark.read.parquet(location)
    if in_run is None:  # a Parquet path or URI of the user's
        import pandas as pd

        return pd.read_parquet(location)
    import pandas as pd

    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=RESULTS_ARTIFACT)
    if spark is None:
        return pd.read_parquet(local)
    if is_local_master(spark):
        return spark.read.parquet(Path(local).as_uri())
    return spark.createDataFrame(pd.read_parquet(local))  # the executors cannot see `local`
