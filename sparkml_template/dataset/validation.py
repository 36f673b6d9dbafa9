"""Refusing data a model can't use, and describing the rest, in one Spark job.

Validation is a group-by on partition and label that counts rows and non-null values of every
feature, the label's range and each string column's distinct values. Its result decides the task
and the pipeline's shape (label order, which columns need imputing, which string columns are
left out), so nothing is scanned twice. What reaches the driver is bounded (``MAX_CLASSES``),
whatever the label holds. For a bare scan of local Parquet files whose footers answer the same
questions (a regression on columns with no text), no job runs: rows, nulls and the label's range
come from the footers (``dataset/footers.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import (
    COUNTED_FROM_FOOTERS,
    DatasetProfile,
    PartitionCount,
)
from sparkml_template.contract.names import AUTO, CLASSIFICATION, REGRESSION, TASKS
from sparkml_template.dataset.footers import footer_counts
from sparkml_template.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

# task=auto takes an integer-valued numeric label with at most this many values as classes.
AUTO_MAX_CLASSES = 20
# task=classification refuses a label with more classes than this (a typo'd label, an id).
MAX_CLASSES = 100
# A string feature with more distinct values than this (an id, a name) is left out, not encoded.
MAX_CATEGORIES = 100


def parse_columns(text: str) -> list[str]:
    """``"a, b,,c"`` -> ["a", "b", "c"]: a comma-separated parameter as column names."""
    return [name.strip() for name in str(text or "").split(",") if name.strip()]


@dataclass(frozen=True)
class FeatureColumns:
    """The feature columns by how the pipeline encodes them."""

    numeric: list[str]
    categorical: list[str]
    dates: list[str]  # dates and timestamps
    timestamps: list[str]


def split_features(
    schema: StructType, label: str, features: str = "", exclude: str = ""
) -> FeatureColumns:
    """The feature columns: those named in ``features`` (empty: every column but the label),
    minus ``excludeColumns``, split by type."""
    from pyspark.sql.types import (
        BooleanType,
        CharType,
        DateType,
        NumericType,
        StringType,
        TimestampNTZType,
        TimestampType,
        VarcharType,
    )

    names = [f.name for f in schema.fields]
    if label not in names:
        raise UserError(f"label column {label!r} is not in the data; columns: {', '.join(names)}")
    chosen, excluded = parse_columns(features), parse_columns(exclude)
    missing = [c for c in chosen + excluded if c not in names]
    if missing:
        raise UserError(
            f"column(s) not in the data: {', '.join(missing)}; columns: {', '.join(names)}"
        )
    if label in chosen:
        raise UserError(f"features lists the label {label!r}; a model cannot take its own label")
    wanted = [n for n in (chosen or names) if n != label and n not in excluded]
    if not wanted:
        raise UserError(
            f"no feature column left (label {label!r}, features={features!r}, "
            f"excludeColumns={exclude!r})"
        )
    types = {f.name: f.dataType for f in schema.fields}
    numeric, categorical, dates, timestamps = [], [], [], []
    for name in wanted:
        dtype = types[name]
        if isinstance(dtype, NumericType | BooleanType):
            numeric.append(name)
        elif isinstance(dtype, StringType | VarcharType | CharType):
            categorical.append(name)
        elif isinstance(dtype, DateType | TimestampType | TimestampNTZType):
            dates.append(name)
            if not isinstance(dtype, DateType):
                timestamps.append(name)
        else:
            raise UserError(
                f"feature column {name!r} has type {dtype.simpleString()}, which the pipeline "
                "does not encode; leave it out with excludeColumns or convert it "
                "(see sparkml_template/yours/pipeline.py)"
            )
    return FeatureColumns(numeric, categorical, dates, timestamps)


def _label_kind(schema: StructType, label: str) -> str:
    from pyspark.sql.types import BooleanType, NumericType, StringType

    dtype = schema[label].dataType
    if isinstance(dtype, NumericType):
        return "numeric"
    if isinstance(dtype, StringType | BooleanType):
        return "categorical"
    raise UserError(f"label column {label!r} has type {dtype.simpleString()}; use a number or text")


def profile_dataset(
    df: DataFrame, label: str, task: str = AUTO, features: str = "", exclude: str = ""
) -> DatasetProfile:
    """Validate ``df`` for training in one Spark job, decide the task, and describe the data.

    The group-by is per partition and label value, so the same job also gives the per-partition
    data metrics (rows, classes, null cells) that task capture logs. What reaches the driver is
    bounded: for ``task=regression`` the label is not a key, and otherwise at most
    ``MAX_CLASSES + 1`` label values per partition come back; more means "too many classes".
    Only ``task=auto`` on a numeric label with that many values pays a second, label-free pass.
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    columns = split_features(df.schema, label, features, exclude)
    kind = _label_kind(df.schema, label)
    if task == REGRESSION and kind != "numeric":
        raise UserError(
            f"task=regression needs a numeric label; {label!r} is "
            f"{df.schema[label].dataType.simpleString()} (use task=classification)"
        )
    from_footers = _rows_from_footers(df, label, columns, kind, task)
    if from_footers is not None:
        rows, num_partitions = from_footers
        decided, reason = _decide_task(task, kind, rows, 0, False, label)
    else:
        by_label = task != REGRESSION
        rows, truncated = _validation_rows(df, label, columns, kind, by_label)
        distinct = len({r["__label"] for r in rows if r["__label"] is not None and not r["__gid"]})
        decided, reason = _decide_task(task, kind, rows, distinct, truncated, label)
        if decided == REGRESSION and truncated:  # the label-free pass: bounded whatever the data
            rows, _ = _validation_rows(df, label, columns, kind, by_label=False)
    profile = _profile_from_rows(rows, columns, kind, decided, reason)
    if from_footers is None:
        profile.num_partitions = _partition_count(df, profile.partitions)  # planning, no job
    else:
        profile.num_partitions, profile.counted_from = num_partitions, COUNTED_FROM_FOOTERS
    _check_profile(profile, label)
    return profile


def _rows_from_footers(
    df: DataFrame, label: str, columns: FeatureColumns, kind: str, task: str
) -> tuple[list[dict[str, Any]], int] | None:
    """The validation job's rows, read from Parquet footers instead, and the partition count.

    Only where the footers decide everything the job would: no string feature (its distinct
    values are not in the footers) and a regression, asked for or told by a label bound that is
    not a whole number (whole-number labels need their distinct values counted). Else None.
    """
    if kind != "numeric" or columns.categorical or task == CLASSIFICATION:
        return None
    inputs = columns.numeric + columns.dates
    counts = footer_counts(df, label, inputs)
    if counts is None:
        return None
    if task == AUTO and not any(p.fractional for p in counts):
        return None
    rows = [
        {
            "__gid": 0, "__partition": pid, "__label": "*", "__rows": p.rows,
            "__min": p.low, "__max": p.high, "__fractional": int(p.fractional),
            **{f"__nn{i}": p.rows - p.nulls[name] for i, name in enumerate(inputs)},
        }
        for pid, p in enumerate(counts)
        if p.rows
    ]  # fmt: skip
    return rows, len(counts)


def _validation_rows(
    df: DataFrame, label: str, columns: FeatureColumns, kind: str, by_label: bool
) -> tuple[list[Any], bool]:
    """The validation job's rows, and whether the cap on label values cut them short."""
    from pyspark.sql import functions as F

    inputs = columns.numeric + columns.dates + columns.categorical
    value = F.col(label)
    label_key = value.cast("string") if by_label else F.when(value.isNotNull(), F.lit("*"))
    aggregates = [F.count(F.lit(1)).alias("__rows")]
    aggregates += [F.count(F.col(name)).alias(f"__nn{i}") for i, name in enumerate(inputs)]
    aggregates += [
        F.approx_count_distinct(F.col(name)).alias(f"__nd{i}")
        for i, name in enumerate(columns.categorical)
    ]
    if kind == "numeric":
        as_double = value.cast("double")
        aggregates += [
            F.min(as_double).alias("__min"),
            F.max(as_double).alias("__max"),
            F.count(F.when(as_double != F.floor(as_double), 1)).alias("__fractional"),
        ]
    keyed = df.select("*", F.spark_partition_id().alias("__partition"), label_key.alias("__label"))
    keys = ["__partition", "__label"]
    if columns.categorical:
        # One more grouping set, the whole data, gives each string column's distinct count in
        # the same job (grouping id 3); it is sorted first, so the cap never cuts it.
        grouped = keyed.groupingSets([keys, []], *keys).agg(
            *aggregates, F.grouping_id().alias("__gid")
        )
        grouped = grouped.orderBy(F.col("__gid").desc())
    else:
        grouped = keyed.groupBy(*keys).agg(*aggregates, F.lit(0).alias("__gid"))
    if not by_label:
        return grouped.collect(), False
    partitions = _partition_count(df)
    cap = 1 + partitions * (MAX_CLASSES + 2)  # the whole, every partition's classes and nulls
    rows = grouped.limit(cap).collect()
    return rows, len(rows) >= cap


def _decide_task(
    task: str, kind: str, rows: list[Any], distinct: int, truncated: bool, label: str
) -> tuple[str, str]:
    """The task and the one-line reason for it."""
    many = f"more than {MAX_CLASSES}" if truncated else str(distinct)
    if task == CLASSIFICATION:
        if truncated or distinct > MAX_CLASSES:
            raise UserError(
                f"label column {label!r} has {many} distinct values: too many classes for "
                f"classification (at most {MAX_CLASSES}); use task=regression for a number"
            )
        return CLASSIFICATION, "task=classification was asked for"
    if task == REGRESSION:
        return REGRESSION, "task=regression was asked for"
    if kind == "categorical":
        if truncated:
            raise UserError(
                f"label column {label!r} is text with {many} distinct values: too many classes "
                f"for classification (at most {MAX_CLASSES})"
            )
        return CLASSIFICATION, "the label is text or boolean"
    fractional = sum(r["__fractional"] or 0 for r in rows if not r["__gid"])
    if fractional:
        return REGRESSION, "the label is numeric with fractional values"
    if truncated or distinct > AUTO_MAX_CLASSES:
        return REGRESSION, (
            f"the label is numeric with {many} distinct values (> {AUTO_MAX_CLASSES})"
        )
    return CLASSIFICATION, (
        f"the label is whole numbers with {distinct} distinct values (<= {AUTO_MAX_CLASSES})"
    )


def _profile_from_rows(
    rows: list[Any], columns: FeatureColumns, kind: str, task: str, reason: str
) -> DatasetProfile:
    inputs = columns.numeric + columns.dates + columns.categorical
    label_counts: dict[str, int] = {}
    null_label_rows = 0
    non_null = dict.fromkeys(inputs, 0)
    distinct = dict.fromkeys(columns.categorical, 0)
    low = high = None
    partitions = []
    for row in rows:
        if row["__gid"]:  # the whole data: each string column's (approximate) distinct count
            distinct = {name: row[f"__nd{i}"] for i, name in enumerate(columns.categorical)}
            continue
        filled = sum(row[f"__nn{i}"] for i in range(len(inputs)))
        partitions.append(
            PartitionCount(
                row["__partition"], row["__label"], row["__rows"],
                row["__rows"] * len(inputs) - filled,
            )
        )  # fmt: skip
        if row["__label"] is None:
            null_label_rows += row["__rows"]
            continue
        if task == CLASSIFICATION:
            label_counts[row["__label"]] = label_counts.get(row["__label"], 0) + row["__rows"]
        for i, name in enumerate(inputs):
            non_null[name] += row[f"__nn{i}"]
        if kind == "numeric":
            low = row["__min"] if low is None else min(low, row["__min"])
            high = row["__max"] if high is None else max(high, row["__max"])
    left_out = {name: n for name, n in distinct.items() if n > MAX_CATEGORIES}
    labelled = sum(r["__rows"] for r in rows if r["__label"] is not None and not r["__gid"])
    if task == REGRESSION:
        partitions = [
            PartitionCount(p.partition_id, None if p.label is None else "*", p.rows,
                           p.null_feature_cells)
            for p in partitions
        ]  # fmt: skip
    return DatasetProfile(
        rows=labelled + null_label_rows,
        label_counts=label_counts,
        null_label_rows=null_label_rows,
        numeric_features=list(columns.numeric),
        categorical_features=[c for c in columns.categorical if c not in left_out],
        non_null=non_null,
        partitions=sorted(partitions, key=lambda p: (p.partition_id, p.label or "")),
        task=task,
        task_reason=reason,
        date_features=list(columns.dates),
        timestamp_features=list(columns.timestamps),
        label_min=low,
        label_max=high,
        left_out=left_out,
    )


def _partition_count(df: DataFrame, partitions: list[PartitionCount] | None = None) -> int:
    """How many partitions ``df`` has: asked of the plan (no job) in a classic session.

    Spark Connect has no RDDs: there it is the highest partition that holds rows, + 1 (empty
    trailing ones go uncounted), taken from ``partitions`` when the validation job has counted
    them, else from one small aggregate job that reads no column.
    """
    from pyspark.errors import PySparkNotImplementedError
    from pyspark.sql import functions as F

    try:
        return df.rdd.getNumPartitions()
    except PySparkNotImplementedError:
        if partitions is not None:
            return max((p.partition_id for p in partitions), default=-1) + 1
        ids = df.select(F.spark_partition_id().alias("__partition"))  # an aggregate may not
        highest = ids.agg(F.max("__partition")).first()[0]  # wrap a nondeterministic call
        return 0 if highest is None else highest + 1


def _check_profile(profile: DatasetProfile, label: str) -> None:
    if profile.rows == 0:
        raise UserError("the dataset has no rows")
    if not profile.labelled_rows:
        raise UserError(f"label column {label!r} is null in every row")
    if profile.task == CLASSIFICATION and len(profile.label_counts) < 2:
        (only,) = profile.label_counts
        raise UserError(
            f"label column {label!r} has one class ({only!r}); a classifier needs at least two"
        )
    if profile.task == REGRESSION and profile.label_min == profile.label_max:
        raise UserError(
            f"label column {label!r} has one value ({profile.label_min:g}); there is nothing "
            "to learn"
        )
    empty = [name for name in profile.features if profile.non_null[name] == 0]
    if empty:
        raise UserError(f"feature column(s) entirely null: {', '.join(empty)}")
    if not profile.features:
        raise UserError(
            "no feature column left: every string column has too many values "
            f"({', '.join(profile.left_out)}); see MAX_CATEGORIES in "
            "sparkml_template/dataset/validation.py"
        )
