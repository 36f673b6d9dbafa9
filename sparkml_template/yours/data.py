"""Yours: how a dataset is read and split. Edit this to read your data differently (CSV options,
a JDBC source, a filter) or to split it another way (by time, by group).

The machinery calls ``read_source`` and ``split_labelled`` (the hooks listed in
``sparkml_template/yours/__init__.py``); ``data`` has already been resolved to a ``DataSource``
(a path with its format, a URI, or a table name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkml_template.errors import UserError, first_line

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sparkml_template.contract.dataset import DataSource


def read_source(spark: SparkSession, source: DataSource) -> DataFrame:
    """Read ``source`` into a DataFrame, turning Spark's missing-path errors into one line.

    A damaged or unreadable file found later, while a job reads it, is one line too (the
    runner names the file: ``sparkml_template/dataset/read_errors.py``).
    """
    from pyspark.errors import AnalysisException

    try:
        if source.format == "table":
            return spark.table(source.uri)
        if source.format == "csv":
            sep = "\t" if source.uri.lower().endswith(".tsv") else ","
            # FAILFAST: a row that does not fit the header (a binary part, a broken line) stops
            # the run, naming the file; Spark's default PERMISSIVE would make it nulls silently.
            return spark.read.csv(
                source.uri, header=True, inferSchema=True, sep=sep, mode="FAILFAST"
            )
        return spark.read.parquet(source.uri)
    except AnalysisException as exc:
        raise UserError(f"cannot read {source.uri}: {first_line(exc)}") from None


def read_for_passes(spark: SparkSession, source: DataSource) -> DataFrame:
    """Read ``source`` for a run that passes over it several times (validate, fit, score).

    CSV is cached: parsing text again on every pass costs more than keeping the rows. Columnar
    sources (Parquet, tables) are re-read instead: caching them costs more than the re-reads it
    saves (docs/performance.md).
    """
    df = read_source(spark, source)
    return df.cache() if source.format == "csv" else df


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
