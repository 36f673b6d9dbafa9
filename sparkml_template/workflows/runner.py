"""The frame every entry point runs in: checks, Spark start-up, the MLflow run, exit codes.

A user's mistake (``UserError``) becomes one line on stderr, exit code 2 (3 for the accuracy
gate) and a run that ends FAILED with the message in a tag. Anything else is a bug: its traceback
is kept, and the run still ends FAILED.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sparkml_template.errors import UserError
from sparkml_template.observability.capture import TaskCapture
from sparkml_template.runtime.connect_models import check_exchange_dir, check_server_reads
from sparkml_template.runtime.params import check_common_params, param_specs, parse_params
from sparkml_template.runtime.preflight import (
    TrackingServerUnreachableError,
    check_master_reachable,
    check_tracking_server,
)
from sparkml_template.runtime.session import (
    check_java,
    is_connect_master,
    is_connect_session,
    start_spark_in_background,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

APP_PREFIX = "pyspark-mlflow-template"
Plan = TypeVar("Plan")  # what an entry point's ``prepare`` returns: its checked inputs
_launched_jvm = False  # an entry point started this process's JVM (not a notebook or test)


def _no_jvm_yet() -> bool:
    """True until this process has a Py4J gateway to a JVM (one per process, never replaced)."""
    if "pyspark" not in sys.modules:
        return True
    from pyspark import SparkContext

    return SparkContext._gateway is None


@dataclass
class RunContext(Generic[Plan]):
    """What an entry point's body gets: its typed params, Spark, the MLflow run, and the plan
    its ``prepare`` made before Spark started."""

    entry_point: str
    params: dict[str, Any]
    spark: SparkSession
    run_id: str
    experiment_id: str
    prepared: Plan


def _log_entry_params(run_id: str, entry_point: str, raw: dict[str, str]) -> None:
    """Log the entry point's params unless ``mlflow run`` already did (it logs the same strings)."""
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime.tracking import log_batch

    given = {
        name: raw.get(name, "" if s.default is None else str(s.default))
        for name, s in param_specs(entry_point).items()
    }
    logged = MlflowClient().get_run(run_id).data.params
    missing = {k: v for k, v in given.items() if k not in logged}
    if missing:
        log_batch(run_id, params=missing)


def _record_failure(message: str, run_id: str | None) -> None:
    """End the run FAILED with the message as a tag; never raise (the line is already printed)."""
    try:
        import mlflow

        from sparkml_template.runtime.tracking import end_run_failed

        run_id = run_id or os.environ.get("MLFLOW_RUN_ID")
        if run_id is None:
            run_id = mlflow.start_run().info.run_id
            mlflow.end_run("FAILED")
        end_run_failed(run_id, message)
    except Exception:  # the tracking store itself may be the problem
        pass


def _master_arg(argv: list[str]) -> str:
    """The ``--master`` value as given (a Spark Connect master needs no Java here)."""
    for i, arg in enumerate(argv):
        if arg == "--master" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--master="):
            return arg.split("=", 1)[1]
    return ""


def run_entry_point(
    entry_point: str,
    argv: list[str],
    prepare: Callable[[dict[str, Any]], Plan],
    body: Callable[[RunContext[Plan]], None],
) -> int:
    """Run ``body`` inside an MLflow run; return the process exit code.

    Everything that can be checked without Spark (Java, parameters, ``prepare``, the tracking
    server, a standalone master) is checked before the JVM starts, so a mistake costs seconds.
    """
    run_id: str | None = None
    connect: SparkSession | None = None  # a Spark Connect session this call opened
    try:
        check_java(master=_master_arg(argv))  # first: Spark's own error for it is a traceback
        params, raw = parse_params(entry_point, argv)
        check_common_params(params)
        prepared = prepare(params)
        check_tracking_server()  # seconds, where MLflow's retries would take minutes
        check_master_reachable(params["master"])
        if is_connect_master(params["master"]):
            check_exchange_dir()  # where the server and this process exchange models
        capture = TaskCapture()  # the event log dir must exist before the SparkContext starts
        global _launched_jvm
        _launched_jvm = _launched_jvm or _no_jvm_yet()
        spark_future = start_spark_in_background(
            params["master"], f"{APP_PREFIX}:{entry_point}", capture.spark_conf()
        )
        import mlflow  # imported while the JVM starts

        with mlflow.start_run() as run:
            run_id = run.info.run_id
            _log_entry_params(run_id, entry_point, raw)
            spark = spark_future.result()
            if is_connect_session(spark):
                if is_connect_master(params["master"]):
                    connect = spark
                check_server_reads(spark)  # before any training, not after it
            capture.begin(spark, run_id)
            ctx = RunContext(entry_point, params, spark, run_id, run.info.experiment_id, prepared)
            try:
                body(ctx)
            finally:
                capture.finish()  # also after a failed body; never raises
        return 0
    except UserError as exc:
        message = " ".join(str(exc).split())
        print(f"{entry_point}: error: {message}", file=sys.stderr)
        if not isinstance(exc, TrackingServerUnreachableError):  # nowhere to record it
            _record_failure(message, run_id)
        return exc.exit_code
    except KeyboardInterrupt:
        _record_failure("interrupted", run_id)
        return 130
    finally:
        if connect is not None:
            # Closed now, models still referenced are not released over gRPC from finalizers
            # at interpreter exit (which can block forever once gRPC's threads are gone).
            with contextlib.suppress(Exception):
                connect.stop()


def exit_process(code: int) -> None:
    """Exit an entry point's process with ``code``, skipping interpreter teardown if we can.

    Once the run has ended, tearing the interpreter down (thousands of Py4J proxies and
    modules) takes a noticeable share of a short run and does nothing for the user. When an
    entry point launched this process's JVM, the atexit handlers (MLflow's and logging's) run,
    stdio is flushed, and the process ends at once; the JVM sees its stdin close and shuts Spark
    down as usual. Elsewhere (Databricks' runner, a notebook, the tests running an entry point
    inside their own process) it is a plain ``sys.exit``.
    """
    started_for_script = sys.orig_argv[1:2] == sys.argv[:1]  # `python main.py`, not pytest
    gateway = None
    if _launched_jvm and started_for_script and not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        from pyspark import SparkContext

        gateway = SparkContext._gateway
    if getattr(gateway, "proc", None) is None:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
