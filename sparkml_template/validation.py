"""Range checks on entry-point parameters that Spark would reject deep in a stack trace."""

from __future__ import annotations

from typing import Any

from sparkml_template.errors import UserError


def validate_training_params(params: dict[str, Any]) -> None:
    """Reject hyper-parameters Spark's LogisticRegression would refuse, before Spark starts."""
    if params["regParam"] < 0:
        raise UserError(f"regParam must be >= 0, got {params['regParam']}")
    if not 0.0 <= params["elasticNetParam"] <= 1.0:
        raise UserError(f"elasticNetParam must be in [0, 1], got {params['elasticNetParam']}")
    if params["maxIter"] < 1:
        raise UserError(f"maxIter must be >= 1, got {params['maxIter']}")
    if not 0.0 < params["testFraction"] < 1.0:
        raise UserError(f"testFraction must be in (0, 1), got {params['testFraction']}")
    _validate_common(params)


def validate_evaluation_params(params: dict[str, Any]) -> None:
    """Checks shared by evaluation-style entry points."""
    _validate_common(params)


def _validate_common(params: dict[str, Any]) -> None:
    if "minAccuracy" in params and not 0.0 <= params["minAccuracy"] <= 1.0:
        raise UserError(f"minAccuracy must be in [0, 1], got {params['minAccuracy']}")
    if not str(params.get("label", "x")).strip():
        raise UserError("label must name a column")
    if not str(params.get("master", "x")).strip():
        raise UserError("master must be a Spark master URL such as local[*] or spark://host:7077")
