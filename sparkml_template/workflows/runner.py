"""The frame every entry point runs in: checks, Spark start-up, the MLflow run, exit codes.

A user's mistake (``UserError``) becomes one line on stderr, exit code 2 (3 for the accuracy
gate) and a run that ends FAILED with the message in a tag. Anything else is a bug: its traceback
is kept, and the run still ends FAILED.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sparkml_template.dataset.read_errors import unreadable_input
from sparkml_template.errors import QualityGateError, UserError
from sparkml_template.observability.capture import TaskCapture
from sparkml_template.observability.environment import EnvironmentProbe
from sparkml_template.observability.report import write_report, write_summary_and_report
from sparkml_template.observability.summary import write_summary
from sparkml_template.runtime import spool
from sparkml_template.runtime.connect_models import (
    check_exchange_dir,
    check_server_reads,
    check_server_runs_ml,
)
from sparkml_template.runtime.console import console, use_console
from sparkml_template.runtime.driver_death import driver_death
from sparkml_template.runtime.params import check_common_params, param_specs, parse_params
from sparkml_template.runtime.preflight import (
    TrackingServerUnreachableError,
    TrackingStoreRefusedError,
    check_master_reachable,
    check_tracking_server,
)
from sparkml_template.runtime.session import (
    check_java,
    is_connect_master,
    is_connect_session,
    start_spark_in_background,
)
from sparkml_template.runtime.spool import ending_through_spool
from sparkml_template.runtime.switches import switched_on
from sparkml_template.workflows.interrupts import Terminated, sigterm_interrupts

if TYPE_CHECKING:
    from mlflow import ActiveRun
    from pyspark.sql import SparkSession

APP_PREFIX = "pyspark-mlflow-template"
SYSTEM_METRICS_ENV = "SPARKML_SYSTEM_METRICS"  # "off": no MLflow system metrics
SYSTEM_METRICS_INTERVAL_S = 5.0
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"
# Called by name from the spool (which may run in the replay's process): see call_when_back.
DEFERRED_REPORT = f"{write_summary_and_report.__module__}:{write_summary_and_report.__name__}"
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


def _record_failure(message: str, run_id: str | None, status: str = "FAILED") -> None:
    """End the run ``status`` with the message as a tag; never raise (the line is printed)."""
    try:
        import mlflow

        from sparkml_template.runtime.tracking import end_run_failed

        run_id = run_id or os.environ.get("MLFLOW_RUN_ID")
        if run_id is None:
            run_id = mlflow.start_run().info.run_id
            mlflow.end_run(status)
        end_run_failed(run_id, message, status)
    except Exception:  # the tracking store itself may be the problem
        pass


@contextlib.contextmanager
def _registry_uri_pinned() -> Iterator[None]:
    """Resolve MLflow's registry URI once, while Spark answers, for the rest of the run.

    Every ``MlflowClient()`` otherwise asks the active SparkSession for
    ``spark.mlflow.modelRegistryUri`` through Py4J: a round trip each time, and an exception
    once the driver has died, which would stop the capture and summary of that failure.
    """
    import mlflow

    if os.environ.get(REGISTRY_URI_ENV):
        yield
        return
    os.environ[REGISTRY_URI_ENV] = mlflow.get_registry_uri()
    try:
        yield
    finally:
        os.environ.pop(REGISTRY_URI_ENV, None)


def system_metrics_enabled() -> bool:
    """MLflow's CPU/memory/disk/network sampling of the driver, unless switched off."""
    return switched_on(SYSTEM_METRICS_ENV) and importlib.util.find_spec("psutil") is not None


def _start_system_metrics() -> bool:
    if not system_metrics_enabled():
        return False

    import mlflow

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines
    if not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):  # the user's wins
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    return True


def _start_run(run_id: str | None = None) -> ActiveRun:
    """``mlflow.start_run`` (of ``run_id``, a run the plan resumes, when given); a store that
    refuses it is one line, not MLflow's traceback."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.start_run(run_id=run_id, log_system_metrics=_start_system_metrics())
    except MlflowException as exc:
        raise TrackingStoreRefusedError(
            f"the MLflow tracking store refused the run: {exc.message}"
        ) from None


def _after_body(
    capture: TaskCapture,
    environment: EnvironmentProbe,
    run_id: str,
    entry_point: str,
    print_summary: bool,
) -> None:
    """Task metrics and the executors' environment, then the summary, description and report
    (which read their tags): written whatever the body did."""
    with console().phase("task metrics", "from the event log"):
        capture.finish()  # never raises
        environment.finish()  # never raises; it has run in the background since the start
    import mlflow

    uri = mlflow.get_tracking_uri()
    if spool.spooled_uri(uri) and spool.server_away(uri):  # both read the run back
        kwargs = {"run_id": run_id, "entry_point": entry_point, "tracking_uri": uri}
        spool.call_when_back(run_id, uri, DEFERRED_REPORT, kwargs)
        print(
            "summary, report.html: written when the tracking server answers again "
            "(or by the spool's replay)",
            file=sys.stderr,
        )
        return
    summary = write_summary(run_id, entry_point, print_it=print_summary)
    if summary is not None:
        write_report(run_id, summary)


@contextlib.contextmanager
def _unreadable_input_is_one_line() -> Iterator[None]:
    """Spark's errors for input it cannot read (a damaged, truncated, vanished or unreadable
    file), wherever the body read it: one ``UserError`` naming the file and the cause."""
    try:
        yield
    except Exception as exc:
        error = unreadable_input(exc)
        if error is None:
            raise
        raise error from None


def _master_arg(argv: list[str]) -> str:
    """The ``--master`` value as given (a Spark Connect master needs no Java here)."""
    for i, arg in enumerate(argv):
        if arg == "--master" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--master="):
            return arg.split("=", 1)[1]
    return ""


def _stop_quietly(spark: SparkSession) -> None:
    # Closed now, models still referenced are not released over gRPC from finalizers at
    # interpreter exit (which can block forever once gRPC's threads are gone).
    with contextlib.suppress(Exception):
        spark.stop()


def run_entry_point(
    entry_point: str,
    argv: list[str],
    prepare: Callable[[dict[str, Any]], Plan],
    body: Callable[[RunContext[Plan]], None],
) -> int:
    """Run ``body`` inside an MLflow run; return the process exit code.

    Everything that can be checked without Spark (Java, parameters, ``prepare``, the tracking
    server and its credentials, a standalone master) is checked before the JVM starts, so a
    mistake costs seconds. Ctrl-C and SIGTERM end the run KILLED, after the task capture.
    """
    with contextlib.ExitStack() as stack:  # what the run pins is undone after its failure too
        return _run(entry_point, argv, prepare, body, stack)


def _run(
    entry_point: str,
    argv: list[str],
    prepare: Callable[[dict[str, Any]], Plan],
    body: Callable[[RunContext[Plan]], None],
    stack: contextlib.ExitStack,
) -> int:
    run_id: str | None = None
    say = use_console(entry_point)
    try:
        with sigterm_interrupts():
            check_java(master=_master_arg(argv))  # first: Spark's own error is a traceback
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

            # A plan may name a run to continue (tune's resume); others start a new one.
            # Ended after the run's spool is sent; left RUNNING for its replay if it cannot be.
            with ending_through_spool(_start_run(getattr(prepared, "resume_run_id", None))) as run:
                run_id = run.info.run_id
                _log_entry_params(run_id, entry_point, raw)
                with say.phase("start Spark", params["master"]) as phase:
                    spark = spark_future.result()
                    phase.done(f"Spark {spark.version}")
                say.spark = spark
                if is_connect_session(spark):
                    if is_connect_master(params["master"]):  # ours to close, after everything
                        stack.callback(_stop_quietly, spark)
                    check_server_reads(spark)  # before any training, not after it
                    check_server_runs_ml(spark)
                stack.enter_context(_registry_uri_pinned())
                capture.begin(spark, run_id)
                # Its own job tag, in its own thread: not the run's work in the task tables.
                environment = EnvironmentProbe.start(spark, run_id, run.info.experiment_id)
                ctx = RunContext(
                    entry_point, params, spark, run_id, run.info.experiment_id, prepared
                )
                failure: BaseException | None = None
                try:
                    with _unreadable_input_is_one_line():
                        body(ctx)
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    gate = failure is None or isinstance(failure, QualityGateError)
                    _after_body(capture, environment, run_id, entry_point, print_summary=gate)
                    if isinstance(failure, KeyboardInterrupt):
                        mlflow.end_run("KILLED")
        return 0
    except UserError as exc:
        message = " ".join(str(exc).split())
        print(f"{entry_point}: error: {message}", file=sys.stderr)
        if not isinstance(exc, TrackingServerUnreachableError):  # nowhere to record it
            _record_failure(message, run_id)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        print(f"{entry_point}: {what}: the run ends KILLED", file=sys.stderr)
        _record_failure(what, run_id, status="KILLED")
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        died = driver_death(exc)
        if died is None:
            raise  # a bug: keep its traceback (MLflow has ended the run FAILED)
        print(f"{entry_point}: error: {died}", file=sys.stderr)
        _record_failure(str(died), run_id)
        return died.exit_code


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
