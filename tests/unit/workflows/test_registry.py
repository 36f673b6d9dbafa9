"""Registration by `train` and the `promote` gate, on a real SQLite registry and real Spark.

One module-scoped registry holds three versions of one model: v1 a deliberately weak model
(heavy L1 regularisation zeroes every coefficient), v2 the default model, v3 trained on the same
features with other label strings. Each promotion test sets `@champion` itself first, so the
tests do not depend on their order.
"""

from __future__ import annotations

import json

import pytest
from lifecycle_support import (
    error_lines,
    module_tracking,
    newest_run,
    run_script,
    train_registered,
)

from sparkml_template.workflows.promote import (
    BELOW_MINIMUM,
    FIRST_CHAMPION,
    KEPT,
    PROMOTED,
    decide,
)

NAME = "breast_cancer"


# Trains three versions through `train`: the tests that use it are marked slow (`make test-fast`
# leaves them out).
@pytest.fixture(scope="module")
def registry(spark, tmp_path_factory):
    import pandas as pd
    from conftest import SHIPPED_DATA

    tmp = tmp_path_factory.mktemp("registry")
    relabelled = tmp / "relabelled.csv"
    frame = pd.read_csv(SHIPPED_DATA).head(200)
    frame["diagnosis"] = frame["diagnosis"].map({"malignant": "M", "benign": "B"})
    frame.to_csv(relabelled, index=False)
    with module_tracking(tmp) as tracking:
        weak = train_registered(tracking, NAME, "--regParam", "10", "--elasticNetParam", "1")
        good = train_registered(tracking, NAME)
        other_labels = train_registered(tracking, NAME, "--data", str(relabelled))
        yield tracking, {"weak": weak, "good": good, "other_labels": other_labels}


def _set_champion(tracking, version: str | None) -> None:
    client = tracking.client()
    if version is None:
        client.delete_registered_model_alias(NAME, "champion")
    else:
        client.set_registered_model_alias(NAME, "champion", version)


def _champion(tracking) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return tracking.client().get_model_version_by_alias(NAME, "champion").version
    except MlflowException:
        return None


def _promote(*argv: str) -> int:
    return run_script("promote", "--registeredModelName", NAME, "--master", "local[2]", *argv)


def _promote_over(tracking, champion: str, candidate: str, *argv: str):
    """Make ``champion`` the champion, promote ``candidate``; the exit code and the run."""
    _set_champion(tracking, champion)
    code = _promote("--modelUri", f"models:/{NAME}/{candidate}", *argv)
    return code, newest_run(tracking)


@pytest.mark.slow
def test_train_registers_a_described_tagged_challenger(registry):
    tracking, versions = registry
    client = tracking.client()
    version = client.get_model_version(NAME, versions["good"])
    run = client.get_run(version.run_id)
    accuracy = run.data.metrics["accuracy"]
    assert f"| accuracy | {accuracy:.4f} |" in version.description
    assert f"`{run.info.run_id}`" in version.description
    assert version.tags["data.digest"] == run.data.tags["data.digest"]
    assert json.loads(version.tags["labels"]) == ["benign", "malignant"]
    newest = client.get_model_version_by_alias(NAME, "challenger").version
    assert newest == versions["other_labels"]


@pytest.mark.slow
def test_version_carries_the_git_commit_mlflow_run_recorded(registry, monkeypatch):
    """`mlflow run` creates the run with mlflow.source.git.commit, then starts the entry point
    with MLFLOW_RUN_ID; the same here, in-process (MLflow's own git detection for in-process
    runs is cached per process and depends on sys.argv[0], so it is not relied on)."""
    tracking, _ = registry
    client = tracking.client()
    commit = "0123456789abcdef0123456789abcdef01234567"
    run = client.create_run(tracking.experiment_id, tags={"mlflow.source.git.commit": commit})
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    assert str(train_registered(tracking, f"{NAME}-git", "--maxIter", "5")) == "1"
    version = client.get_model_version(f"{NAME}-git", "1")
    assert version.run_id == run.info.run_id
    assert version.tags["git.commit"] == commit


@pytest.mark.slow
def test_first_model_ever_becomes_champion(registry):
    tracking, versions = registry
    _set_champion(tracking, None)
    assert _promote("--modelUri", f"models:/{NAME}/{versions['weak']}") == 0
    assert _champion(tracking) == versions["weak"]
    run = newest_run(tracking)
    assert run.data.tags["promotion.decision"] == FIRST_CHAMPION
    assert "champion_accuracy" not in run.data.metrics


@pytest.mark.parametrize(
    ("margin", "outcome", "champion_after"),
    [("0.9", KEPT, "weak"), ("0.05", PROMOTED, "good")],
)
@pytest.mark.slow
def test_better_candidate_is_promoted_only_beyond_the_margin(
    registry, margin, outcome, champion_after
):
    tracking, versions = registry
    code, run = _promote_over(
        tracking, versions["weak"], versions["good"], "--promotionMargin", margin
    )
    assert code == 0
    assert _champion(tracking) == versions[champion_after]
    metrics = run.data.metrics
    assert run.data.tags["promotion.decision"] == outcome
    delta = metrics["candidate_accuracy"] - metrics["champion_accuracy"]
    assert delta > 0
    assert (delta > float(margin)) == (outcome == PROMOTED)
    assert metrics["accuracy_delta"] == pytest.approx(
        metrics["candidate_accuracy"] - metrics["champion_accuracy"]
    )
    artifacts = {a.path for a in tracking.client().list_artifacts(run.info.run_id, "promotion")}
    assert {"promotion/comparison.json", "promotion/candidate", "promotion/champion"} <= artifacts
    tags = tracking.client().get_model_version(NAME, versions["good"]).tags
    assert tags["promotion.decision"] == outcome


@pytest.mark.slow
def test_candidate_below_min_accuracy_fails_and_keeps_champion(registry):
    tracking, versions = registry
    code, run = _promote_over(tracking, versions["good"], versions["weak"], "--minAccuracy", "0.9")
    assert code == 3
    assert _champion(tracking) == versions["good"]
    assert run.info.status == "FAILED"
    assert run.data.tags["promotion.decision"] == BELOW_MINIMUM


@pytest.mark.slow
def test_a_threshold_added_in_your_scoring_keeps_the_champion(registry, monkeypatch, capsys):
    """The good model beats the weak champion on accuracy, but misses a bound a user added in
    ``validation_thresholds``: no promotion, exit 3, the bound named in one line."""
    from sparkml_template.contract.gates import Threshold
    from sparkml_template.workflows import promote

    def stricter(task, params):
        return {"accuracy": Threshold(minimum=0.0), "f1": Threshold(minimum=1.01)}

    monkeypatch.setattr(promote, "validation_thresholds", stricter)
    tracking, versions = registry
    code, run = _promote_over(tracking, versions["weak"], versions["good"])
    assert code == 3
    assert _champion(tracking) == versions["weak"]
    assert run.data.tags["promotion.decision"] == BELOW_MINIMUM
    (line,) = error_lines(capsys, "promote")
    assert "f1" in line and "below the minimum 1.0100" in line, line


@pytest.mark.slow
def test_champion_with_another_label_set_is_refused(registry, capsys):
    tracking, versions = registry
    _set_champion(tracking, versions["good"])
    assert _promote() == 2  # the default candidate: @challenger, the relabelled model
    err = error_lines(capsys, "promote")
    assert len(err) == 1, err
    assert "refusing to compare" in err[0] and "'B', 'M'" in err[0], err
    assert _champion(tracking) == versions["good"]
    assert newest_run(tracking).info.status == "FAILED"


@pytest.mark.slow
def test_unknown_registered_model_is_one_line(registry, capsys):
    tracking, _ = registry
    code = run_script("promote", "--registeredModelName", "no_such_model")
    assert code == 2
    assert error_lines(capsys, "promote") == [
        "promote: error: no registered model named 'no_such_model'"
    ]
    assert newest_run(tracking).info.status == "FAILED"


@pytest.mark.parametrize(
    ("candidate", "champion", "minimum", "margin", "outcome"),
    [
        (0.90, None, 0.0, 0.0, FIRST_CHAMPION),
        (0.90, None, 0.95, 0.0, BELOW_MINIMUM),
        (0.90, 0.95, 0.95, 0.0, BELOW_MINIMUM),
        (0.96, 0.95, 0.0, 0.0, PROMOTED),
        (0.96, 0.95, 0.0, 0.02, KEPT),
        (0.95, 0.95, 0.0, 0.0, KEPT),  # a tie does not churn the champion
    ],
)
def test_decision_rule(candidate, champion, minimum, margin, outcome):
    assert decide(candidate, champion, minimum, margin).outcome == outcome


def test_the_regression_rule_uses_r2_and_min_r2():
    from sparkml_template.yours.scoring import GATES

    gate = GATES["regression"]
    assert decide(-0.2, None, 0.0, 0.0, gate).reason == "r2 -0.2000 < minR2 0.0"
    assert decide(0.5, 0.4, -1e9, 0.05, gate).outcome == PROMOTED
    assert decide(float("nan"), None, -1e9, 0.0, gate).outcome == BELOW_MINIMUM
