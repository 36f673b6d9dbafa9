"""`mlflow models serve` answers with the numpy scorer (docs/serving.md): a model of every
(task, estimator) pair, trained by the template's `train` and served from `runs:/<id>/model`
on 127.0.0.1, answers one-row JSON requests (the whole row, then each column left out in turn)
exactly as the Spark model does for the same row with that value null, refuses a request that
lacks a required column as MLflow does, and starts no JVM. One server at a time, small data.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import psutil
import pytest
from lifecycle_support import module_tracking, newest_run, run_script
from servers import invoke, model_server, wait_until_serving

from sparkml_template.runtime.tracking import PARITY_METRIC, SERVING_FORM_TAG
from sparkml_template.serving.parity import TOLERANCE, relative_difference

ROWS = 90
PAIRS = [
    ("wine", "linear"),
    ("wine", "random_forest"),
    ("cancer", "linear"),
    ("cancer", "random_forest"),
    ("cancer", "gbt"),
    ("diabetes", "linear"),
    ("diabetes", "random_forest"),
    ("diabetes", "gbt"),
]


def _awkward(frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    rng = np.random.default_rng(5)
    frame = frame.copy()
    frame["visits"] = rng.integers(0, 9, n)  # int64: Spark reads int, the signature says long
    frame["count"] = rng.integers(1, 5, n).astype(float)
    frame.loc[frame.index % 9 == 0, "count"] = np.nan  # an integer with gaps: `any`, optional
    frame["site"] = np.where(frame.index % 2 == 0, "north", "south")
    frame.loc[frame.index % 11 == 0, "site"] = None
    frame["seen"] = pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    return frame


@pytest.fixture(scope="module")
def store(spark, tmp_path_factory):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    tmp = tmp_path_factory.mktemp("fast_serving")
    frames = {
        "wine": (load_wine(as_frame=True).frame.sample(ROWS, random_state=1), "cultivar"),
        "cancer": (load_breast_cancer(as_frame=True).frame.sample(ROWS, random_state=2), "y"),
        "diabetes": (load_diabetes(as_frame=True).frame.head(ROWS), "y"),
    }
    data = {}
    for name, (frame, label) in frames.items():
        frame = frame.reset_index(drop=True).rename(columns={"target": label})
        # a few features are enough, and keep each request small
        frame = frame[[*frame.columns[:4], label]]
        # pandas' to_json (the request) keeps 10 decimals: fewer here, so requests are exact
        frame = frame.round(6)
        data[name] = (tmp / f"{name}.csv", label)
        _awkward(frame).to_csv(data[name][0], index=False)
    with module_tracking(tmp) as tracking:
        yield tracking, tmp, data


def _spark_rows(spark, path, rows: list[dict]):
    """``rows`` (as pd.read_csv gives them, NaN for null) in a DataFrame with the schema the
    template's reader gives the CSV."""
    from pyspark.sql.types import DateType, IntegerType, LongType, StringType, StructType

    from sparkml_template.dataset.sources import resolve_source
    from sparkml_template.yours.data import read_source

    schema = read_source(spark, resolve_source(str(path))).schema

    def value(field, v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(field.dataType, IntegerType | LongType):
            return int(v)
        if isinstance(field.dataType, DateType):
            return dt.date.fromisoformat(v)
        if isinstance(field.dataType, StringType):
            return str(v)
        return float(v)

    fields = [f for f in schema.fields if f.name in rows[0]]
    return spark.createDataFrame(
        [tuple(value(f, r.get(f.name)) for f in fields) for r in rows], StructType(fields)
    )


def _same(ours, theirs) -> bool:
    if isinstance(theirs, str) or isinstance(ours, str):
        return ours == theirs
    return bool(relative_difference([ours], [theirs]).max() <= TOLERANCE)


def _java_processes(pid: int) -> list[str]:
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [" ".join(p.cmdline()[:2]) for p in tree if "java" in p.name().lower()]


@pytest.mark.parametrize(("name", "estimator"), PAIRS)
def test_the_served_model_answers_one_row_requests_as_spark(spark, store, name, estimator):
    import mlflow

    tracking, tmp, data = store
    path, label = data[name]
    code = run_script("train", "--master", "local[2]", "--data", str(path), "--label", label,
                      "--estimator", estimator, "--numTrees", "5", "--maxIter", "5",
                      "--maxDepth", "3")  # fmt: skip
    run = newest_run(tracking)
    assert code == 0, run.data.tags.get("sparkml_template.error")
    assert run.data.tags[SERVING_FORM_TAG] == "fast", run.data.tags
    assert run.data.metrics[PARITY_METRIC] <= TOLERANCE

    uri = f"runs:/{run.info.run_id}/model"
    signature = mlflow.models.get_model_info(uri).signature
    optional = {c.name for c in signature.inputs.inputs if not c.required}
    assert {"count", "site"} <= optional
    frame = pd.read_csv(path).drop(columns=[label])
    row = frame.iloc[0].to_dict()
    requests = [(None, frame.head(1))] + [(c, frame.head(1).drop(columns=[c])) for c in frame]
    expected_rows = [row] + [{**row, c: None} for c in frame]  # a left-out column is null
    spark_model = mlflow.spark.load_model(uri)
    scored = spark_model.transform(_spark_rows(spark, path, expected_rows))
    expected = [r["prediction"] for r in scored.select("prediction").collect()]
    batch_expected = [
        r["prediction"]
        for r in spark_model.transform(_spark_rows(spark, path, frame.to_dict("records")))
        .select("prediction")
        .collect()
    ]

    log = tmp / f"serve_{name}_{estimator}.log"
    with model_server(uri, tracking.uri, log) as (base, proc):
        wait_until_serving(base, proc, log)
        answers = [invoke(base, request) for _, request in requests]
        batch_status, batch_body = invoke(base, frame)
        java = _java_processes(proc.pid)
    assert not java, f"the server started a JVM: {java}"
    for (left_out, _), (status, body), want in zip(requests, answers, expected, strict=True):
        if left_out is not None and left_out not in optional:
            assert status == 400 and left_out in body, (left_out, status, body)
            continue
        assert status == 200, (left_out, body)
        got = json.loads(body)["predictions"]
        assert len(got) == 1 and _same(got[0], want), (left_out, got, want)
    assert batch_status == 200, batch_body
    got = json.loads(batch_body)["predictions"]
    assert all(_same(a, b) for a, b in zip(got, batch_expected, strict=True))
