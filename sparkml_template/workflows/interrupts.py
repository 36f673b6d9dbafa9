"""SIGINT and SIGTERM during a run: stop the body once, then let the capture and the KILLED
status be written; under ``mlflow run``, follow the CLI when it goes."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Terminated(KeyboardInterrupt):
    """SIGTERM (``mlflow run`` cancelling, a scheduler stopping the job): handled as Ctrl-C."""


_PY4J_INTERRUPTED = "KeyboardInterrupt while sending command"


class _Interrupts:
    """SIGINT and SIGTERM stop the body once; later ones are ignored so that the capture and
    the KILLED status get written (``mlflow run`` sends SIGTERM after a Ctrl-C reached us,
    and the parent-death signal follows when the CLI itself exits).

    Python runs a signal handler between any two bytecodes, also inside a finalizer (Py4J
    releases its Java objects from weakref callbacks, often in the middle of a fit), and an
    exception raised there is dropped with an "Exception ignored in" message: the run would go
    on to succeed. ``unraisable`` sees that drop and sends the signal again a moment later,
    from a timer thread, so it lands once the finalizer (and the hook) have returned.
    """

    def __init__(self) -> None:
        self.received = False
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.received:
            return
        self.received = True
        self.signum = signum
        if signum == signal.SIGTERM:
            raise Terminated(f"signal {signum}")
        raise KeyboardInterrupt

    def quiet_py4j(self, record: logging.LogRecord) -> bool:
        """Drop Py4J's traceback for a call our own interrupt cut short (it logs one on the root
        logger); the runner says what happened in one line."""
        return self.signum is None or not str(record.msg).startswith(_PY4J_INTERRUPTED)

    def unraisable(self, unraisable: Any, previous: Callable[[Any], None]) -> None:
        """``sys.unraisablehook`` while the handler is installed: re-deliver a dropped signal."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.signum is not None:
            self.received = False
            resend = threading.Timer(0.05, os.kill, (os.getpid(), self.signum))
            resend.daemon = True
            resend.start()
            return
        previous(unraisable)


def _follow_mlflow_run() -> None:
    """Under ``mlflow run``, get SIGTERM when the CLI goes: a SIGTERM to it is not passed on.

    Linux's parent-death signal, set only when MLflow launched this process (its run id is in
    the environment and the parent is the CLI); elsewhere nothing changes.
    """
    if sys.platform != "linux" or not os.environ.get("MLFLOW_RUN_ID"):
        return
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = f.read().split(b"\0")
        if not any(part.endswith(b"mlflow") for part in parent[:2]) or b"run" not in parent:
            return
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` (and SIGINT into ``KeyboardInterrupt``), once, while
    the run is under way (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _follow_mlflow_run()
    handler = _Interrupts()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(handler.unraisable, previous=previous_hook)
    logging.getLogger().addFilter(handler.quiet_py4j)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(handler.quiet_py4j)
        sys.unraisablehook = previous_hook
        for sig, old in previous.items():
            signal.signal(sig, old)
