"""The `tune` entry point: grid parsing and range checks (no Spark), one in-process search with
TrainValidationSplit and registration (`mlflow run -e tune` with CrossValidator:
tests/e2e/test_cli_lifecycle.py)."""

from __future__ import annotations

import json

import pytest
from lifecycle_support import child_runs, module_tracking, newest_run, run_script

from sparkml_template.errors import UserError
from sparkml_template.runtime.params import parse_params
from sparkml_template.workflows.tune import CV_METRIC, parse_grid, prepare_tuning
from sparkml_template.yours.estimators import ESTIMATORS

NAME = "bc_tuned"


@pytest.fixture(scope="module")
def store(spark, tmp_path_factory):
    with module_tracking(tmp_path_factory.mktemp("tune")) as tracking:
        yield tracking


def test_grid_parsing():
    assert parse_grid("regParam", " 0.1, 0.0,0.1 ,") == [0.1, 0.0]
    defaults, _ = parse_params("tune", [])
    plan = prepare_tuning(defaults)
    assert plan.grid == ESTIMATORS["linear"].grid  # tune's empty defaults: the table's grid
    assert plan.size == len(plan.grid["regParam"]) * len(plan.grid["elasticNetParam"]) > 1
    given, _ = parse_params("tune", ["--regParam", "0.5,0.2"])
    assert prepare_tuning(given).grid["regParam"] == [0.5, 0.2]


def test_a_grid_string_the_estimator_does_not_search_is_fixed_at_its_first_value():
    params, _ = parse_params("tune", ["--estimator", "random_forest", "--regParam", "0.3,0.1"])
    plan = prepare_tuning(params)
    assert plan.fixed == {"regParam": 0.3}
    assert plan.grid == ESTIMATORS["random_forest"].grid


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--regParam", ","], "regParam grid is empty"),
        (["--elasticNetParam", " , "], "elasticNetParam grid is empty"),
        (["--regParam", "0.1,abc"], "regParam grid value 'abc' is not a number"),
        (["--regParam", "0.1,nan"], "regParam grid value 'nan' is not a finite number"),
        (["--regParam", "0.0,-0.5"], "regParam must be >= 0, got -0.5"),
        (["--elasticNetParam", "0.5,1.5"], "elasticNetParam must be in [0, 1], got 1.5"),
        (["--numFolds", "0"], "numFolds must be >= 1"),
        (["--parallelism", "0"], "parallelism must be >= 1"),
    ],
)
def test_bad_grids_are_one_line(argv, message):
    params, _ = parse_params("tune", argv)
    with pytest.raises(UserError) as info:
        prepare_tuning(params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_grid_fails_the_run(store, capsys):
    assert run_script("tune", "--regParam", ",") == 2
    err = capsys.readouterr().err
    assert "tune: error: regParam grid is empty" in err and "Traceback" not in err
    run = newest_run(store)
    assert run.info.status == "FAILED"
    assert child_runs(store, run.info.run_id) == []


@pytest.mark.slow  # a whole search through the entry point
def test_tune_logs_children_best_params_table_plot_and_registers(store, tmp_path, monkeypatch):
    from sparkml_template.workflows import fitting

    validated = []  # every DataFrame the run validates, through the real check

    def counted(df, *args, **kwargs):
        validated.append(df)
        return real(df, *args, **kwargs)

    real = fitting.profile_dataset
    monkeypatch.setattr(fitting, "profile_dataset", counted)
    argv = ["--regParam", "0.0,1.0", "--elasticNetParam", "0.0,1.0", "--numFolds", "1"]
    code = run_script("tune", *argv, "--registeredModelName", NAME, "--master", "local[2]")
    assert code == 0
    # the refit reuses the search's cached, validated data; the cache is gone afterwards
    assert len(validated) == 1 and not validated[0].is_cached
    client = store.client()
    parent = newest_run(store)
    children = child_runs(store, parent.info.run_id)
    assert len(children) == 4
    grid = {
        (float(c.data.params["regParam"]), float(c.data.params["elasticNetParam"]))
        for c in children
    }
    assert grid == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}
    scores = {c.info.run_id: c.data.metrics[CV_METRIC] for c in children}
    # regParam=1 with a pure L1 penalty zeroes every coefficient: that child must score worst
    worst = min(children, key=lambda c: scores[c.info.run_id])
    assert (worst.data.params["regParam"], worst.data.params["elasticNetParam"]) == ("1.0", "1.0")
    (best,) = [
        c
        for c in children
        if c.data.params["regParam"] == parent.data.params["best_regParam"]
        and c.data.params["elasticNetParam"] == parent.data.params["best_elasticNetParam"]
    ]
    assert scores[best.info.run_id] == max(scores.values())  # ties: the first in grid order
    assert parent.data.metrics[f"best_{CV_METRIC}"] == scores[best.info.run_id]
    assert parent.data.tags["tuning.best_child_run_id"] == best.info.run_id
    # the best model is trained, scored on the held-out split and logged like `train` does
    assert float(parent.data.params["LogisticRegressionModel.regParam"]) == float(
        best.data.params["regParam"]
    )
    assert "accuracy" in parent.data.metrics

    local = client.download_artifacts(parent.info.run_id, "tuning/results.json", str(tmp_path))
    with open(local) as f:
        table = json.load(f)
    assert len(table["data"]) == 4 and "run_id" in table["columns"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "tuning")}
    assert "tuning/metric_over_grid.png" in artifacts

    version = client.get_model_version_by_alias(NAME, "challenger")
    assert version.run_id == parent.info.run_id
