"""Where a dataset comes from and what validating it found: what ``build_pipeline`` is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparkml_template.contract.names import CLASSIFICATION

# How the validation counted rows and nulls (the run's `data.counted_from` tag).
COUNTED_FROM_JOB = "validation job"
COUNTED_FROM_FOOTERS = "parquet footers"


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
    """What the validation job found: sizes, the task, label classes, per-feature null counts."""

    rows: int
    label_counts: dict[str, int]
    null_label_rows: int
    numeric_features: list[str]
    categorical_features: list[str]
    non_null: dict[str, int] = field(default_factory=dict)
    partitions: list[PartitionCount] = field(default_factory=list)
    num_partitions: int = 0
    task: str = CLASSIFICATION
    task_reason: str = ""
    date_features: list[str] = field(default_factory=list)  # dates and timestamps
    timestamp_features: list[str] = field(default_factory=list)  # the timestamps among them
    label_min: float | None = None  # numeric labels only
    label_max: float | None = None
    left_out: dict[str, int] = field(default_factory=dict)  # string columns with too many values
    counted_from: str = COUNTED_FROM_JOB  # how rows and nulls were counted

    @property
    def labels(self) -> list[str]:
        """Classes in StringIndexer's frequencyDesc order (ties alphabetical)."""
        return sorted(self.label_counts, key=lambda k: (-self.label_counts[k], k))

    @property
    def labelled_rows(self) -> int:
        return self.rows - self.null_label_rows

    @property
    def features(self) -> list[str]:
        """The input columns the model reads, as the data names them."""
        return self.numeric_features + self.date_features + self.categorical_features

    def columns_with_nulls(self, columns: list[str]) -> list[str]:
        labelled = self.labelled_rows
        return [c for c in columns if self.non_null.get(c, labelled) < labelled]
