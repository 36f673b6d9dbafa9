"""What the model learned, logged by train for every (task, estimator): the loss per iteration,
coefficients or feature importances by feature name (one-hot slots by category), the importance
chart, and gbt's held-out loss per iteration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import artifact_paths
from lifecycle_support import module_tracking, newest_run, run_script

# The tests train through the `train` entry point in-process: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

ROWS = 150


def _with_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """An integer column, a number with gaps, a text column with nulls and a date."""
    n = len(frame)
    rng = np.random.default_rng(11)
    frame = frame.reset_index(drop=True)
    frame["visits"] = rng.integers(0, 9, n)
    frame["dose"] = rng.integers(1, 5, n).astype(float)
    frame.loc[frame.index % 9 == 0, "dose"] = np.nan
    frame["site"] = np.where(frame.index % 2 == 0, "north", "south")
    frame.loc[frame.index % 11 == 0, "site"] = None
    frame["seen"] = pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    return frame


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from sklearn.datasets import load_diabetes, load_wine

    tmp = tmp_path_factory.mktemp("learned")
    wine = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frames = {
        "diabetes": load_diabetes(as_frame=True).frame.head(ROWS).rename(columns={"target": "y"}),
        "wine": wine.sample(frac=1.0, random_state=3).head(ROWS),
        "wine2": wine[wine["cultivar"] < 2],
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp / f"{name}.csv"
        _with_columns(frame).to_csv(paths[name], index=False)
    return paths


@pytest.fixture(scope="module")
def tracking(spark, tmp_path_factory):
    with module_tracking(tmp_path_factory.mktemp("learned_store")) as store:
        yield store


def _train(tracking, path, label: str, *argv: str):
    code = run_script("train", "--master", "local[2]", "--data", str(path), "--label", label, *argv)
    run = newest_run(tracking)
    assert code == 0, run.data.tags.get("sparkml_template.error")
    return run


def _table(tracking, run, name: str) -> pd.DataFrame:
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=name)
    doc = json.loads(Path(local).read_text())
    return pd.DataFrame(doc["data"], columns=doc["columns"])


def _series(tracking, run, name: str) -> list[float]:
    history = tracking.client().get_metric_history(run.info.run_id, name)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


FEATURES = {"visits", "dose", "site_vec_north", "site_vec_south", "seen_year", "seen_doy"}


def test_binary_logistic_regression_logs_loss_and_named_coefficients(datasets, tracking):
    run = _train(tracking, datasets["wine2"], "cultivar", "--regParam", "0.01")
    loss = _series(tracking, run, "training_loss")
    assert len(loss) > 2 and loss[-1] < loss[0]
    table = _table(tracking, run, "learned/coefficients.json")
    assert list(table.columns) == ["feature", "coefficient"]
    assert FEATURES | {"alcohol", "(intercept)"} <= set(table["feature"])
    assert table["feature"].iloc[-1] == "(intercept)" and table["feature"].is_unique
    assert not table["feature"].str.fullmatch(r"f\d+").any()  # every slot has its name
    assert not _series(tracking, run, "validation_loss")
    learned = artifact_paths(tracking.client(), run.info.run_id, "learned")
    assert "learned/feature_importances.json" not in learned


def test_multiclass_logistic_regression_logs_a_coefficient_per_class(datasets, tracking):
    run = _train(tracking, datasets["wine"], "cultivar")
    assert _series(tracking, run, "training_loss")
    table = _table(tracking, run, "learned/coefficients.json")
    assert set(table.columns) == {"feature", "0", "1", "2"}
    assert set(table["feature"]) >= FEATURES


def test_linear_regression_logs_loss_and_coefficients(datasets, tracking):
    run = _train(tracking, datasets["diabetes"], "y", "--elasticNetParam", "0.5",
                 "--regParam", "0.1")  # fmt: skip
    assert _series(tracking, run, "training_loss")
    table = _table(tracking, run, "learned/coefficients.json")
    assert {"bmi", "s5", "site_vec_north"} <= set(table["feature"])
    assert np.isfinite(table["coefficient"]).all()


@pytest.mark.parametrize(
    ("dataset", "label", "estimator"),
    [("diabetes", "y", "random_forest"), ("diabetes", "y", "gbt"), ("wine2", "cultivar", "gbt")],
)
def test_tree_ensembles_log_importances_and_gbt_its_held_out_loss(
    datasets, tracking, dataset, label, estimator
):
    run = _train(tracking, datasets[dataset], label, "--estimator", estimator,
                 "--numTrees", "10", "--maxIter", "10", "--maxDepth", "3")  # fmt: skip
    table = _table(tracking, run, "learned/feature_importances.json")
    assert list(table.columns) == ["feature", "importance"]
    assert abs(table["importance"].sum() - 1.0) < 1e-6
    assert list(table["importance"]) == sorted(table["importance"], reverse=True)
    assert set(table["feature"]) >= FEATURES
    learned = artifact_paths(tracking.client(), run.info.run_id, "learned")
    assert "learned/feature_importances.png" in learned
    assert "learned/coefficients.json" not in learned
    held_out = _series(tracking, run, "validation_loss")
    assert len(held_out) == (10 if estimator == "gbt" else 0)
    assert np.isfinite(held_out).all()


def test_a_model_of_unknown_shape_gives_one_warning_and_nothing_else(spark):
    from pyspark.ml import PipelineModel

    from sparkml_template.observability.learned import what_the_model_learned

    lines: list[str] = []
    learned = what_the_model_learned(PipelineModel([]), None, "y", warn=lines.append)
    assert lines == ["warning: what the model learned is not logged: "
                     "the model has no stage reading the features column"]  # fmt: skip
    assert not (learned.training_loss or learned.coefficients or learned.importances)
