"""Bring your own data, end to end in-process: regression and classification with each
estimator, awkward columns (integers, nulls in numbers and text, a date), the logged model scoring
rows `pd.read_csv` gives, the regression gate and promotion, tuning, and bad input in one line.

Data comes from scikit-learn (no download) with columns of our own added; the `mlflow run` and
`mlflow models serve` paths are covered by tests/e2e for the shipped data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifecycle_support import module_tracking, newest_run, run_script

# Each test runs whole entry points in-process on real Spark: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

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
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    tmp = tmp_path_factory.mktemp("own_data")
    diabetes = load_diabetes(as_frame=True).frame.head(ROWS).rename(columns={"target": "y"})
    wine = load_wine(as_frame=True).frame.head(ROWS).rename(columns={"target": "cultivar"})
    # binary (gbt classifies two classes), 0/1 integers as the label, spaces in column names
    cancer = load_breast_cancer(as_frame=True).frame.sample(ROWS, random_state=3)
    cancer = cancer.reset_index(drop=True).rename(columns={"target": "malignant"})
    paths = {}
    for name, frame in (("diabetes", diabetes), ("wine", wine), ("cancer", cancer)):
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


def test_regression_trains_logs_and_serves_what_read_csv_gives(datasets, tracking, capsys, recwarn):
    from sparkml_template.runtime.tracking import INTEGER_HINT

    name = "diabetes_rf"
    code = _run(
        "train", "--data", str(datasets["diabetes"]), "--label", "y",
        "--estimator", "random_forest", "--numTrees", "10", "--registeredModelName", name,
    )  # fmt: skip
    # integer columns, declared long/any by the signature: no misleading MLflow hint about them
    assert not [w for w in recwarn if INTEGER_HINT in str(w.message)]
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
    from sparkml_template.contract.estimator_spec import Estimator
    from sparkml_template.contract.names import CLASSIFICATION, REGRESSION
    from sparkml_template.yours.estimators import ESTIMATORS, MAX_DEPTH

    tree = Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.DecisionTreeClassifier",
            REGRESSION: "pyspark.ml.regression.DecisionTreeRegressor",
        },
        params=(MAX_DEPTH,),
        shared=("seed",),
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


TASK_DATA = {"classification": ("cancer", "malignant"), "regression": ("diabetes", "y")}
SMALL = ("--numTrees", "5", "--maxIter", "5", "--maxDepth", "3")  # every estimator, quickly


@pytest.mark.parametrize("estimator", ["linear", "random_forest", "gbt"])
@pytest.mark.parametrize("task", sorted(TASK_DATA))
def test_every_task_and_estimator_trains_evaluates_tunes_promotes_predicts_and_scores(
    datasets, tracking, monkeypatch, task, estimator
):
    """Each (task, estimator) pair through every entry point, on data with integer, null,
    text, date and id columns; the model it promotes scores rows as pd.read_csv gives them."""
    import dataclasses

    from sparkml_template.yours.estimators import ESTIMATORS

    dataset, label = TASK_DATA[task]
    data, name = str(datasets[dataset]), f"{task}_{estimator}"
    common = ("--data", data, "--label", label)
    metric = "accuracy" if task == "classification" else "r2"

    assert _run("train", *common, "--task", task, "--estimator", estimator, *SMALL,
                "--registeredModelName", name) == 0, newest_run(tracking).data.tags  # fmt: skip
    trained = newest_run(tracking)
    assert trained.data.tags["task"] == task and trained.data.tags["estimator"] == estimator
    assert metric in trained.data.metrics

    assert _run("evaluate", *common, "--modelUri", f"models:/{name}/1") == 0
    evaluated = newest_run(tracking).data.metrics[metric]  # on every row: better than chance
    assert evaluated > (0.7 if task == "classification" else 0.0)

    entry = ESTIMATORS[estimator]  # a two-point grid keeps the search quick
    first = next(iter(entry.grid))
    monkeypatch.setitem(ESTIMATORS, estimator, dataclasses.replace(
        entry, grid={first: entry.grid[first][:2]}))  # fmt: skip
    grid = ("--regParam", "0.0,0.1", "--elasticNetParam", "0.0") if estimator == "linear" else ()
    assert _run("tune", *common, "--task", task, "--estimator", estimator, *SMALL, *grid,
                "--numFolds", "1", "--registeredModelName", name) == 0  # fmt: skip
    tuned = newest_run(tracking)
    assert tuned.data.metrics["grid_size"] == 2 and metric in tuned.data.metrics

    assert _run("promote", *common, "--registeredModelName", name) == 0  # the tuned challenger
    promoted = newest_run(tracking)
    assert promoted.data.tags["promotion.decision"] == "first_champion"
    assert f"candidate_{metric}" in promoted.data.metrics
    champion = tracking.client().get_model_version_by_alias(name, "champion")
    assert champion.run_id == tuned.info.run_id

    out = Path(datasets[dataset]).parent / f"scored_{name}"
    assert _run("predict", "--modelUri", f"models:/{name}@champion", "--data", data,
                "--output", str(out)) == 0  # fmt: skip
    scored = pd.read_parquet(out)
    assert len(scored) == ROWS
    assert ("probability" in scored.columns) == (task == "classification")

    predictions = _score_like_a_user(f"models:/{name}@champion", datasets[dataset], label)
    assert len(predictions) == ROWS
    # the signature declares the output type the served model gives (not computed by scoring)
    import mlflow
    from mlflow.models import infer_signature

    declared = mlflow.models.get_model_info(f"models:/{name}@champion").signature.outputs
    assert declared == infer_signature(None, pd.Series(predictions, name="prediction")).outputs
    if task == "classification":  # the label's own values come back, as text
        assert set(predictions) <= {"0", "1"}
        assert list(predictions) == [str(v) for v in scored["prediction"]]
    else:
        assert np.allclose(predictions.astype(float), scored["prediction"].to_numpy())


def test_a_table_name_is_data_like_a_file(spark, datasets, tracking, tmp_path_factory):
    """``data=db.table`` (a Unity Catalog or Hive table on a cluster) for train, evaluate and
    predict; here a table in the test session's catalog, stored under a temp directory."""
    location = tmp_path_factory.mktemp("tables")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS own_data LOCATION '{location.as_uri()}'")
    reader = spark.read.option("header", True).option("inferSchema", True)
    reader.csv(str(datasets["wine"])).write.mode("overwrite").saveAsTable("own_data.wine")
    table = ("--data", "own_data.wine")
    assert _run("train", *table, "--label", "cultivar", "--registeredModelName", "wine_table") == 0
    run = newest_run(tracking)
    assert run.data.metrics["train_rows"] + run.data.metrics["test_rows"] == ROWS
    assert run.data.tags["task"] == "classification" and "accuracy" in run.data.metrics
    model = ("--modelUri", "models:/wine_table/1")
    assert _run("evaluate", *table, "--label", "cultivar", *model) == 0
    assert newest_run(tracking).data.metrics["accuracy"] > 0.7
    out = location / "scored"
    assert _run("predict", *table, *model, "--output", str(out)) == 0
    assert len(pd.read_parquet(out)) == ROWS
