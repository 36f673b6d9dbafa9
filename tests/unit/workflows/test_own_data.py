"""Bring your own data, end to end in-process: regression and classification with each
estimator, awkward columns (integers, nulls in numbers and text, a date), the logged model scoring
rows `pd.read_csv` gives, the regression gate and promotion, tuning, and bad input in one line.

Data comes from scikit-learn (no download) with columns of our own added; the `mlflow run` and
`mlflow models serve` paths are covered by tests/e2e for the shipped data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifecycle_support import module_tracking, newest_run, run_script

ROWS = 160


def _awkward(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer, nullable-number, nullable-text and date columns next to the dataset's own."""
    n = len(frame)
    rng = np.random.default_rng(7)
    frame = frame.copy()
    frame["visits"] = rng.integers(0, 9, n)  # int64: Spark reads int
    frame["dose"] = rng.integers(1, 5, n).astype(float)
    frame.loc[frame.index % 9 == 0, "dose"] = np.nan  # whole numbers with gaps
    frame["site"] = np.where(frame.index % 2 == 0, "north", "south")
    frame.loc[frame.index % 11 == 0, "site"] = None
    frame["seen"] = pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    frame["row_id"] = [f"id{i:05d}" for i in range(n)]  # an id: too many values to encode
    return frame


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from sklearn.datasets import load_diabetes, load_wine

    tmp = tmp_path_factory.mktemp("own_data")
    diabetes = load_diabetes(as_frame=True).frame.head(ROWS).rename(columns={"target": "y"})
    wine = load_wine(as_frame=True).frame.head(ROWS).rename(columns={"target": "cultivar"})
    paths = {}
    for name, frame in (("diabetes", diabetes), ("wine", wine)):
        paths[name] = tmp / f"{name}.csv"
        _awkward(frame).to_csv(paths[name], index=False)
    return paths


@pytest.fixture(scope="module")
def tracking(spark, tmp_path_factory):
    with module_tracking(tmp_path_factory.mktemp("own_data_store")) as store:
        yield store


def _run(entry_point: str, *argv: str) -> int:
    return run_script(entry_point, "--master", "local[2]", *argv)


def _score_like_a_user(model_uri: str, path, label: str) -> np.ndarray:
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    rows = pd.read_csv(path).drop(columns=[label])
    assert rows["visits"].dtype == np.int64 and rows["dose"].isna().any()
    predictions = np.asarray(model.predict(rows)).ravel()
    # the date as datetime64 (parse_dates) scores exactly as its ISO strings do
    dated = pd.read_csv(path, parse_dates=["seen"]).drop(columns=[label])
    assert dated["seen"].dtype.kind == "M"
    assert np.array_equal(np.asarray(model.predict(dated)).ravel(), predictions)
    return predictions


def test_regression_trains_logs_and_serves_what_read_csv_gives(datasets, tracking, capsys):
    name = "diabetes_rf"
    code = _run(
        "train", "--data", str(datasets["diabetes"]), "--label", "y",
        "--estimator", "random_forest", "--numTrees", "10", "--registeredModelName", name,
    )  # fmt: skip
    err = capsys.readouterr().err
    run = newest_run(tracking)
    assert code == 0, run.data.tags.get("sparkml_template.error")
    assert "task: regression (the label is numeric" in err
    assert "warning: string column 'row_id'" in err
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["task"] == "regression" and tags["estimator"] == "random_forest"
    assert "row_id" in tags["features.left_out"]
    assert {"rmse", "mae", "r2"} <= set(metrics) and metrics["rmse"] > 0
    assert run.data.params.get("RandomForestRegressionModel.numTrees") == "10", sorted(
        k for k in run.data.params if "Forest" in k
    )[:5]
    predictions = _score_like_a_user(f"runs:/{run.info.run_id}/model", datasets["diabetes"], "y")
    assert len(predictions) == ROWS and np.isfinite(predictions.astype(float)).all()

    # main adds the charts; the regression gate fails it (exit 3) after logging
    code = _run("main", "--data", str(datasets["diabetes"]), "--label", "y", "--minR2", "0.99")
    assert code == 3
    run = newest_run(tracking)
    assert run.info.status == "FAILED" and "r2" in run.data.tags["sparkml_template.error"]
    files = {a.path for a in tracking.client().list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/predicted_vs_actual.png", "evaluation/residuals.png"} <= files

    # evaluate and promote a registered regression model on its primary metric
    assert _run("evaluate", "--modelUri", f"models:/{name}/1", "--data",
                str(datasets["diabetes"]), "--label", "y") == 0  # fmt: skip
    assert "r2" in newest_run(tracking).data.metrics
    assert _run("promote", "--registeredModelName", name, "--data", str(datasets["diabetes"]),
                "--label", "y") == 0  # fmt: skip
    promoted = newest_run(tracking)
    assert promoted.data.tags["promotion.decision"] == "first_champion"
    assert "candidate_r2" in promoted.data.metrics

    # batch scoring: the number, no probability column
    out = datasets["diabetes"].parent / "scored"
    assert _run("predict", "--modelUri", f"models:/{name}@champion", "--data",
                str(datasets["diabetes"]), "--output", str(out)) == 0  # fmt: skip
    scored = pd.read_parquet(out)
    assert len(scored) == ROWS and "probability" not in scored.columns
    assert scored["prediction"].dtype == np.float64


def test_classification_with_a_forest_serves_read_csv_rows(datasets, tracking):
    code = _run(
        "train", "--data", str(datasets["wine"]), "--label", "cultivar",
        "--estimator", "random_forest", "--numTrees", "10",
    )  # fmt: skip
    run = newest_run(tracking)
    assert code == 0, run.data.tags.get("sparkml_template.error")
    assert run.data.tags["task"] == "classification" and "accuracy" in run.data.metrics
    predictions = _score_like_a_user(f"runs:/{run.info.run_id}/model", datasets["wine"], "cultivar")
    assert set(predictions) <= {"0", "1", "2"} and len(predictions) == ROWS


def test_tune_searches_the_estimator_table_grid(datasets, tracking):
    code = _run(
        "tune", "--data", str(datasets["diabetes"]), "--label", "y", "--estimator", "gbt",
        "--numFolds", "1", "--excludeColumns", "row_id,seen",
    )  # fmt: skip
    run = newest_run(tracking)
    assert code == 0, run.data.tags.get("sparkml_template.error")
    assert {"best_maxIter", "best_maxDepth"} <= set(run.data.params)
    assert "best_cv_r2" in run.data.metrics and run.data.metrics["grid_size"] == 4
    # the best model is logged as train logs it, with what it learned
    held_out = tracking.client().get_metric_history(run.info.run_id, "validation_loss")
    assert len(held_out) == int(float(run.data.params["best_maxIter"]))
    files = {a.path for a in tracking.client().list_artifacts(run.info.run_id, "learned")}
    assert {"learned/feature_importances.json", "learned/feature_importances.png"} <= files


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--estimator", "svm"), "unknown estimator 'svm'; choose one of: linear, random_forest"),
        (("--task", "ranking"), "unknown task 'ranking'"),
        (("--numTrees", "0"), "numTrees must be >= 1"),
        (("--maxDepth", "31"), "maxDepth must be in [0, 30]"),
        (("--estimator", "gbt"), "does binary classification only and the label has 3 classes"),
        (("--features", "nope"), "column(s) not in the data: nope"),
        (("--excludeColumns", "cultivar"), "column(s) not in the data"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_a_failed_run(datasets, tracking, capsys, argv, message):
    if argv == ("--excludeColumns", "cultivar"):
        argv, message = ("--features", "cultivar"), "features lists the label 'cultivar'"
    code = _run("train", "--data", str(datasets["wine"]), "--label", "cultivar", *argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert message in err
    assert newest_run(tracking).info.status == "FAILED"


def test_an_estimator_added_to_the_table_tunes_and_serves(datasets, tracking, monkeypatch):
    from sparkml_template.data import CLASSIFICATION, REGRESSION
    from sparkml_template.pipeline import ESTIMATORS, Estimator

    tree = Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.DecisionTreeClassifier",
            REGRESSION: "pyspark.ml.regression.DecisionTreeRegressor",
        },
        params=("maxDepth", "seed"),
        grid={"maxDepth": [2, 4]},
    )
    monkeypatch.setitem(ESTIMATORS, "tree", tree)
    code = _run(
        "tune", "--data", str(datasets["diabetes"]), "--label", "y", "--estimator", "tree",
        "--numFolds", "1",
    )  # fmt: skip
    run = newest_run(tracking)
    assert code == 0, run.data.tags.get("sparkml_template.error")
    assert run.data.tags["estimator"] == "tree" and run.data.metrics["grid_size"] == 2
    predictions = _score_like_a_user(f"runs:/{run.info.run_id}/model", datasets["diabetes"], "y")
    assert len(predictions) == ROWS
