"""The shape of a quality gate (``yours/scoring.py`` says which metrics and how much) and the one
check every gating entry point applies (evaluate, main, promote: exit code 3 when it fails)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sparkml_template.errors import QualityGateError


@dataclass(frozen=True)
class Gate:
    """A task's primary metric: its name, the parameter that sets its minimum, its direction.
    ``tune`` maximises it and ``promote`` compares the candidate with the champion on it."""

    metric: str
    min_param: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Threshold:
    """A bound a metric must meet; ``source`` names where it was set (a parameter) for the
    message."""

    minimum: float | None = None
    maximum: float | None = None
    source: str = ""


def check_gate(metrics: Mapping[str, float], thresholds: Mapping[str, Threshold]) -> None:
    """Raise ``QualityGateError`` (exit code 3) naming the first metric outside its threshold.

    A threshold on a metric the report lacks fails too (a gate on ``areaUnderROC`` for a
    multiclass model must not pass silently); NaN fails every bound.
    """
    for metric, bound in thresholds.items():
        if metric not in metrics:
            raise QualityGateError(f"the gate needs {metric}, which this evaluation has not")
        value = metrics[metric]
        if bound.minimum is not None and not value >= bound.minimum:
            where = bound.source or "the minimum"
            raise QualityGateError(f"{metric} {value:.4f} is below {where} {bound.minimum:.4f}")
        if bound.maximum is not None and not value <= bound.maximum:
            where = bound.source or "the maximum"
            raise QualityGateError(f"{metric} {value:.4f} is above {where} {bound.maximum:.4f}")
