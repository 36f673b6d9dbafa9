"""A signal that lands inside a finalizer still stops the run (no Spark needed).

Python runs signal handlers between bytecodes, also inside ``__del__`` and weakref callbacks
(Py4J releases Java objects from those during a fit), and drops an exception raised there.
CI once saw SIGTERM swallowed that way: the run went on and succeeded.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import pytest

from sparkml_template.workflows.interrupts import Terminated, sigterm_interrupts


class _SignalledWhileFinalized:
    """Sends ``signum`` to this process from its finalizer, so the handler runs inside it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.finalized = False

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        for _ in range(1000):  # the handler runs on one of these bytecodes, inside __del__
            self.finalized = True


def _run_until_interrupted(signum: int) -> None:
    with sigterm_interrupts():
        _SignalledWhileFinalized(signum)  # finalized at once (refcount zero)
        for _ in range(200):  # the body goes on; the interrupt must reach it
            time.sleep(0.01)


@pytest.mark.parametrize(
    ("signum", "expected"),
    [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)],
)
def test_a_signal_dropped_in_a_finalizer_is_delivered_after_it(signum, expected, capsys):
    with pytest.raises(expected):
        _run_until_interrupted(signum)
    assert "Exception ignored" not in capsys.readouterr().err


def test_other_unraisable_exceptions_still_reach_the_previous_hook(monkeypatch):
    class Broken:
        def __del__(self) -> None:
            raise ValueError("a finalizer's own bug")

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with sigterm_interrupts():
        Broken()
    assert [type(u.exc_value) for u in seen] == [ValueError]
    assert sys.unraisablehook == seen.append  # put back when the run ends


def test_later_signals_are_ignored_once_one_was_delivered():
    handled = []
    with pytest.raises(Terminated), sigterm_interrupts():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except Terminated:
            handled.append("first")
            os.kill(os.getpid(), signal.SIGTERM)  # mlflow run's follow-up: must not interrupt
            for _ in range(100):
                time.sleep(0.01)
            handled.append("capture finished")
            raise
    assert handled == ["first", "capture finished"]


def test_py4j_s_traceback_for_a_call_the_interrupt_cut_short_is_dropped(caplog):
    """Py4J logs "KeyboardInterrupt while sending command." with a traceback on the root logger
    when the signal lands in its socket read; the runner's one line is enough."""
    with pytest.raises(Terminated), sigterm_interrupts():
        logging.exception("KeyboardInterrupt while sending command.")  # no signal yet: kept
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except Terminated:
            logging.exception("KeyboardInterrupt while sending command.")  # Py4J's, dropped
            logging.warning("a warning of the run's own")
            raise
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "KeyboardInterrupt while sending command.",
        "a warning of the run's own",
    ]
    logging.exception("KeyboardInterrupt while sending command.")  # outside a run: kept
    assert len(caplog.records) == 3
