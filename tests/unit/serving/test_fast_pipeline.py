"""The numpy scorer gives the Spark model's answers (docs/serving.md): every (task, estimator)
pair fitted by the template's own path on awkward data, then scored by Spark and by the scorer
on the data, rows with each feature null in turn, each feature at its extremes, an unseen
category, and one-row batches that lack a column. Labels must be equal and probabilities or
regression values within 1e-6 relative. A stage it does not know keeps the Spark form.
"""

from __future__ import annotations

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest

from sparkml_template.serving.fastform import fast_pipeline
from sparkml_template.serving.fastform.fast_pipeline import NotConvertible, load_pipeline
from sparkml_template.serving.flavor import FAST, SHIPPED_PACKAGE, SPARK, Outcome, convert
from sparkml_template.serving.flavor import save_model as save_with_fast_form
from sparkml_template.serving.parity import TOLERANCE, check_parity, relative_difference

ROWS = 120
REQUIREMENTS = {"pip_requirements": ["mlflow"]}  # inferring them starts a second Spark
PAIRS = [
    ("wine", "linear"),  # three classes: multinomial logistic regression
    ("wine", "random_forest"),
    ("cancer", "linear"),  # two classes
    ("cancer", "random_forest"),
    ("cancer", "gbt"),
    ("diabetes", "linear"),  # regression
    ("diabetes", "random_forest"),
    ("diabetes", "gbt"),
]


def _awkward(frame: pd.DataFrame) -> pd.DataFrame:
    """An integer column with gaps, a number with gaps, a category with gaps, a date."""
    n = len(frame)
    rng = np.random.default_rng(11)
    frame = frame.copy()
    frame["visits"] = rng.integers(0, 9, n)
    frame["count"] = rng.integers(1, 5, n).astype(float)
    frame.loc[frame.index % 9 == 0, "count"] = np.nan  # whole numbers with gaps: Spark int
    frame["dose"] = rng.normal(2.0, 1.0, n)
    frame.loc[frame.index % 7 == 0, "dose"] = np.nan
    frame["site"] = np.where(frame.index % 3 == 0, "north", "south")
    frame.loc[frame.index % 3 == 1, "site"] = "west"
    frame.loc[frame.index % 11 == 0, "site"] = None
    frame["seen"] = pd.date_range("2023-12-20", periods=n, freq="D").strftime("%Y-%m-%d")
    return frame


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    tmp = tmp_path_factory.mktemp("fast_pipeline_data")
    frames = {
        "wine": (load_wine(as_frame=True).frame.sample(ROWS, random_state=1), "cultivar"),
        "cancer": (load_breast_cancer(as_frame=True).frame.sample(ROWS, random_state=2), "y"),
        "diabetes": (load_diabetes(as_frame=True).frame.head(ROWS), "y"),
    }
    paths = {}
    for name, (frame, label) in frames.items():
        frame = frame.reset_index(drop=True).rename(columns={"target": label})
        paths[name] = (tmp / f"{name}.csv", label)
        _awkward(frame).to_csv(paths[name][0], index=False)
    return paths


@pytest.fixture(scope="module")
def fitted_models(spark, datasets, tmp_path_factory):
    """(dataset, estimator) -> (Fitted, the saved MLflow model's directory), each fitted once."""
    from sparkml_template.dataset.sources import resolve_source
    from sparkml_template.runtime.params import parse_params
    from sparkml_template.workflows.fitting import fit_and_score

    tmp = tmp_path_factory.mktemp("fast_pipeline_models")
    out = {}
    for name, estimator in PAIRS:
        path, label = datasets[name]
        params, _ = parse_params(
            "train",
            ["--data", str(path), "--label", label, "--estimator", estimator,
             "--numTrees", "5", "--maxIter", "5", "--maxDepth", "4"],
        )  # fmt: skip
        fitted = fit_and_score(spark, params, resolve_source(params["data"]))
        saved = tmp / f"{name}_{estimator}"
        mlflow.spark.save_model(fitted.model, str(saved), **REQUIREMENTS)
        out[(name, estimator)] = (fitted, saved)
    return out


def _variants(spark, fitted):
    """Rows that stress the scorer: three plain rows; one with each feature null; each numeric
    feature at its minimum, maximum and a thousand times beyond; an unseen category; an old
    date. One small local DataFrame with the training schema."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, LongType, StructType

    profile = fitted.profile
    features = profile.features
    schema = StructType([fitted.data.schema[c] for c in features])
    data = fitted.data.select(*[F.col(f"`{c}`") for c in features])
    base = [row.asDict() for row in data.limit(3).collect()]
    rows = list(base)
    for column in features:
        rows.append({**base[0], column: None})
    bounds = data.agg(
        *[F.min(f"`{c}`").alias(f"min_{i}") for i, c in enumerate(profile.numeric_features)],
        *[F.max(f"`{c}`").alias(f"max_{i}") for i, c in enumerate(profile.numeric_features)],
    ).first()
    for i, column in enumerate(profile.numeric_features):
        low, high = bounds[f"min_{i}"], bounds[f"max_{i}"]
        integral = isinstance(schema[column].dataType, IntegerType | LongType)
        for value in (low, high, high * 1000 if high else 1000, low * 1000 if low else -1000):
            rows.append({**base[0], column: int(value) if integral else float(value)})
    for column in profile.categorical_features:
        rows.append({**base[0], column: "never-seen"})
    for column in profile.date_features:
        rows.append({**base[0], column: dt.date(1999, 2, 28)})
    return spark.createDataFrame([tuple(r[c] for c in features) for r in rows], schema)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "estimator"), PAIRS)
def test_the_scorer_gives_spark_answers(spark, fitted_models, name, estimator):
    fitted, saved = fitted_models[(name, estimator)]
    pipeline = load_pipeline(saved / "sparkml")
    assert set(pipeline.input_columns) == set(fitted.profile.features)

    on_data = check_parity(pipeline, fitted.model, fitted.data)
    assert on_data.rows == ROWS and on_data.passed, on_data

    rows = _variants(spark, fitted)
    stressed = check_parity(pipeline, fitted.model, rows)
    assert stressed.rows == rows.count() and stressed.passed, stressed


@pytest.mark.slow
@pytest.mark.parametrize(("name", "estimator"), [("wine", "random_forest"), ("cancer", "gbt"),
                                                  ("diabetes", "linear")])  # fmt: skip
def test_a_one_row_batch_without_a_column_scores_as_a_null(spark, fitted_models, name, estimator):
    """A column left out of a one-row request is null, as in a bigger batch."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    from sparkml_template.serving.parity import spark_answers

    fitted, saved = fitted_models[(name, estimator)]
    pipeline = load_pipeline(saved / "sparkml")
    probability = pipeline.predictor.probability_col if pipeline.predictor.classifier else None
    features = fitted.profile.features
    schema = StructType([fitted.data.schema[c] for c in features])
    first = fitted.data.select(*[F.col(f"`{c}`") for c in features]).first().asDict()
    nulled = [tuple(None if c == column else first[c] for c in features) for column in features]
    answers = spark_answers(fitted.model, spark.createDataFrame(nulled, schema), features,
                            probability)  # fmt: skip
    for i, column in enumerate(features):
        expected = answers.iloc[[i]].reset_index(drop=True)
        request = expected[features].drop(columns=[column])
        ours = pipeline.transform(request)
        if probability:
            assert pipeline.predict(request) == list(expected["prediction"]), column
            ours_values, theirs = ours[probability][0], expected[probability][0]
        else:  # a regression value (NaN when a feature without imputation is null, as in Spark)
            ours_values, theirs = ours["prediction"], expected["prediction"]
        assert relative_difference(ours_values, theirs).max() <= TOLERANCE, column


@pytest.mark.slow
def test_the_logged_form_enforces_the_signature_and_answers_as_spark(
    spark, fitted_models, datasets, tmp_path
):
    """Saved by the template's flavour: MLflow's pyfunc loads the numpy scorer, takes what
    ``pd.read_csv`` gives (int64, NaN, ISO dates) and answers as the Spark model does; the Spark
    flavour is still there, and ``SPARKML_FAST_SERVING=off`` serves it."""
    from mlflow.models import Model

    from sparkml_template.workflows.signature import serving_signature

    fitted, _ = fitted_models[("cancer", "gbt")]
    path, label = datasets["cancer"]
    outcome = Outcome()
    target = tmp_path / "model"
    options = {"signature": serving_signature(fitted), **REQUIREMENTS}
    save_with_fast_form(fitted.model, str(target), mlflow_model=Model(), parity_rows=fitted.test,
                        outcome=outcome, **options)  # fmt: skip
    assert outcome.form == FAST and outcome.parity.passed, outcome
    assert (target / "code" / SHIPPED_PACKAGE / "fast_pipeline.py").is_file()

    rows = pd.read_csv(path).drop(columns=[label])
    assert rows["visits"].dtype == np.int64 and rows["count"].isna().any()
    served = mlflow.pyfunc.load_model(str(target))
    assert served.loader_module == f"{SHIPPED_PACKAGE}.fast_pipeline"
    ours = served.predict(rows)
    spark_model = mlflow.spark.load_model(str(target))
    expected = [r["prediction"] for r in spark_model.transform(fitted.data).collect()]
    assert ours == expected
    # a one-row request without an optional column: what the same row with a null gets
    without = served.predict(rows.head(1).drop(columns=["count"]))
    assert without == served.predict(rows.head(1).assign(count=np.nan))

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(fast_pipeline.SWITCH, "off")
        by_spark = mlflow.pyfunc.load_model(str(target))
        assert by_spark.predict(rows.head(20)) == expected[:20]


@pytest.mark.slow
def test_the_spark_form_scores_a_one_row_batch_with_each_column_missing(
    spark, fitted_models, datasets, tmp_path
):
    """Logged with its Spark form alone: pyfunc still loads it through the shipped package, and
    a one-row batch whose column is absent or null (number, category, date) answers as that row
    does inside a bigger batch. MLflow's own Spark pyfunc refuses it (the column is NullType)."""
    from mlflow.models import Model

    from sparkml_template.workflows.signature import serving_signature

    fitted, _ = fitted_models[("wine", "linear")]
    path, label = datasets["wine"]
    target = tmp_path / "model"
    options = {"signature": serving_signature(fitted), **REQUIREMENTS}
    save_with_fast_form(fitted.model, str(target), mlflow_model=Model(), fast=False, **options)
    served = mlflow.pyfunc.load_model(str(target))
    assert served.loader_module == f"{SHIPPED_PACKAGE}.fast_pipeline"
    assert fast_pipeline.logged_form(target / "sparkml") == SPARK

    rows = pd.read_csv(path).drop(columns=[label]).head(8)
    expected = fitted.model.transform(spark.createDataFrame(rows)).toPandas()["prediction"]
    assert served.predict(rows) == list(expected)
    optional = [c.name for c in options["signature"].inputs.inputs if not c.required]
    assert {"count", "dose", "site"} <= set(optional)
    for column in optional:  # a required column left out is refused by the signature, as it is
        one = rows.head(1).drop(columns=[column])
        batch = pd.concat([one, rows.iloc[1:]], ignore_index=True)  # there: null in row 0
        assert served.predict(one) == served.predict(batch)[:1], column
        present = rows.head(1).assign(**{column: None})  # present but null: typed by the signature
        assert served.predict(present) == served.predict(one), column


def test_a_stage_it_does_not_know_keeps_the_spark_form(spark, tmp_path):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import Bucketizer, SQLTransformer, VectorAssembler

    frame = spark.createDataFrame([(1.0, 2.0), (3.0, 4.0)], ["a", "b"])
    unknown = Pipeline(stages=[
        Bucketizer(splits=[-float("inf"), 2.0, float("inf")], inputCol="a", outputCol="a_bin"),
        VectorAssembler(inputCols=["a_bin", "b"], outputCol="features"),
    ]).fit(frame)  # fmt: skip
    mlflow.spark.save_model(unknown, str(tmp_path / "unknown"), **REQUIREMENTS)
    with pytest.raises(NotConvertible, match=r"stage 0 \(Bucketizer\)"):
        load_pipeline(tmp_path / "unknown" / "sparkml")
    outcome = convert(tmp_path / "unknown", unknown, frame)
    assert outcome.form == SPARK and "stage 0 (Bucketizer) is not convertible" in outcome.reason

    other_sql = Pipeline(stages=[SQLTransformer(statement="SELECT *, a + b AS c FROM __THIS__")])
    mlflow.spark.save_model(other_sql.fit(frame), str(tmp_path / "sql"), **REQUIREMENTS)
    with pytest.raises(NotConvertible, match="SQL"):
        load_pipeline(tmp_path / "sql" / "sparkml")


def test_relative_difference_counts_nan_and_tiny_values():
    assert relative_difference([1.0, np.nan], [1.0 + 1e-9, np.nan]).max() < TOLERANCE
    assert relative_difference([1.0], [1.001]).max() > TOLERANCE
    assert relative_difference([np.nan], [0.0]).max() == np.inf
    assert relative_difference([0.0], [1e-20]).max() < TOLERANCE  # below the floor: absolute


def test_date_parts_are_spark_numbers_whatever_the_date_arrives_as():
    """Sunday is 1 and Saturday 7 (Spark's dayofweek); datetime64, ISO text and Python dates
    agree; a missing date is null in every part."""
    from sparkml_template.serving.fastform.fast_base import _date_parts

    text = ["2024-03-03", "2024-03-09T13:30:00", None]
    as_text = _date_parts(pd.Series(text, dtype=object), 3)
    as_datetime = _date_parts(pd.to_datetime(pd.Series(text), format="ISO8601"), 3)
    as_python = _date_parts(
        pd.Series([dt.date(2024, 3, 3), dt.datetime(2024, 3, 9, 13, 30), pd.NaT], dtype=object), 3
    )
    for parts in (as_text, as_datetime, as_python):
        assert list(parts["dayofweek"][:2]) == [1.0, 7.0]
        assert list(parts["dayofyear"][:2]) == [63.0, 69.0]
        assert list(parts["hour"][:2]) == [0.0, 13.0]
        assert all(np.isnan(parts[p][2]) for p in parts)
