"""The ``promote`` workflow, a promotion gate: score the candidate and the current champion on
the same data, and move ``@champion`` only when the candidate is good enough and better by the
required margin.

Both models are scored by the same code as ``evaluate`` (``models.score_labelled``), so the
numbers compared here are the numbers ``evaluate`` would report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.fitted import model_labels, model_task
from sparkml_template.contract.gates import Gate, check_gate
from sparkml_template.contract.names import CLASSIFICATION
from sparkml_template.dataset.sources import resolve_source
from sparkml_template.errors import QualityGateError, UserError
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.workflows.models import load_model, log_evaluation_artifacts, score_labelled
from sparkml_template.workflows.registry import (
    CHALLENGER,
    CHAMPION,
    find_champion,
    get_version,
    resolve_model_uri,
    set_champion,
)
from sparkml_template.yours.scoring import GATES, Report, validation_thresholds

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PROMOTED = "promoted"
FIRST_CHAMPION = "first_champion"
KEPT = "kept_champion"
BELOW_MINIMUM = "below_min_accuracy"  # kept for classification; minR2 gives the same outcome
ALREADY_CHAMPION = "already_champion"


@dataclass(frozen=True)
class Decision:
    """The outcome of the gate and the one-line reason logged with it."""

    outcome: str
    reason: str

    @property
    def moves_champion(self) -> bool:
        return self.outcome in (PROMOTED, FIRST_CHAMPION)


def prepare_promotion(params: dict[str, Any]) -> DataSource:
    """Checks that need no Spark: a model name, the margin's range, that local data exists."""
    if not params["registeredModelName"].strip():
        raise UserError("registeredModelName is empty: name the registered model to promote in")
    if not 0.0 <= params["promotionMargin"] <= 1.0:
        raise UserError(f"promotionMargin must be in [0, 1], got {params['promotionMargin']}")
    return resolve_source(params["data"])


def decide(
    candidate: float,
    champion: float | None,
    minimum: float,
    margin: float,
    gate: Gate = GATES[CLASSIFICATION],
) -> Decision:
    """Pure rule: at least the minimum, and (if there is a champion) better by more than margin,
    "better" in the gate metric's direction."""
    metric = gate.metric
    if not candidate >= minimum:  # NaN is below any minimum
        return Decision(BELOW_MINIMUM, f"{metric} {candidate:.4f} < {gate.min_param} {minimum}")
    if champion is None:
        return Decision(FIRST_CHAMPION, "no champion yet: the first model becomes champion")
    delta = candidate - champion if gate.higher_is_better else champion - candidate
    if delta > margin:
        return Decision(PROMOTED, f"{metric} +{delta:.4f} over the champion > margin {margin}")
    return Decision(KEPT, f"{metric} {delta:+.4f} vs the champion is not > margin {margin}")


def candidate_uri(name: str, model_uri: str) -> str:
    """``models:/name@challenger`` unless the user named a version (of the same model)."""
    if not model_uri.strip():
        found = get_version(name, alias=CHALLENGER)
        return f"models:/{name}/{found.version}"
    resolved = resolve_model_uri(model_uri)
    if resolved.name != name:
        raise UserError(
            f"modelUri {model_uri!r} is not a version of {name!r}; use models:/{name}/<version> "
            f"or models:/{name}@<alias>"
        )
    return f"models:/{name}/{resolved.version}"


def _score(spark: SparkSession, params: dict[str, Any], source: DataSource, model: Any, role: str):
    with console().phase(f"score the {role}", source.uri) as phase:
        df, _, report = score_labelled(model, spark, source, params["label"])
        df.unpersist()
        metric = GATES[report.task].metric
        phase.done(f"{metric} {report.metrics[metric]:.4f}")
    return report


def _log_comparison(
    run_id: str,
    name: str,
    versions: dict[str, str | None],
    reports: dict[str, Report],
    decision: Decision,
) -> None:
    metric = GATES[reports["candidate"].task].metric
    metrics: dict[str, float] = {}
    for role, report in reports.items():
        metrics.update({f"{role}_{k}": v for k, v in report.metrics.items()})
        log_evaluation_artifacts(report, prefix=f"promotion/{role}")
    if "champion" in reports:
        metrics[f"{metric}_delta"] = (
            reports["candidate"].metrics[metric] - reports["champion"].metrics[metric]
        )
    tags = {
        "promotion.model": name,
        "promotion.candidate_version": versions["candidate"] or "",
        "promotion.champion_version_before": versions["champion"] or "",
        "promotion.decision": decision.outcome,
        "promotion.reason": decision.reason,
    }
    tracking.log_batch(run_id, metrics=metrics, tags=tags)
    keys = sorted({k for r in reports.values() for k in r.metrics})
    comparison = {role: {k: reports[role].metrics.get(k) for k in keys} for role in reports}
    tracking.log_json({**tags, "metrics": comparison}, "promotion/comparison.json")


def run_promotion(
    spark: SparkSession, params: dict[str, Any], source: DataSource, run_id: str
) -> Decision:
    """Score candidate and champion, log the comparison, move ``@champion`` if the rule says so.

    Raises QualityGateError (exit 3) after logging when the candidate is below the task's
    minimum (``minAccuracy`` or ``minR2``).
    """
    from mlflow.tracking import MlflowClient

    name = params["registeredModelName"].strip()
    cand_uri = candidate_uri(name, params["modelUri"])
    cand_version = cand_uri.rsplit("/", 1)[1]
    champion = find_champion(name)
    if champion is not None and str(champion.version) == cand_version:
        decision = Decision(ALREADY_CHAMPION, f"version {cand_version} is already @{CHAMPION}")
        tracking.log_batch(run_id, tags={"promotion.decision": decision.outcome})
        return decision
    cand_model = load_model(cand_uri)
    champ_model = champ_uri = None
    if champion is not None:
        champ_uri = f"models:/{name}/{champion.version}"
        champ_model = load_model(champ_uri)
        cand_task, champ_task = model_task(cand_model), model_task(champ_model)
        if cand_task != champ_task:
            raise UserError(
                f"refusing to compare: champion {champ_uri} does {champ_task}, candidate "
                f"{cand_uri} does {cand_task}; move @{CHAMPION} by hand if that is on purpose"
            )
        cand_labels = model_labels(cand_model) if cand_task == CLASSIFICATION else []
        champ_labels = model_labels(champ_model) if champ_task == CLASSIFICATION else []
        if set(cand_labels) != set(champ_labels):
            raise UserError(
                f"refusing to compare: champion {champ_uri} predicts {sorted(champ_labels)}, "
                f"candidate {cand_uri} predicts {sorted(cand_labels)}; move @{CHAMPION} by hand "
                "if the label set changed on purpose"
            )
    reports = {"candidate": _score(spark, params, source, cand_model, "candidate")}
    if champ_model is not None:
        reports["champion"] = _score(spark, params, source, champ_model, "champion")
    candidate = reports["candidate"]
    gate = GATES[candidate.task]
    decision = decide(
        candidate.metrics[gate.metric],
        reports["champion"].metrics[gate.metric] if "champion" in reports else None,
        params[gate.min_param],
        params["promotionMargin"],
        gate,
    )
    try:  # every threshold of yours/scoring, not only the primary metric's, before @champion
        check_gate(candidate.metrics, validation_thresholds(candidate.task, params))
        failed = None
    except QualityGateError as exc:
        failed = exc
        if decision.outcome != BELOW_MINIMUM:
            decision = Decision(BELOW_MINIMUM, str(exc))
    versions = {"candidate": cand_version, "champion": champion.version if champion else None}
    _log_comparison(run_id, name, versions, reports, decision)
    MlflowClient().set_model_version_tag(name, cand_version, "promotion.decision", decision.outcome)
    if decision.moves_champion:
        set_champion(name, cand_version)
    if failed is not None:
        raise failed
    return decision
