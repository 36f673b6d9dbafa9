"""What a run says on the terminal while it runs: one line as each phase starts, one with its
outcome and duration as it ends, and, for a long phase in a log (not a terminal), a line every
``SPARKML_PROGRESS_INTERVAL`` seconds with the Spark stage it is in.

Phase lines go to stderr, next to Spark's own; stdout is kept for the summary a run prints when
it ends, so ``mlflow run . > summary.txt`` captures just that. In a terminal, Spark's own
console progress bar shows the long phases instead (``runtime.session`` turns it on there).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sparkml_template.runtime.switches import switched_on

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

QUIET_ENV = "SPARKML_PROGRESS"  # "off": no phase lines
INTERVAL_ENV = "SPARKML_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


class Phase:
    """One phase of a run; ``done(...)`` sets the outcome its closing line reports."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcome = ""

    def done(self, outcome: str) -> None:
        self.outcome = outcome


class Console:
    """Phase lines of one entry point (``[train] fit …``); silent when switched off."""

    def __init__(self, entry_point: str = "run", spark: SparkSession | None = None) -> None:
        self.entry_point = entry_point
        self.spark = spark
        self.enabled = switched_on(QUIET_ENV)

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.entry_point}] {text}", file=sys.stderr, flush=True)

    @contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[Phase]:
        """Announce ``name``, time it, and close with its outcome and duration."""
        current = Phase(name)
        self.say(f"{name}{': ' + detail if detail else ''} …")
        started = time.perf_counter()
        ticker = self._start_ticker(name, started)
        try:
            yield current
        finally:
            if ticker is not None:
                ticker.set()
        elapsed = time.perf_counter() - started
        outcome = f"{current.outcome} " if current.outcome else ""
        self.say(f"{name}: {outcome}({elapsed:.1f} s)")

    def _start_ticker(self, name: str, started: float) -> threading.Event | None:
        """Periodic lines for a log; a terminal gets Spark's progress bar instead."""
        if not self.enabled or self.spark is None or stderr_is_terminal():
            return None
        stop = threading.Event()
        interval = _interval()

        def tick() -> None:
            while not stop.wait(interval):
                where = _active_stage(self.spark)
                elapsed = time.perf_counter() - started
                self.say(f"{name}: still running after {elapsed:.0f} s{where}")

        threading.Thread(target=tick, name="sparkml-progress", daemon=True).start()
        return stop


def _active_stage(spark: SparkSession | None) -> str:
    """ ", stage 12: 37/200 tasks done" for the busiest running stage, or "" if unknown."""
    try:
        tracker = spark.sparkContext.statusTracker()  # type: ignore[union-attr]
        stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
    except Exception:  # Spark Connect (no SparkContext), a stopped context
        return ""
    stages = [s for s in stages if s is not None]
    if not stages:
        return ""
    stage = max(stages, key=lambda s: s.numTasks)
    return f", stage {stage.stageId}: {stage.numCompletedTasks}/{stage.numTasks} tasks done"


_current = Console()


def console() -> Console:
    """The console of the entry point running in this process (set by the runner)."""
    return _current


def use_console(entry_point: str, spark: SparkSession | None = None) -> Console:
    global _current
    _current = Console(entry_point, spark)
    return _current
