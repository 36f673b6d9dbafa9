"""The `tune` entry point: grid parsing and range checks (no Spark), each point scored exactly as
Spark's CrossValidator and TrainValidationSplit score it, the refusals of a resume, one
in-process search with TrainValidationSplit and registration (`mlflow run -e tune` with
CrossValidator: tests/e2e/test_cli_lifecycle.py; a search killed and resumed:
tests/e2e/test_tune_resume.py)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading

import pytest
from lifecycle_support import child_runs, module_tracking, newest_run, run_script

from sparkml_template.dataset.sources import content_digest
from sparkml_template.errors import UserError
from sparkml_template.runtime.params import parse_params
from sparkml_template.workflows.fitting import read_and_validate
from sparkml_template.workflows.tune import (
    CV_METRIC,
    evaluator_for,
    grid_points,
    parse_grid,
    prepare_tuning,
)
from sparkml_template.workflows.tune_points import (
    POINT_HASH_TAG,
    fold_scores,
    make_folds,
    point_hash,
    summarise,
)
from sparkml_template.workflows.tune_resume import (
    DIGEST_TAG,
    PROCESS_TAG,
    SEARCH_TAG,
    search_identity,
)
from sparkml_template.yours.data import split_labelled
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


def test_a_point_hash_is_the_sha256_of_its_sorted_json():
    expected = hashlib.sha256(b'{"maxIter": 5, "regParam": 0.1}').hexdigest()
    assert point_hash({"regParam": 0.1, "maxIter": 5}) == expected
    assert point_hash({"maxIter": 5, "regParam": 0.1}) == expected
    assert point_hash({"maxIter": 5.0, "regParam": 0.1}) != expected  # the type is part of it


@pytest.mark.parametrize("num_folds", [3, 1])
def test_each_point_scores_what_spark_validators_score(spark, num_folds):
    """The per-point loop against Spark's own CrossValidator (3 folds) and TrainValidationSplit
    (1) on the same pipeline, grid, data and seed: the same metric, to the last bit."""
    from pyspark.ml.tuning import CrossValidator, TrainValidationSplit

    argv = ["--regParam", "0.0,1.0", "--elasticNetParam", "1.0", "--maxIter", "5"]
    params, _ = parse_params("tune", [*argv, "--numFolds", str(num_folds)])
    plan = prepare_tuning(params)
    validated = read_and_validate(spark, params, plan.source, cache=True)
    try:
        pipeline, points = grid_points(params, plan, validated)
        train, _ = split_labelled(validated.data, "diagnosis", params["testFraction"], 42)
        evaluator = evaluator_for(validated.profile.task)
        folds, stop = make_folds(train, num_folds, 42), threading.Event()
        try:
            ours = [
                summarise(fold_scores(pipeline, evaluator, folds, p, stop), "m", num_folds > 1)
                for p in points
            ]
        finally:
            folds.release()
        options = {
            "estimator": pipeline,
            "estimatorParamMaps": [p.param_map for p in points],
            "evaluator": evaluator,
            "seed": 42,
            "parallelism": 1,
        }
        if num_folds > 1:
            fitted = CrossValidator(numFolds=num_folds, **options).fit(train)
            assert [o["m_std"] for o in ours] == [float(v) for v in fitted.stdMetrics]
            theirs = fitted.avgMetrics
        else:
            theirs = TrainValidationSplit(**options).fit(train).validationMetrics
    finally:
        validated.data.unpersist()
    assert [o["m"] for o in ours] == [float(v) for v in theirs]
    assert ours[0]["m"] > ours[1]["m"]  # regParam=1 with pure L1 zeroes every coefficient


RESUME_ARGV = ["--regParam", "0.0,1.0", "--elasticNetParam", "0.0", "--maxIter", "5"]


def _tune_parent(store, argv=RESUME_ARGV, status="KILLED", experiment_id=None, **tags):
    """A stopped tune parent as the search marks it (its search and data digest tags)."""
    params, _ = parse_params("tune", argv)
    plan = prepare_tuning(params)
    marks = {
        SEARCH_TAG: json.dumps(search_identity(params, plan.grid, plan.held)),
        DIGEST_TAG: content_digest(plan.source),
        **tags,
    }
    client = store.client()
    run = client.create_run(experiment_id or store.experiment_id, tags=marks)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _resume(run_id, *argv):
    params, _ = parse_params("tune", [*RESUME_ARGV, *argv, "--resume", run_id])
    return prepare_tuning(params)


def test_a_resume_of_the_same_search_names_its_parent(store, monkeypatch):
    parent = _tune_parent(store, status="RUNNING")  # SIGKILLed: never ended
    plan = _resume(parent, "--parallelism", "1", "--master", "local[1]")  # may differ
    assert plan.resume_run_id == parent and plan.resume.resumes == 0
    assert plan.digest == content_digest(plan.source) and plan.launcher_run_id is None
    # under `mlflow run`, the CLI's own run is remembered, to say where the work went
    launcher = store.client().create_run(store.experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    plan = _resume(parent)
    assert plan.resume_run_id == parent and plan.launcher_run_id == launcher


@pytest.mark.parametrize(
    ("parent_argv", "given", "message"),
    [
        (RESUME_ARGV, ["--regParam", "0.0,0.5"], "searched a different grid"),
        (RESUME_ARGV, ["--maxIter", "6"], "searched a different fixed (maxIter: 5 there, 6 here)"),
        (RESUME_ARGV, ["--seed", "7"], "searched a different settings (seed: 42 there, 7 here)"),
        (RESUME_ARGV, ["--numFolds", "2"], "searched a different settings (numFolds"),
    ],
)
def test_a_resume_of_another_search_is_one_line(store, parent_argv, given, message):
    parent = _tune_parent(store, parent_argv)
    with pytest.raises(UserError) as info:
        _resume(parent, *given)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_resume_refusals(store, tmp_path):
    client = store.client()
    with pytest.raises(UserError, match="resume: no run 'nope' in the tracking store"):
        _resume("nope")
    plain = client.create_run(store.experiment_id).info.run_id
    with pytest.raises(UserError, match="is not a tune search"):
        _resume(plain)
    other_data = _tune_parent(store, **{DIGEST_TAG: "0123456789abcdef"})
    with pytest.raises(UserError, match=r"searched other data \(content digest 0123456789abcdef"):
        _resume(other_data)
    finished = _tune_parent(store, status="FINISHED")
    with pytest.raises(UserError, match="finished its search; nothing to resume"):
        _resume(finished)
    elsewhere = client.create_experiment("elsewhere", artifact_location=tmp_path.as_uri())
    moved = _tune_parent(store, experiment_id=elsewhere)
    with pytest.raises(UserError, match=f"is in experiment {elsewhere}, not this one"):
        _resume(moved)
    # a search still running in a live process on this host
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "tune"])
    try:
        running = _tune_parent(
            store, status="RUNNING", **{PROCESS_TAG: f"{socket.gethostname()}:{live.pid}"}
        )
        with pytest.raises(UserError, match=f"still being searched by process {live.pid}"):
            _resume(running)
    finally:
        live.kill()
        live.wait()
    _resume(running)  # once that process is gone, it resumes


def test_a_refused_resume_fails_its_own_run_and_leaves_the_parent_alone(store, capsys):
    parent = _tune_parent(store)
    code = run_script("tune", *RESUME_ARGV, "--seed", "7", "--resume", parent)
    assert code == 2
    err = capsys.readouterr().err
    assert f"tune: error: resume: run {parent} searched a different settings" in err
    assert "Traceback" not in err
    failed = newest_run(store)
    assert failed.info.run_id != parent and failed.info.status == "FAILED"
    assert store.client().get_run(parent).info.status == "KILLED"


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
    assert len({c.data.tags[POINT_HASH_TAG] for c in children}) == 4  # logged as they finish
    assert all(c.info.status == "FINISHED" for c in children)
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
