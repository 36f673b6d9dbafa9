"""The shape of an entry of the estimator table (``yours/estimators.py``) and what follows from
it: the range checks, the Spark estimator, the tuning grid, what ``train`` logs.

An entry declares everything about one estimator once; ``tests/unit/test_estimator_table.py``
keeps MLproject's parameters (names, types, defaults, tune's grids) equal to the table.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sparkml_template.contract.names import (
    CLASSIFICATION,
    FEATURES,
    LABEL_INDEX,
    LABEL_VALUE,
    PREDICTION,
    PREDICTION_INDEX,
    PROBABILITY,
    RAW_PREDICTION,
)
from sparkml_template.errors import UserError


@dataclass(frozen=True)
class HyperParam:
    """One hyper-parameter: its MLproject name, type, default and the range Spark accepts.

    ``spark_name`` is the Spark param it sets when that is named differently. Bounds are
    inclusive; None is unbounded.
    """

    name: str
    type: type  # int or float
    default: float
    low: float | None = None
    high: float | None = None
    spark_name: str = ""
    note: str = ""  # said after the range when a value is refused, e.g. "(Spark's range)"

    @property
    def spark(self) -> str:
        return self.spark_name or self.name

    def check(self, value: float) -> None:
        """Refuse ``value`` with one line when it is outside the range."""
        low_ok = self.low is None or value >= self.low
        high_ok = self.high is None or value <= self.high
        if low_ok and high_ok:
            return
        if self.high is None:
            wanted = f">= {self.low:g}"
        elif self.low is None:
            wanted = f"<= {self.high:g}"
        else:
            wanted = f"in [{self.low:g}, {self.high:g}]"
        note = f" {self.note}" if self.note else ""
        raise UserError(f"{self.name} must be {wanted}{note}, got {value:g}")


@dataclass(frozen=True)
class Estimator:
    """One row of the estimator table.

    ``classes`` maps a task to the dotted name of its Spark class (a task left out is refused
    with one line); ``params`` are its hyper-parameters; ``shared`` the template-wide parameters
    it takes too (``seed``); ``grid`` is what ``tune`` searches (a parameter ``tune`` receives as
    a comma-separated string replaces its values); ``binary_only`` the tasks whose Spark class
    takes two classes at most.
    """

    classes: dict[str, str]
    params: tuple[HyperParam, ...]
    grid: dict[str, list[float]]
    shared: tuple[str, ...] = ()
    binary_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.grid) - {p.name for p in self.params}
        if unknown:  # a programming error in the table: keep the traceback
            raise ValueError(f"grid names parameters the entry does not take: {sorted(unknown)}")

    @property
    def used_params(self) -> tuple[str, ...]:
        """The MLproject parameters this estimator takes (the others it ignores)."""
        return tuple(p.name for p in self.params) + self.shared

    def param(self, name: str) -> HyperParam:
        """The entry's hyper-parameter ``name`` (a name the entry does not take: KeyError)."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    def spark_class(self, task: str) -> type:
        module, _, name = self.classes[task].rpartition(".")
        return getattr(importlib.import_module(module), name)

    def make(self, task: str, values: Mapping[str, Any]) -> Any:
        """The Spark estimator for ``task``, wired to the template's column names."""
        kwargs: dict[str, Any] = {"featuresCol": FEATURES, "predictionCol": PREDICTION}
        if task == CLASSIFICATION:
            kwargs.update(labelCol=LABEL_INDEX, predictionCol=PREDICTION_INDEX)
        else:
            kwargs["labelCol"] = LABEL_VALUE
        for param in self.params:
            if param.name in values:
                kwargs[param.spark] = param.type(values[param.name])
        kwargs.update({name: values[name] for name in self.shared if name in values})
        estimator = self.spark_class(task)(**kwargs)
        if task == CLASSIFICATION and estimator.hasParam("probabilityCol"):
            # set, not passed: GBTClassifier has these params but its __init__ does not take them
            estimator.set(estimator.getParam("probabilityCol"), PROBABILITY)
            estimator.set(estimator.getParam("rawPredictionCol"), RAW_PREDICTION)
        return estimator

    def check_task(self, name: str, task: str, classes: int) -> None:
        """Refuse a task this entry cannot build, before anything is fitted."""
        if task not in self.classes:
            raise UserError(f"estimator {name!r} does not do {task}")
        if task in self.binary_only and classes > 2:
            raise UserError(
                f"estimator {name!r} does binary {task} only and the label has {classes} "
                "classes; use estimator=random_forest or estimator=linear"
            )

    def tuning_grid(self, values: Mapping[str, Any]) -> dict[str, list[float]]:
        """The grid ``tune`` searches: the table's, where a parameter given as a non-empty
        comma-separated string (tune's regParam, elasticNetParam) replaces its values."""
        grid: dict[str, list[float]] = {}
        for name, default in self.grid.items():
            given = values.get(name)
            grid[name] = parse_grid(name, given) if _is_grid(given) else list(default)
        return grid


def _is_grid(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def choose(table: Mapping[str, Estimator], name: str) -> Estimator:
    """The table's entry for ``name``, or one line listing the known ones."""
    if name not in table:
        raise UserError(f"unknown estimator {name!r}; choose one of: {', '.join(table)}")
    return table[name]


def hyper_params(table: Mapping[str, Estimator]) -> dict[str, HyperParam]:
    """Every hyper-parameter of the table by name (entries that share one share its spec)."""
    found: dict[str, HyperParam] = {}
    for entry in table.values():
        for param in entry.params:
            if found.setdefault(param.name, param) != param:
                raise ValueError(f"two different specs for hyper-parameter {param.name!r}")
    return found


def check_values(table: Mapping[str, Estimator], values: Mapping[str, Any]) -> None:
    """Range-check every hyper-parameter of the table that ``values`` holds as a number, before
    Spark starts (a value Spark would refuse deep in a stack trace is one line here)."""
    for name, param in hyper_params(table).items():
        value = values.get(name)
        if isinstance(value, int | float):
            param.check(value)


def grid_strings(table: Mapping[str, Estimator], values: Mapping[str, Any]) -> Iterable[str]:
    """The hyper-parameters ``values`` gives as comma-separated grids (tune's string params)."""
    known = hyper_params(table)
    return [name for name, value in values.items() if name in known and _is_grid(value)]


def parse_grid(name: str, raw: str) -> list[float]:
    """``"0.0, 0.1"`` -> [0.0, 0.1] (duplicates dropped, order kept)."""
    values: list[float] = []
    for item in str(raw).split(","):
        text = item.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{name} grid value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{name} grid value {text!r} is not a finite number")
        if value not in values:
            values.append(value)
    if not values:
        raise UserError(f"{name} grid is empty: give comma-separated numbers, e.g. 0.0,0.1")
    return values


def described(estimator: Any, entry: Estimator) -> str:
    """The Spark estimator and the hyper-parameters set on it ("LogisticRegression regParam=…")."""
    values = [
        f"{p.spark}={estimator.getOrDefault(p.spark):g}"
        for p in entry.params
        if estimator.hasParam(p.spark) and estimator.isSet(p.spark)
    ]
    return " ".join([type(estimator).__name__, *values])
