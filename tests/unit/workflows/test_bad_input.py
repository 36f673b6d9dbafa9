"""Every user mistake: one line on stderr, exit code 2, and an MLflow run that ends FAILED.

These run the real entry-point code in-process on the test session's Spark (the runner reuses an
active session), against a throw-away SQLite store; tests/e2e/test_cli.py covers the same path
through the `mlflow run` CLI for a few of them.
"""

from __future__ import annotations

import pytest
from conftest import only_run

import evaluate
import train
from sparkml_template.runtime.tracking import ERROR_TAG
from sparkml_template.workflows.evaluate import prepare_evaluation
from sparkml_template.workflows.runner import run_entry_point
from sparkml_template.workflows.train import prepare_training


def _run(entry_point: str, argv: list[str]) -> int:
    if entry_point == "train":
        return run_entry_point("train", argv, prepare_training, train.body)
    return run_entry_point("evaluate", argv, prepare_evaluation, evaluate.body)


def _assert_failed(tracking, capsys, code: int, entry_point: str, expected: str) -> None:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{entry_point}: error:")]
    assert code == 2
    assert len(lines) == 1 and expected in lines[0], err[-2000:]
    assert "Traceback" not in err
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert expected in run.data.tags[ERROR_TAG]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--regParam", "-0.5"], "regParam must be >= 0, got -0.5"),
        (["--elasticNetParam", "1.5"], "elasticNetParam must be in [0, 1], got 1.5"),
        (["--maxIter", "0"], "maxIter must be >= 1, got 0"),
        (["--testFraction", "1"], "testFraction must be in (0, 1), got 1.0"),
        (["--seed", "x"], "seed must be a whole number, got 'x'"),
        (["--colour", "red"], "unknown parameter 'colour' for entry point 'train'; valid: data"),
    ],
)
def test_bad_parameters(tracking, capsys, argv, expected):
    _assert_failed(tracking, capsys, _run("train", argv), "train", expected)


CSV_CASES = {
    "empty": ("x,y\n", "the dataset has no rows"),
    "no_label": ("x,z\n1,a\n2,b\n", "label column 'y' is not in the data; columns: x, z"),
    "one_class": ("x,y\n1,a\n2,a\n3,a\n", "label column 'y' has one class ('a')"),
    "null_feature": ("x,w,y\n1,,a\n2,,b\n3,,a\n", "feature column(s) entirely null: w"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_data(tracking, capsys, spark, tmp_path, case):
    text, expected = CSV_CASES[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    code = _run("train", ["--data", str(path), "--label", "y", "--master", "local[2]"])
    _assert_failed(tracking, capsys, code, "train", expected)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("runs:/0123456789abcdef/model", "cannot load model 'runs:/0123456789abcdef/model'"),
        ("models:/no-such-model/1", "cannot load model 'models:/no-such-model/1'"),
        ("/nonexistent/model/dir", "cannot load model '/nonexistent/model/dir'"),
    ],
)
def test_unreadable_model_uri(tracking, capsys, spark, uri, expected):
    code = _run("evaluate", ["--modelUri", uri, "--master", "local[2]"])
    _assert_failed(tracking, capsys, code, "evaluate", expected)


def test_evaluate_without_any_trained_model(tracking, capsys, spark):
    code = _run("evaluate", ["--master", "local[2]"])
    _assert_failed(tracking, capsys, code, "evaluate", "no finished training run with a model")


def test_a_file_tracking_store_is_one_line_before_any_work(tracking, capsys, spark, tmp_path):
    """MLflow 3 refuses a ``./mlruns``-style store unless MLFLOW_ALLOW_FILE_STORE=true: said in
    one line (no traceback) and no run anywhere, neither there nor in the usual store."""
    import mlflow

    store = tmp_path / "mlruns"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.as_uri())
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        mlflow.set_tracking_uri(store.as_uri())
        try:
            code = _run("train", ["--master", "local[2]"])
        finally:
            mlflow.set_tracking_uri(tracking.uri)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("train: error:")]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1, err[-2000:]
    assert "tracking store refused the run" in lines[0] and "MLFLOW_ALLOW_FILE_STORE" in lines[0]
    assert not list(store.glob("*/*/meta.yaml"))
    assert tracking.client().search_runs([tracking.experiment_id]) == []
