"""Reading a labelled dataset by path, URI or table name, and refusing data a model can't use.

Validation is one Spark job: a group-by on the label that counts rows and non-null values of
every feature. Its result also decides the pipeline's shape (label order, which columns need
imputing), so nothing is scanned twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from sparkml_template import PROJECT_ROOT
from sparkml_template.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

# What a file name ends with, as opposed to a table name (`catalog.db.table` has dots too).
FILE_SUFFIXES = (
    ".csv", ".tsv", ".txt", ".gz", ".parquet", ".pq", ".json", ".orc", ".avro", ".out",
)  # fmt: skip
_TABLE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*){0,2}$")


@dataclass(frozen=True)
class DataSource:
    """Where a dataset comes from: a file/directory URI (with its format) or a table name."""

    uri: str
    format: str  # "csv", "parquet" or "table"
    local_path: Path | None = None


@dataclass(frozen=True)
class PartitionCount:
    """Rows of one label class (None: no label) in one partition, and their null feature cells."""

    partition_id: int
    label: str | None
    rows: int
    null_feature_cells: int


@dataclass
class DatasetProfile:
    """What the validation job found: sizes, label classes, and per-feature null counts."""

    rows: int
    label_counts: dict[str, int]
    null_label_rows: int
    numeric_features: list[str]
    categorical_features: list[str]
    non_null: dict[str, int] = field(default_factory=dict)
    partitions: list[PartitionCount] = field(default_factory=list)
    num_partitions: int = 0

    @property
    def labels(self) -> list[str]:
        """Classes in StringIndexer's frequencyDesc order (ties alphabetical)."""
        return sorted(self.label_counts, key=lambda k: (-self.label_counts[k], k))

    @property
    def features(self) -> list[str]:
        return self.numeric_features + self.categorical_features

    def columns_with_nulls(self, columns: list[str]) -> list[str]:
        labelled = sum(self.label_counts.values())
        return [c for c in columns if self.non_null.get(c, labelled) < labelled]


def _format_from_name(name: str) -> str:
    lowered = name.lower().rstrip("/")
    if lowered.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return "csv"
    return "parquet"


def is_table_name(name: str, qualified: bool = False) -> bool:
    """``table``, ``db.table`` or ``catalog.db.table`` (``qualified``: a dot at least), not a file.

    A name ending in a file suffix (``scores.parquet``) is a path, whatever its dots.
    """
    if not _TABLE_NAME.match(name) or name.lower().endswith(FILE_SUFFIXES):
        return False
    return "." in name or not qualified


def resolve_source(uri: str) -> DataSource:
    """Decide what ``data`` names. Relative paths are tried against the working directory, then
    the project root (so a git-URL or Databricks run still finds the shipped data)."""
    uri = uri.strip()
    if not uri:
        raise UserError("data is empty: give a CSV/Parquet path or URI, or a table name")
    scheme = urlparse(uri).scheme
    if scheme and len(scheme) > 1 and scheme != "file":
        return DataSource(uri, _format_from_name(uri))
    path = Path(urlparse(uri).path if scheme == "file" else uri).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, PROJECT_ROOT / path]
    for candidate in candidates:
        if candidate.exists():
            fmt = _format_from_name(candidate.name)
            if candidate.is_dir() and any(candidate.glob("*.csv")):
                fmt = "csv"
            return DataSource(str(candidate.resolve()), fmt, candidate.resolve())
    if not scheme and is_table_name(uri):
        return DataSource(uri, "table")
    raise UserError(f"data not found: {uri} (looked in {Path.cwd()} and {PROJECT_ROOT})")


def read_source(spark: SparkSession, source: DataSource) -> DataFrame:
    """Read ``source`` into a DataFrame, turning Spark's missing-path errors into one line."""
    from pyspark.errors import AnalysisException

    try:
        if source.format == "table":
            return spark.table(source.uri)
        if source.format == "csv":
            sep = "\t" if source.uri.lower().endswith(".tsv") else ","
            return spark.read.csv(source.uri, header=True, inferSchema=True, sep=sep)
        return spark.read.parquet(source.uri)
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"cannot read {source.uri}: {first}") from None


def read_for_passes(spark: SparkSession, source: DataSource) -> DataFrame:
    """Read ``source`` for a run that passes over it several times (validate, fit, score).

    CSV is cached: parsing text again on every pass costs more than keeping the rows. Columnar
    sources (Parquet, tables) are re-read instead: caching them costs more than the re-reads it
    saves (docs/performance.md).
    """
    df = read_source(spark, source)
    return df.cache() if source.format == "csv" else df


def split_features(schema: StructType, label: str) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature columns: every column but the label."""
    names = [f.name for f in schema.fields]
    if label not in names:
        raise UserError(f"label column {label!r} is not in the data; columns: {', '.join(names)}")
    from pyspark.sql.types import BooleanType, CharType, NumericType, StringType, VarcharType

    numeric, categorical = [], []
    for f in schema.fields:
        if f.name == label:
            continue
        if isinstance(f.dataType, NumericType | BooleanType):
            numeric.append(f.name)
        elif isinstance(f.dataType, StringType | VarcharType | CharType):
            categorical.append(f.name)
        else:
            raise UserError(
                f"feature column {f.name!r} has type {f.dataType.simpleString()}, which "
                "the pipeline does not encode; drop or convert it (see pipeline.py)"
            )
    if not numeric and not categorical:
        raise UserError(f"the data has no feature columns besides the label {label!r}")
    return numeric, categorical


def profile_dataset(df: DataFrame, label: str) -> DatasetProfile:
    """Validate ``df`` for training in one Spark job and describe it.

    The group-by is per partition and label class, so the same job also gives the
    per-partition data metrics (rows, classes, null cells) that task capture logs.
    """
    from pyspark.sql import functions as F

    numeric, categorical = split_features(df.schema, label)
    features = numeric + categorical
    label_str = F.col(label).cast("string")
    aggregates = [F.count(F.lit(1)).alias("__rows")] + [
        F.count(F.col(name)).alias(f"__nn{i}") for i, name in enumerate(features)
    ]
    keys = [F.spark_partition_id().alias("__partition"), label_str.alias("__label")]
    rows = df.groupBy(*keys).agg(*aggregates).collect()

    label_counts: dict[str, int] = {}
    null_label_rows = 0
    non_null = dict.fromkeys(features, 0)
    partitions = []
    for row in rows:
        filled = sum(row[f"__nn{i}"] for i in range(len(features)))
        partitions.append(
            PartitionCount(
                row["__partition"], row["__label"], row["__rows"],
                row["__rows"] * len(features) - filled,
            )
        )  # fmt: skip
        if row["__label"] is None:
            null_label_rows += row["__rows"]
            continue
        label_counts[row["__label"]] = label_counts.get(row["__label"], 0) + row["__rows"]
        for i, name in enumerate(features):
            non_null[name] += row[f"__nn{i}"]
    profile = DatasetProfile(
        rows=sum(label_counts.values()) + null_label_rows,
        label_counts=label_counts,
        null_label_rows=null_label_rows,
        numeric_features=numeric,
        categorical_features=categorical,
        non_null=non_null,
        partitions=sorted(partitions, key=lambda p: (p.partition_id, p.label or "")),
        num_partitions=_partition_count(df, partitions),
    )
    _check_profile(profile, label)
    return profile


def _partition_count(df: DataFrame, partitions: list[PartitionCount]) -> int:
    """How many partitions ``df`` has: asked of the plan (no job) in a classic session; over
    Spark Connect, which has no RDDs, the highest partition that held rows (empty trailing ones
    go uncounted)."""
    from pyspark.errors import PySparkNotImplementedError

    try:
        return df.rdd.getNumPartitions()
    except PySparkNotImplementedError:
        return max((p.partition_id for p in partitions), default=-1) + 1


def _check_profile(profile: DatasetProfile, label: str) -> None:
    if profile.rows == 0:
        raise UserError("the dataset has no rows")
    if not profile.label_counts:
        raise UserError(f"label column {label!r} is null in every row")
    if len(profile.label_counts) < 2:
        (only,) = profile.label_counts
        raise UserError(
            f"label column {label!r} has one class ({only!r}); a classifier needs at least two"
        )
    empty = [name for name in profile.features if profile.non_null[name] == 0]
    if empty:
        raise UserError(f"feature column(s) entirely null: {', '.join(empty)}")


def split_labelled(
    df: DataFrame, label: str, test_fraction: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """The rows with a label, split at random into (train, test); the same seed, the same split.

    ``DataFrame.randomSplit`` sorts every partition by all its columns before sampling, so
    that a recomputed partition whose row order changed (after a shuffle) samples the same
    rows. Here the input has just been read from files or a table, whose partitions come back
    in the same order on every read, so one uniform draw per row, compared with the fraction,
    gives the same guarantee without the sort, which fit and scoring would each pay on every
    pass over a split (docs/performance.md). Train and test use the same draw (same seed, same
    partition, same position), so they are disjoint and together hold every labelled row.
    """
    from pyspark.sql import functions as F

    labelled = df.where(F.col(label).isNotNull())
    draw = F.rand(seed)
    return labelled.where(draw >= test_fraction), labelled.where(draw < test_fraction)


def content_digest(source: DataSource) -> str | None:
    """A content hash of a local file or directory (None for remote data and tables).

    MLflow's own Spark digest hashes the query plan, which does not change when the file's
    contents do; this one does.
    """
    if source.local_path is None:
        return None
    root = source.local_path
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for path in files:
        if root.is_dir() and path.name.startswith((".", "_")):
            continue  # Spark's .crc and _SUCCESS files
        digest.update(os.fsencode(path.relative_to(root) if root.is_dir() else path.name))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
