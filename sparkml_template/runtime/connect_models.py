"""Logging and loading a Spark model over Spark Connect, where the client has no JVM.

MLflow's Spark flavour copies a saved model between Spark's filesystem and the client through
the client's JVM, which a Connect client does not have. Here the server saves the fitted
pipeline into a directory this machine can also read (the *exchange directory*), and MLflow logs
those files as an ordinary Spark-flavour model (``sparkml/`` + ``MLmodel``): loading, serving
and ``predict`` treat it like any other. Loading goes the other way: the model's files are
downloaded into the exchange directory and the server loads them from there.

The exchange directory is ``SPARKML_CONNECT_MODEL_DIR``, else ``MLFLOW_DFS_TMP``, else a
directory under this machine's temp dir (right when the server runs on this machine). On
Databricks serverless it must be a Unity Catalog volume (``MLFLOW_DFS_TMP=/Volumes/…``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import types
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.errors import UserError

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

MODEL_DIR_ENV = "SPARKML_CONNECT_MODEL_DIR"
DFS_TMP_ENV = "MLFLOW_DFS_TMP"
DEFAULT_DIR = Path(tempfile.gettempdir()) / "sparkml-template-connect-models"
SPARKML_SUBDIR = "sparkml"  # where MLflow's Spark flavour keeps the Spark model's own files


def exchange_dir(env: dict[str, str] | None = None) -> Path:
    """The exchange directory (not checked; see ``check_exchange_dir``)."""
    env = os.environ if env is None else env
    given = env.get(MODEL_DIR_ENV, "").strip() or env.get(DFS_TMP_ENV, "").strip()
    volume = given.removeprefix("dbfs:").startswith("/Volumes/")
    if env.get("DATABRICKS_RUNTIME_VERSION") and not volume:
        raise UserError(
            "on Databricks serverless the model is written through a Unity Catalog volume: set "
            f"{DFS_TMP_ENV}=/Volumes/<catalog>/<schema>/<volume>/tmp (got {given or 'nothing'!r})"
        )
    if not given:
        return DEFAULT_DIR
    path = given.removeprefix("dbfs:").removeprefix("file://").removeprefix("file:")
    if not path.startswith("/"):
        raise UserError(
            f"{MODEL_DIR_ENV} must be an absolute path that both the Spark Connect server and "
            f"this machine can read and write (a shared disk, a mounted bucket), got {given!r}"
        )
    return Path(path)


def check_exchange_dir(env: dict[str, str] | None = None) -> Path:
    """Fail with one line unless this process can create and write the exchange directory."""
    directory = exchange_dir(env)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write the Spark Connect model directory {directory} ({exc.strerror or exc}): "
            f"set {MODEL_DIR_ENV} to a directory the server and this machine share"
        ) from None
    return directory


def check_server_reads(spark: SparkSession, env: dict[str, str] | None = None) -> Path:
    """Fail with one line unless the Spark Connect server reads what this process writes into
    the exchange directory (same disk or mount): one tiny read, before any training."""
    from pyspark.errors import PySparkException

    directory = check_exchange_dir(env)
    token = uuid.uuid4().hex
    marker = directory / f"probe-{token}.txt"  # Spark skips names starting with . or _
    try:
        marker.write_text(token)
        try:
            seen = [row[0] for row in spark.read.text(str(marker)).collect()]
        except PySparkException:
            seen = []
    finally:
        marker.unlink(missing_ok=True)
    if seen != [token]:
        raise UserError(
            f"the Spark Connect server cannot read {directory}, where models are exchanged with "
            f"it: set {MODEL_DIR_ENV} to a directory the server and this machine share"
        )
    return directory


def check_server_runs_ml(spark: SparkSession) -> None:
    """Fail with one line unless the Spark Connect server runs Spark ML: one feature transformer
    analysed on the server (no job), before any training. A server without Spark ML (no
    spark-mllib on its classpath, a Spark before 4.0, a platform that blocks it) refuses it."""
    from pyspark.errors import PySparkException
    from pyspark.ml.feature import VectorAssembler

    try:
        assembler = VectorAssembler(inputCols=["id"], outputCol="features")
        _ = assembler.transform(spark.range(1)).columns  # analysed on the server: no job
    except PySparkException as exc:
        raise UserError(
            "the Spark Connect server cannot run Spark ML (it answered: "
            f"{_server_said(exc)}): it needs Spark 4 with spark-mllib on its classpath "
            "(on Databricks serverless, environment version 4 or later)"
        ) from None


def _server_said(exc: Exception) -> str:
    """The server's own words from a Connect error, without the gRPC wrapping around them."""
    text = str(exc)
    found = re.search(r'details = "([^"]*)"', text)
    said = found.group(1) if found else (text.strip().splitlines() or [type(exc).__name__])[0]
    return said[:300]


def _copying_flavor(saved: Path) -> types.SimpleNamespace:
    """A stand-in for the ``mlflow.spark`` module in ``Model.log``: its ``save_model`` copies
    the files the server saved, then writes MLflow's Spark-flavour metadata around them."""
    import mlflow.spark

    def save_model(spark_model: Any, path: str, mlflow_model: Any, **kwargs: Any) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.copytree(saved, Path(path) / SPARKML_SUBDIR)
        # Private, but the only writer of the flavour's exact layout; mlflow is pinned exactly.
        mlflow.spark._save_model_metadata(
            dst_dir=path,
            spark_model=spark_model,
            mlflow_model=mlflow_model,
            conda_env=None,
            code_paths=None,
            signature=kwargs.get("signature"),
            input_example=kwargs.get("input_example"),
            pip_requirements=kwargs.get("pip_requirements"),
        )

    return types.SimpleNamespace(__name__="mlflow.spark", save_model=save_model)


def log_model_via_server(model: PipelineModel, name: str, **log_kwargs: Any) -> ModelInfo:
    """Log ``model`` (fitted over Spark Connect) as a Spark-flavour MLflow model.

    ``log_kwargs`` are ``Model.log``'s (signature, input example, pip requirements, registered
    model name …).
    """
    from mlflow.models import Model

    staging = exchange_dir() / f"model-{uuid.uuid4().hex}"
    try:
        model.write().overwrite().save(str(staging / SPARKML_SUBDIR))  # written by the server
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=_copying_flavor(staging / SPARKML_SUBDIR),
            spark_model=model,
            **log_kwargs,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_model_via_server(uri: str) -> PipelineModel:
    """Load a Spark-flavour model by URI through the exchange directory (the server reads it)."""
    import mlflow
    from mlflow.models import Model
    from pyspark.ml import PipelineModel

    staging = exchange_dir() / f"load-{uuid.uuid4().hex}"
    try:
        staging.mkdir(parents=True)
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
        flavor = Model.load(local).flavors.get("spark")
        if flavor is None:
            raise UserError(f"model {uri!r} has no Spark flavour; it cannot score over Spark")
        return PipelineModel.load(str(Path(local) / flavor["model_data"]))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
