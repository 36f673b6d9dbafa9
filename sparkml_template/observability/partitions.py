"""Per-partition data metrics: rows, label classes and nulls of the training data, and accuracy
of predictions, one value per Spark partition so an outlier partition shows.

Accuracy is counted on the executors over Arrow batches of two narrow columns (Spark computes
them natively first), and each partition sends back a few rows keyed by its partition id and
task attempt (``TaskContext``): the same keys as the task table, so a slow task and its data
line up. MLflow is only called on the driver, once per table, with every partition's values in
one batch.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from sparkml_template.contract.dataset import DatasetProfile

KEY, VALUE = "__key", "__value"
_METRIC_UNSAFE = re.compile(r"[^\w\-. :/]")  # what MLflow refuses in a metric name
_SCHEMA = "partition_id int, attempt int, key string, rows long, value long"


def _count_by_key(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """On an executor: rows and the sum of VALUE per KEY, for this task's partition."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark import TaskContext

    every_row = pc.CountOptions(mode="all")
    totals: dict[Any, list[int]] = {}
    for batch in batches:
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        grouped = table.group_by(KEY).aggregate([(VALUE, "count", every_row), (VALUE, "sum")])
        columns = (KEY, f"{VALUE}_count", f"{VALUE}_sum")
        for key, rows, value in zip(*(grouped.column(c).to_pylist() for c in columns), strict=True):
            entry = totals.setdefault(key, [0, 0])
            entry[0] += rows
            entry[1] += value or 0
    ctx = TaskContext.get()
    pid, attempt = ctx.partitionId(), ctx.attemptNumber()
    rows = [
        {"partition_id": pid, "attempt": attempt, "key": k, "rows": n, "value": v}
        for k, (n, v) in totals.items()
    ]
    if not rows:  # an empty partition is a finding too
        rows = [{"partition_id": pid, "attempt": attempt, "key": None, "rows": 0, "value": 0}]
    schema = pa.schema(
        [("partition_id", pa.int32()), ("attempt", pa.int32()), ("key", pa.string()),
         ("rows", pa.int64()), ("value", pa.int64())]
    )  # fmt: skip
    yield pa.RecordBatch.from_pylist(rows, schema=schema)


def _per_partition(df: DataFrame, key, value) -> list[dict[str, Any]]:
    from pyspark import cloudpickle

    # Shipped by value: a Spark Connect server's (or a cluster's) Python workers need not
    # have this package installed to run ``_count_by_key``.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    narrow = df.select(key.alias(KEY), value.cast("long").alias(VALUE))
    return [r.asDict() for r in narrow.mapInArrow(_count_by_key, _SCHEMA).collect()]


def data_partitions(profile: DatasetProfile) -> list[dict[str, Any]]:
    """Per partition of the data as read: rows, rows per label class (classification), rows
    without a label, null feature cells.

    Free: the validation job (``data.profile_dataset``) already groups by partition and class.
    """

    def empty(pid: int) -> dict[str, Any]:
        return {"partition_id": pid, "rows": 0, "null_feature_cells": 0, "null_label_rows": 0}

    # An empty partition has no group: list every partition.
    table = {pid: empty(pid) for pid in range(profile.num_partitions)}
    for count in profile.partitions:
        row = table.setdefault(count.partition_id, empty(count.partition_id))
        row["rows"] += count.rows
        row["null_feature_cells"] += count.null_feature_cells
        if count.label is None:
            row["null_label_rows"] += count.rows
        elif profile.task == "classification":  # a regression label's values are no columns
            column = f"label_{_METRIC_UNSAFE.sub('_', count.label)}"
            row[column] = row.get(column, 0) + count.rows
    return _fill(table)


def prediction_partitions(predictions: DataFrame, label: str, prediction: str) -> list[dict]:
    """Per partition of the scored data: labelled rows, correct predictions and accuracy."""
    from pyspark.sql import functions as F

    actual = F.col(label).cast("string")
    scored = predictions.where(actual.isNotNull())
    counts = _per_partition(scored, F.lit("all"), actual == F.col(prediction).cast("string"))
    table: dict[int, dict[str, Any]] = {}
    for r in counts:
        row = table.setdefault(
            r["partition_id"], {"partition_id": r["partition_id"], "rows": 0, "correct": 0}
        )
        row["attempt"] = r["attempt"]
        row["rows"] += r["rows"]
        row["correct"] += r["value"]
    for row in table.values():
        row["accuracy"] = row["correct"] / row["rows"] if row["rows"] else None
    return _fill(table)


def _fill(table: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows sorted by partition with every column present (0 for a class a partition lacks)."""
    fixed = list(next(iter(table.values()), {}))
    classes = sorted({c for row in table.values() for c in row if c.startswith("label_")})
    columns = [c for c in fixed if not c.startswith("label_")] + classes
    return [{c: table[p].get(c, 0) for c in columns} for p in sorted(table)]


def log_partitions(run_id: str, name: str, rows: list[dict[str, Any]]) -> None:
    """The table (a JSON artifact the UI shows as a table) and ``partition/<name>_<column>``
    metrics stepped by partition id, all from the driver in batches."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime.tracking import log_table

    if not rows:
        return
    client = MlflowClient()
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"partition/{name}_{column}", float(value), now, int(row["partition_id"]))
        for row in rows
        for column, value in row.items()
        if column not in ("partition_id", "attempt") and isinstance(value, int | float)
    ]
    client.log_batch(run_id, metrics=metrics)
    columns = list(rows[0])
    log_table(run_id, {c: [r[c] for r in rows] for c in columns}, f"spark/partitions/{name}.json")


def record_partitions(run_id: str, name: str, compute, *args) -> None:
    """Compute and log one per-partition table; a failure is a warning, never the run's end."""
    from sparkml_template.observability.capture import capture_enabled

    if not capture_enabled():
        return
    try:
        log_partitions(run_id, name, compute(*args))
    except Exception as exc:
        text = str(exc).strip().splitlines()
        print(
            f"task metrics: per-partition {name} not recorded "
            f"({type(exc).__name__}: {text[0][:300] if text else ''})",
            file=sys.stderr,
        )
