"""Every user mistake: one line on stderr, exit code 2, and an MLflow run that ends FAILED.

These run the real entry-point code in-process on the test session's Spark (the runner reuses an
active session), against a throw-away SQLite store; tests/e2e/test_cli.py covers the same path
through the `mlflow run` CLI for a few of them.
"""

from __future__ import annotations

import random

import pytest
from conftest import SHIPPED_DATA, only_run

import evaluate
import train
import tune
from sparkml_template.runtime.tracking import ERROR_TAG
from sparkml_template.workflows.evaluate import prepare_evaluation
from sparkml_template.workflows.runner import run_entry_point
from sparkml_template.workflows.train import prepare_training
from sparkml_template.workflows.tune import prepare_tuning


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


def _damaged_parquet(spark, tmp_path):
    """The shipped data as three Parquet files, the middle one cut in half (no .crc files)."""
    data = tmp_path / "damaged.parquet"
    spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).repartition(3).write.parquet(
        str(data)
    )
    for crc in data.glob(".*.crc"):
        crc.unlink()
    part = sorted(data.glob("*.parquet"))[1]
    part.write_bytes(part.read_bytes()[:1000])
    return data, part


def _binary_csv_part(tmp_path):
    data = tmp_path / "parts"
    data.mkdir()
    (data / "part-0.csv").write_bytes(SHIPPED_DATA.read_bytes())
    (data / "part-1.csv").write_bytes(random.Random(3).randbytes(20000))
    return data, data / "part-1.csv"


def _assert_unreadable(tracking, capsys, code, entry_point, path, cause) -> None:
    _assert_failed(tracking, capsys, code, entry_point, f"cannot read {path}: {cause}")
    run = only_run(tracking)
    assert run.data.metrics.get("spark/tasks", 0) >= 1  # the task capture still ran


@pytest.mark.slow
def test_a_damaged_parquet_file_is_one_line_naming_it(tracking, capsys, spark, tmp_path):
    data, part = _damaged_parquet(spark, tmp_path)
    code = _run("train", ["--data", str(data), "--label", "diagnosis", "--master", "local[2]"])
    _assert_unreadable(tracking, capsys, code, "train", part, "not a readable Parquet file")


@pytest.mark.slow
def test_a_binary_csv_part_is_one_line_naming_it(tracking, capsys, spark, tmp_path):
    """Not nulls in the features, as Spark's default (PERMISSIVE) would make of it."""
    data, part = _binary_csv_part(tmp_path)
    code = _run("train", ["--data", str(data), "--label", "diagnosis", "--master", "local[2]"])
    _assert_unreadable(tracking, capsys, code, "train", part, "Malformed CSV record")


@pytest.mark.slow
def test_tune_on_a_damaged_file_is_one_line(tracking, capsys, spark, tmp_path):
    data, part = _damaged_parquet(spark, tmp_path)
    argv = ["--data", str(data), "--label", "diagnosis", "--master", "local[2]"]
    code = run_entry_point("tune", argv, prepare_tuning, tune.body)
    _assert_unreadable(tracking, capsys, code, "tune", part, "not a readable Parquet file")


@pytest.mark.slow
def test_an_unreadable_file_is_one_line_in_its_own_process(tracking, spark, tmp_path):
    """chmod 000 on one part: `python train.py` ends on one line naming it (root's own read
    permission is dropped for the process, as a user's would be)."""
    from entry_subprocess import as_a_plain_user, run_entry

    prefix = as_a_plain_user()
    data = tmp_path / "locked.parquet"
    spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).repartition(3).write.parquet(
        str(data)
    )
    part = sorted(data.glob("*.parquet"))[1]
    part.chmod(0)
    argv = ["--data", str(data), "--label", "diagnosis", "--master", "local[2]"]
    done = run_entry(tracking, "train", *argv, prefix=prefix)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("train: ")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines == [f"train: error: cannot read {part}: permission denied"]
    assert "Traceback" not in done.stderr
    # the failed task's Java trace stays in the event log, not on the console (log4j2.properties)
    frames = [ln for ln in done.stderr.splitlines() if ln.lstrip().startswith("at ")]
    assert frames == [], done.stderr[-3000:]
    assert "TaskSetManager: Lost task" in done.stderr  # still one line per failed task
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert run.data.metrics.get("spark/tasks", 0) >= 1
