"""The `predict` entry point: batch scoring with a registered model on real Spark and MLflow.

One model is trained and registered once for the module; every case runs `predict.py`
in-process (the `mlflow run -e predict` CLI: tests/e2e/test_cli_lifecycle.py).
"""

from __future__ import annotations

import pytest
from conftest import SHIPPED_DATA
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
