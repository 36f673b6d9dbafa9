"""Entry-point parameters: parsed against MLproject (the one place their types and defaults live)
and range-checked before Spark starts.

MLflow checks no parameter types (a float parameter may arrive as "abc") and forwards unknown
``-P key=value`` pairs as ``--key value``; both are caught here with one clear message, and so
are values Spark would reject deep in a stack trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sparkml_template import PROJECT_ROOT
from sparkml_template.errors import UserError

MLPROJECT = PROJECT_ROOT / "MLproject"


@dataclass(frozen=True)
class ParamSpec:
    """One typed parameter of an entry point, as MLproject declares it."""

    name: str
    type: str
    default: Any


@cache
def load_mlproject(path: Path = MLPROJECT) -> dict[str, Any]:
    """The parsed MLproject file (YAML anchors expanded)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def param_specs(entry_point: str, path: Path = MLPROJECT) -> dict[str, ParamSpec]:
    """The parameters of ``entry_point`` in declaration order."""
    entry_points = load_mlproject(path)["entry_points"]
    if entry_point not in entry_points:
        raise KeyError(f"MLproject has no entry point {entry_point!r}")
    declared = entry_points[entry_point].get("parameters") or {}
    return {
        name: ParamSpec(name, spec.get("type", "string"), spec.get("default"))
        for name, spec in declared.items()
    }


def _convert(spec: ParamSpec, raw: Any) -> Any:
    if spec.type == "float":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise UserError(f"{spec.name} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise UserError(f"{spec.name} must be a finite number, got {raw!r}")
        return value
    if spec.type == "int":
        try:
            as_float = float(raw)
        except (TypeError, ValueError):
            raise UserError(f"{spec.name} must be a whole number, got {raw!r}") from None
        if not as_float.is_integer():
            raise UserError(f"{spec.name} must be a whole number, got {raw!r}")
        return int(as_float)
    return "" if raw is None else str(raw)


def parse_params(
    entry_point: str, argv: list[str], path: Path = MLPROJECT
) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse ``--name value`` pairs against the entry point's MLproject parameters.

    Returns the typed values (defaults filled in) and the raw strings as given, which are what
    gets logged: MLflow's CLI logs the same strings and refuses a changed value for a param.
    """
    specs = param_specs(entry_point, path)
    raw: dict[str, str] = {}
    args = list(argv)
    while args:
        token = args.pop(0)
        if not token.startswith("--"):
            raise UserError(f"unexpected argument {token!r}; parameters are given as --name value")
        name, eq, inline = token[2:].partition("=")
        if name not in specs:
            valid = ", ".join(specs)
            raise UserError(
                f"unknown parameter {name!r} for entry point {entry_point!r}; valid: {valid}"
            )
        if eq:
            raw[name] = inline
        elif args:
            raw[name] = args.pop(0)
        else:
            raise UserError(f"parameter {name!r} has no value")
    values = {name: _convert(spec, raw.get(name, spec.default)) for name, spec in specs.items()}
    return values, raw


def check_training_params(params: dict[str, Any]) -> None:
    """Reject template-wide training parameters Spark would refuse, before Spark starts (the
    estimators' hyper-parameters are checked against their own table entry)."""
    if not 0.0 < params["testFraction"] < 1.0:
        raise UserError(f"testFraction must be in (0, 1), got {params['testFraction']}")


def check_common_params(params: dict[str, Any]) -> None:
    """Checks of the parameters several entry points share; the runner applies them to all."""
    if "minAccuracy" in params and not 0.0 <= params["minAccuracy"] <= 1.0:
        raise UserError(f"minAccuracy must be in [0, 1], got {params['minAccuracy']}")
    if "minR2" in params and not params["minR2"] <= 1.0:
        raise UserError(f"minR2 must be <= 1 (r2 is at most 1), got {params['minR2']}")
    if not str(params.get("label", "x")).strip():
        raise UserError("label must name a column")
    if not str(params.get("master", "x")).strip():
        raise UserError("master must be a Spark master URL such as local[*] or spark://host:7077")
