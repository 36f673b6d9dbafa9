"""The `predict` entry point: batch scoring with a registered model on real Spark and MLflow.

One model is trained and registered once for the module; every case runs `predict.py`
in-process (the `mlflow run -e predict` CLI: tests/e2e/test_cli_lifecycle.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, SHIPPED_DATA
from entry_subprocess import as_a_plain_user, entry_command, entry_env, run_entry
from lifecycle_support import error_lines, module_tracking, newest_run, run_script, train_champion

from sparkml_template.workflows.predict import ADDED_COLUMNS

# Each test runs whole entry points in-process on real Spark: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

NAME = "bc_scoring"


@pytest.fixture(scope="module")
def model(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    with module_tracking(tmp) as tracking:
        yield tracking, train_champion(tracking, NAME)


def _predict(*argv: str) -> int:
    return run_script("predict", "--master", "local[2]", *argv)


def test_predictions_keep_inputs_and_add_labels_probabilities_and_lineage(model, spark, tmp_path):
    from pyspark.sql import functions as F

    tracking, version = model
    out = tmp_path / "scored"
    assert _predict("--modelUri", f"models:/{NAME}@champion", "--output", str(out)) == 0

    source = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True)
    scored = spark.read.parquet(str(out))
    assert scored.columns == source.columns + list(ADDED_COLUMNS)
    rows = scored.collect()
    assert len(rows) == source.count()
    labels = ["benign", "malignant"]
    for row in rows:
        probability = row["probability"]
        assert sum(probability) == pytest.approx(1.0)
        # the label strings, mapped back by the pipeline, agree with the probability array
        assert row["prediction"] == labels[probability.index(max(probability))]
    correct = sum(row["prediction"] == row["diagnosis"] for row in rows)
    assert correct / len(rows) > 0.9  # the label column is kept as an ordinary column
    lineage = scored.select("model_uri", "model_version", "model_run_id", "scored_at").distinct()
    assert lineage.collect() == [
        (f"models:/{NAME}@champion", str(version.version), version.run_id, rows[0]["scored_at"])
    ]
    assert scored.where(F.col("scored_at").isNull()).count() == 0

    run = newest_run(tracking)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["input_rows"] == run.data.metrics["output_rows"] == len(rows)
    assert run.data.tags["predict.output"] == str(out)
    assert run.data.tags["predict.model_version"] == str(version.version)


def test_existing_output_is_refused_unless_overwrite(model, spark, tmp_path, capsys):
    tracking, _ = model
    out = tmp_path / "scored"
    out.mkdir()
    (out / "keep.txt").write_text("someone else's data")
    argv = ("--modelUri", f"models:/{NAME}/1", "--output", str(out))
    assert _predict(*argv) == 2
    assert error_lines(capsys, "predict") == [
        f"predict: error: output {out} already exists; pass -P overwrite=true to replace it"
    ]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert newest_run(tracking).info.status == "FAILED"

    features_only = tmp_path / "features.parquet"
    spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True).drop("diagnosis").limit(
        50
    ).write.parquet(str(features_only))
    assert _predict(*argv, "--overwrite", "true", "--data", str(features_only)) == 0
    scored = spark.read.parquet(str(out))
    assert scored.count() == 50  # replaced, and scored without any label column
    assert "diagnosis" not in scored.columns
    assert not (out / "keep.txt").exists()


def test_missing_signature_columns_are_named(model, spark, tmp_path, capsys):
    partial = tmp_path / "partial.csv"
    source = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True)
    source.drop("mean_radius", "worst_area").limit(20).toPandas().to_csv(partial, index=False)
    out = tmp_path / "never"
    code = _predict(
        "--modelUri", f"models:/{NAME}@champion", "--data", str(partial), "--output", str(out)
    )
    assert code == 2
    (line,) = error_lines(capsys, "predict")
    assert line.endswith("needs: mean_radius, worst_area"), line
    assert not out.exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/no_such_model@champion", "no registered model named 'no_such_model'"),
        (f"models:/{NAME}@nope", f"registered model '{NAME}' has no alias 'nope'"),
        (f"models:/{NAME}/99", f"registered model '{NAME}' has no version 99"),
        (f"models:/{NAME}/Production", "names a stage or a path"),
    ],
)
def test_unknown_model_name_alias_or_version_is_one_line(model, tmp_path, capsys, uri, message):
    tracking, _ = model
    assert _predict("--modelUri", uri, "--output", str(tmp_path / "out")) == 2
    (line,) = error_lines(capsys, "predict")
    assert message in line
    assert newest_run(tracking).info.status == "FAILED"


def test_output_holding_the_input_is_refused(model, tmp_path, capsys):
    data = tmp_path / "in" / "data.csv"
    data.parent.mkdir()
    data.write_bytes(SHIPPED_DATA.read_bytes())
    code = _predict("--data", str(data), "--output", str(data.parent), "--overwrite", "true")
    assert code == 2
    assert "holds the input data" in error_lines(capsys, "predict")[0]
    assert data.read_bytes() == SHIPPED_DATA.read_bytes()


def test_predictions_to_a_table(model, spark):
    table = "default.lifecycle_test_predictions"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    try:
        assert _predict("--modelUri", f"models:/{NAME}@champion", "--output", table) == 0
        assert spark.table(table).count() == newest_run(model[0]).data.metrics["input_rows"]
        assert _predict("--modelUri", f"models:/{NAME}@champion", "--output", table) == 2
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")


# -- outputs replaced whole or not at all; damaged or unreadable input in one line --


def _files(root) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) and its bytes."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _parquet_parts(spark, path, parts: int, copies: int = 1):
    """The shipped data (``copies`` times) as ``parts`` Parquet files, without .crc files."""
    df = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True)
    for _ in range(copies - 1):
        df = df.unionAll(spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True))
    df.repartition(parts).write.parquet(str(path))
    for crc in path.glob(".*.crc"):
        crc.unlink()
    return sorted(path.glob("*.parquet"))


def _damage_pages(part) -> None:
    """Garbage over the data pages, the footer kept: the schema and row count still read (no
    job fails before the write), the write's own read of the pages does not."""
    data = bytearray(part.read_bytes())
    half = len(data) // 2
    data[4:half] = random.Random(1).randbytes(half - 4)
    part.write_bytes(bytes(data))


def test_a_failed_overwrite_leaves_the_previous_output_byte_identical(
    model, spark, tmp_path, capsys
):
    """Spark's own overwrite deletes the output before its job runs (FACTS.md): here the job
    fails on a damaged input file while writing, and the previous output is untouched."""
    tracking, _ = model
    out = tmp_path / "scored"
    uri = f"models:/{NAME}@champion"
    assert _predict("--modelUri", uri, "--output", str(out)) == 0
    before = _files(out)
    data = tmp_path / "damaged"
    part = _parquet_parts(spark, data, parts=3)[1]
    _damage_pages(part)
    capsys.readouterr()

    code = _predict(
        "--modelUri", uri, "--data", str(data), "--output", str(out), "--overwrite", "true"
    )
    assert code == 2
    (line,) = error_lines(capsys, "predict")
    assert line.startswith(f"predict: error: cannot read {part}: not a readable Parquet file")
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "scored"]  # no staging
    run = newest_run(tracking)
    assert run.info.status == "FAILED"
    assert run.data.metrics.get("spark/tasks", 0) >= 1


def test_evaluate_and_promote_on_a_binary_csv_part_are_one_line(model, tmp_path, capsys):
    import mlflow

    tracking, version = model
    # a second version of the same model, so that promote has a candidate to score
    candidate = mlflow.register_model(f"runs:/{version.run_id}/model", NAME).version
    data = tmp_path / "parts"
    data.mkdir()
    (data / "part-0.csv").write_bytes(SHIPPED_DATA.read_bytes())
    (data / "part-1.csv").write_bytes(random.Random(3).randbytes(20000))
    expected = f"cannot read {data / 'part-1.csv'}: Malformed CSV record"
    for entry_point, argv in [
        ("evaluate", ("--modelUri", f"models:/{NAME}@champion")),
        ("promote", ("--registeredModelName", NAME, "--modelUri", f"models:/{NAME}/{candidate}")),
    ]:
        code = run_script(entry_point, "--master", "local[2]", "--data", str(data), *argv)
        lines = [ln for ln in error_lines(capsys, entry_point) if ": error:" in ln]
        assert code == 2 and len(lines) == 1 and expected in lines[0], lines
        assert newest_run(tracking).info.status == "FAILED"


@pytest.mark.parametrize(
    ("data", "output", "message"),
    [
        ("in/data.csv", "in/data.csv", "holds the input data"),
        ("in", "in/scored", "is inside the input"),
        ("in/data.csv", "in/data.csv/scored", "is inside the input"),
        ("default.some_input", "default.some_input", "is the input table"),
    ],
)
def test_an_output_that_is_or_overlaps_the_input_is_refused(
    model, tmp_path, capsys, monkeypatch, data, output, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.csv").write_bytes(SHIPPED_DATA.read_bytes())
    code = _predict("--data", data, "--output", output, "--overwrite", "true")
    assert code == 2
    (line,) = error_lines(capsys, "predict")
    assert message in line, line
    assert (tmp_path / "in" / "data.csv").read_bytes() == SHIPPED_DATA.read_bytes()
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["data.csv"]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and " Z " in Path(f"/proc/{pid}/stat").read_text()


def test_a_predict_killed_mid_write_leaves_the_previous_output_and_the_next_cleans_up(
    model, spark, tmp_path, capsys
):
    """SIGKILL to `python predict.py` while Spark writes the staging directory: the previous
    output stays as it was; the next predict to that output removes the debris."""
    tracking, _ = model
    uri = f"models:/{NAME}@champion"
    out = tmp_path / "scored"
    small = tmp_path / "small.parquet"
    _parquet_parts(spark, small, parts=1)
    assert _predict("--modelUri", uri, "--data", str(small), "--output", str(out)) == 0
    before = _files(out)
    big = tmp_path / "big.parquet"
    _parquet_parts(spark, big, parts=24, copies=20)  # a write of ~24 tasks, some seconds

    argv = ("--modelUri", uri, "--data", str(big), "--output", str(out), "--overwrite", "true")
    proc = subprocess.Popen(
        entry_command("predict", *argv, "--master", "local[2]"),
        env=entry_env(tracking),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        staging = _wait_for(
            lambda: [p for p in tmp_path.glob("scored.staging-*") if (p / "data").exists()],
            240,
            "the staging directory's data",
        )[0]
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=60)
    owner = json.loads((staging / "_owner.json").read_text())
    for pid in owner["processes"]:  # the driver JVM may write on briefly after Python is gone
        _wait_for(lambda pid=pid: _gone(int(pid)), 60, f"process {pid} to exit")
    assert proc.returncode == -signal.SIGKILL
    assert _files(out) == before
    assert staging.exists()  # the debris, until the next predict to this output

    capsys.readouterr()
    code = _predict(
        "--modelUri", uri, "--data", str(small), "--output", str(out), "--overwrite", "true"
    )
    assert code == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note: ")]
    assert notes == [f"note: removed {staging}, left by a predict that did not finish"]
    assert not list(tmp_path.glob("scored.staging-*"))
    assert spark.read.parquet(str(out)).count() == spark.read.parquet(str(small)).count()


def test_an_unreadable_input_file_is_one_line_in_its_own_process(model, spark, tmp_path):
    """chmod 000 on one part of the input: `python predict.py` ends on one line naming it
    (root's own read permission is dropped for the process, as a user's would be)."""
    tracking, _ = model
    prefix = as_a_plain_user()
    data = tmp_path / "locked"
    part = _parquet_parts(spark, data, parts=3)[1]
    part.chmod(0)
    out = tmp_path / "never"
    done = run_entry(
        tracking,
        "predict",
        *("--modelUri", f"models:/{NAME}@champion", "--data", str(data), "--output", str(out)),
        "--master",
        "local[2]",
        prefix=prefix,
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("predict: ")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines == [f"predict: error: cannot read {part}: permission denied"]
    assert "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob("never.staging-*"))
    assert newest_run(tracking).info.status == "FAILED"


def test_without_an_output_the_rows_live_with_the_run_and_read_back(model, spark, tmp_path):
    """No ``output``: the executors write Parquet straight into the run's artifact location
    (a local store under local[*]); MLflow lists it and ``read_predictions`` reads it back."""
    from sparkml_template.workflows.predict_results import (
        IN_RUN_TAG,
        RESULTS_ARTIFACT,
        read_predictions,
    )

    tracking, version = model
    assert _predict("--modelUri", f"models:/{NAME}@champion", "--output", "") == 0
    run = newest_run(tracking)
    assert run.info.status == "FINISHED"
    assert run.data.tags[IN_RUN_TAG] == "direct"
    location = run.data.tags["predict.output"]
    assert location == f"{run.info.artifact_uri}/{RESULTS_ARTIFACT}"
    listed = tracking.client().list_artifacts(run.info.run_id, RESULTS_ARTIFACT)
    assert any(item.path.endswith(".parquet") for item in listed)

    rows = int(run.data.metrics["output_rows"])
    source = spark.read.csv(str(SHIPPED_DATA), header=True, inferSchema=True)
    assert rows == source.count()
    as_pandas = read_predictions(run.info.run_id)
    assert len(as_pandas) == rows
    assert list(as_pandas.columns) == source.columns + list(ADDED_COLUMNS)
    assert set(as_pandas["model_run_id"]) == {version.run_id}
    as_spark = read_predictions(run.info.run_id, spark=spark)
    assert as_spark.count() == rows
    assert sorted(as_spark.toPandas()["mean_radius"]) == sorted(as_pandas["mean_radius"])


def test_read_predictions_follows_a_path_output_too(model, spark, tmp_path):
    from sparkml_template.workflows.predict_results import read_predictions

    tracking, _ = model
    out = tmp_path / "scored"
    assert _predict("--modelUri", f"models:/{NAME}@champion", "--output", str(out)) == 0
    run_id = newest_run(tracking).info.run_id
    assert len(read_predictions(run_id)) == spark.read.parquet(str(out)).count()
