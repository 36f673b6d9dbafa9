"""Row and null counts of a Parquet scan, per Spark partition, read from the files' footers.

Every Parquet row group stores its row count and, per column, its null count and minimum and
maximum. For a DataFrame that is exactly a scan of local Parquet files (nothing filtered or
derived), those numbers answer what the validation job would otherwise compute with a pass
over the data: rows, non-null values per feature, the label's range. Which Spark partition
reads which row group follows the rule Spark's Parquet reader applies (parquet-mr's: a row
group belongs to the file split that holds its midpoint) on the splits Spark itself planned, so
the per-partition data metrics are those of the real read.

Anything this cannot answer exactly (Spark Connect, a filtered or derived DataFrame, remote
files, a column missing from a file, statistics not written, NaN bounds, nulls in the label)
returns ``None``, and the caller runs the validation job as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass
class PartitionStats:
    """What the footers say about the row groups one Spark partition reads."""

    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    low: float | None = None  # the label's range (None: no rows)
    high: float | None = None
    fractional: bool = False  # a bound of the label is not a whole number


def _scan_splits(df: DataFrame) -> list[list[tuple[str, int, int]]] | None:
    """Spark's planned partitions of a bare Parquet scan: (local path, start, length) per
    file split. None unless ``df`` is one unfiltered Parquet relation in a classic session."""
    jdf = getattr(df, "_jdf", None)
    if jdf is None:  # Spark Connect: no plan to ask
        return None
    execution = jdf.queryExecution()
    if execution.analyzed().getClass().getSimpleName() != "LogicalRelation":
        return None  # a filter, projection or join would make the footers' counts wrong
    leaves = execution.executedPlan().collectLeaves()
    if leaves.size() != 1:
        return None
    scan = leaves.head()
    if scan.getClass().getSimpleName() != "FileSourceScanExec":
        return None
    if "Parquet" not in scan.relation().fileFormat().getClass().getSimpleName():
        return None
    if scan.relation().partitionSchema().size():
        return None  # partition columns live in directory names, not in the footers
    splits = []
    for partition in scan.inputRDD().partitions():
        files = []
        for part in partition.files():
            uri = urlparse(part.filePath().toString())
            if uri.scheme not in ("", "file"):
                return None
            files.append((unquote(uri.path), part.start(), part.length()))
        splits.append(files)
    return splits


def _row_group_span(row_group: Any) -> tuple[int, int]:
    """Where a row group starts in its file and its compressed size, as parquet-mr counts."""
    first = row_group.column(0)
    start = first.data_page_offset
    if first.has_dictionary_page and 0 < first.dictionary_page_offset < start:
        start = first.dictionary_page_offset
    size = sum(row_group.column(i).total_compressed_size for i in range(row_group.num_columns))
    return start, size


def _bound(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _add_row_group(
    stats: PartitionStats, row_group: Any, positions: dict[str, int], label: str
) -> bool:
    """Add one row group's counts to ``stats``; False when its statistics cannot answer."""
    if row_group.num_rows == 0:
        return True
    for name, index in positions.items():
        column = row_group.column(index).statistics
        if column is None or not column.has_null_count:
            return False
        nulls = column.null_count
        if name == label:
            if nulls or not column.has_min_max:
                return False  # null labels: features' counts over labelled rows are unknown
            low, high = _bound(column.min), _bound(column.max)
            if low is None or high is None:
                return False
            stats.low = low if stats.low is None else min(stats.low, low)
            stats.high = high if stats.high is None else max(stats.high, high)
            stats.fractional |= not (low.is_integer() and high.is_integer())
        else:
            stats.nulls[name] = stats.nulls.get(name, 0) + nulls
    stats.rows += row_group.num_rows
    return True


def footer_counts(df: DataFrame, label: str, columns: list[str]) -> list[PartitionStats] | None:
    """Per Spark partition of ``df``'s scan (index = partition id, empty ones too): rows, null
    counts of ``columns`` and the range of ``label`` from the Parquet footers of its files, or
    None when they cannot give the exact answer."""
    try:
        splits = _scan_splits(df)
    except Exception:  # another Spark's plan classes (Databricks, Photon): run the job instead
        return None
    if splits is None:
        return None
    import pyarrow.parquet as pq

    wanted = [label, *columns]
    files: dict[str, tuple[Any, dict[str, int]]] = {}  # path -> (metadata, column positions)
    partitions = [PartitionStats() for _ in splits]
    for stats, split in zip(partitions, splits, strict=True):
        for path, start, length in split:
            if path not in files:
                try:
                    meta = pq.ParquetFile(path).metadata
                except (OSError, ValueError):
                    return None
                names = [meta.schema.column(i).path for i in range(meta.num_columns)]
                if not set(wanted) <= set(names):
                    return None  # a file without one of the columns (merged schemas)
                files[path] = meta, {name: names.index(name) for name in wanted}
            meta, positions = files[path]
            for i in range(meta.num_row_groups):
                row_group = meta.row_group(i)
                begin, size = _row_group_span(row_group)
                if not start <= begin + size // 2 < start + length:
                    continue  # another split reads it
                if not _add_row_group(stats, row_group, positions, label):
                    return None
    return partitions
