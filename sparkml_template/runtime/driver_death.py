"""What happened when the driver JVM this process started is gone (out of memory, killed,
crashed): one line for the runner instead of Py4J's tracebacks."""

from __future__ import annotations

import logging
import subprocess
import sys

from sparkml_template.errors import UserError


def _drop_lost_driver_noise(record: logging.LogRecord) -> bool:
    """Py4J logs a traceback on the root logger for every call a dead JVM cannot answer; the
    runner says what happened in one line instead (``driver_death``). The socket breaks just
    before the process can be reaped, hence the short wait."""
    if not str(record.msg).startswith("Exception while sending command"):
        return True
    return _driver_exit_code(wait_s=2.0) is None


def quiet_lost_driver() -> None:
    """Install the filter above once (idempotent: logging keeps one copy of a filter)."""
    logging.getLogger().addFilter(_drop_lost_driver_noise)


class SparkDriverDiedError(UserError):
    """The Spark driver JVM this process started is gone (out of memory, killed, crashed)."""

    exit_code = 4


def _driver_exit_code(wait_s: float = 5.0) -> int | None:
    """The exit code of this process's driver JVM once it has exited; None while it lives.

    A call that was under way when the JVM died fails before the process is reaped, so this
    waits a few seconds for it.
    """
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is None:  # no JVM of ours: Databricks, Spark Connect, a notebook's
        return None
    try:
        return proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return None


def driver_death(exc: BaseException) -> SparkDriverDiedError | None:
    """If ``exc`` is Py4J losing a driver JVM that has exited: one line on why and what to do."""
    from_py4j = type(exc).__module__.startswith("py4j") or isinstance(exc, ConnectionError)
    if not from_py4j:
        return None
    code = _driver_exit_code()
    if code is None:
        return None
    if code == 3:  # -XX:+ExitOnOutOfMemoryError (runtime.session adds it)
        return SparkDriverDiedError(
            "the Spark driver ran out of memory and exited: give it more "
            '(PYSPARK_SUBMIT_ARGS="--driver-memory 8g pyspark-shell"), or bring less data to the '
            "driver"
        )
    if code in (-9, 137):
        return SparkDriverDiedError(
            "the Spark driver JVM was killed (SIGKILL), often by the system's out-of-memory "
            "killer: free memory on this machine or lower --driver-memory"
        )
    if code < 0:
        return SparkDriverDiedError(f"the Spark driver JVM was stopped by signal {-code}")
    return SparkDriverDiedError(
        f"the Spark driver JVM exited with code {code}; its own lines above say why"
    )
