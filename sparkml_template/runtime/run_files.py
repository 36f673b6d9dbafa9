"""Where Spark itself can write under an MLflow run's artifact location.

Large things a run makes (a predict's scored rows, a long tree fit's checkpoints) are best
written by the executors straight into the run's artifact location: nothing passes through the
driver and nothing is copied afterwards. That works only where every executor can reach that
location through Hadoop's FileSystem: a distributed store (``s3a``, ``gs``, ``abfss``, ``hdfs``,
a Unity Catalog volume on DBFS), or a local path when the executors are this process's own
(``local[*]``). Everywhere else (the tracking server's proxied ``mlflow-artifacts:`` store, a
local path seen from a cluster's executors or a Spark Connect server, Databricks' managed
``dbfs:/databricks/mlflow-tracking`` store, which Spark may not write) the answer is ``None`` and
the caller stages: it writes somewhere it can and logs the files through MLflow's client.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from sparkml_template.runtime.session import is_connect_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Stores every executor reaches through Hadoop's FileSystem under the same URI as the driver.
SHARED_SCHEMES = frozenset(
    {"s3a", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "hdfs", "viewfs", "dbfs"}
)
# Databricks' own MLflow artifact store: reached through MLflow's API, not by Spark's writers.
MANAGED_DBFS_PREFIX = "/databricks/mlflow-tracking"


def active_artifact_uri(run_id: str) -> str | None:
    """The run's artifact location read off the active run (no round trip to the tracking
    server, which may be away); ``None`` if ``run_id`` is not the active run."""
    import mlflow

    run = mlflow.active_run()
    return str(run.info.artifact_uri) if run is not None and run.info.run_id == run_id else None


def is_local_master(spark: SparkSession) -> bool:
    """A classic session whose executors run in this process (``local``, ``local[*]``, …)."""
    if is_connect_session(spark):
        return False
    return str(spark.sparkContext.master).startswith("local")


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The directory of a ``file:`` (or bare path) artifact location, else ``None``."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if not parsed.scheme or len(parsed.scheme) == 1:  # a path (a Windows drive letter too)
        return Path(artifact_uri)
    return None


def spark_uri_under_run(spark: SparkSession, artifact_uri: str, name: str) -> str | None:
    """The URI at which Spark's writers can put ``name`` inside the run's artifact location
    (so MLflow lists it as the run's artifact ``name``), or ``None`` when they cannot."""
    local = local_artifact_dir(artifact_uri)
    if local is not None:
        return (local / name).as_uri() if is_local_master(spark) else None
    parsed = urlparse(artifact_uri)
    scheme = parsed.scheme.lower()
    if scheme == "s3":  # the same bucket through Hadoop's S3A connector
        return f"s3a{artifact_uri[2:].rstrip('/')}/{name}"
    if scheme == "dbfs" and parsed.path.startswith(MANAGED_DBFS_PREFIX):
        return None
    if scheme in SHARED_SCHEMES:
        return f"{artifact_uri.rstrip('/')}/{name}"
    return None
