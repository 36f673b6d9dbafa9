"""Outputs replaced whole or not at all (dataset/outputs.py), on real Spark writes: a write that
fails or is interrupted leaves the previous output (files or table) as it was and no staging
left; debris of a killed writer is removed (the previous output put back first) once its
processes are gone. The entry point's side: tests/unit/workflows/test_predict.py."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from sparkml_template.dataset import outputs


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _dead_owner(run_id: str) -> outputs.Owner:
    """An owner whose only process has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return outputs.Owner(run_id, outputs.socket.gethostname(), {proc.stdout.strip(): "1"})


def _never_ends(run_id: str) -> bool:
    return False


@pytest.fixture
def previous(spark, tmp_path):
    out = tmp_path / "scores"
    spark.range(5).write.parquet(str(out))
    return out, _files(out)


def _failing(spark):
    from pyspark.sql import functions as F

    frame = spark.range(100).select(F.raise_error(F.lit("boom")).alias("x"))
    return lambda path: frame.write.mode("error").parquet(path)


def test_a_failed_write_leaves_the_previous_files_and_no_staging(spark, tmp_path, previous):
    out, before = previous
    owner = outputs.current_owner(spark, "run1")
    with pytest.raises(Exception, match="boom"):
        outputs.replace_files(spark, str(out), owner, _failing(spark), overwrite=True)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_an_interrupted_write_leaves_the_previous_files(spark, tmp_path, previous):
    out, before = previous

    def interrupted(path: str) -> None:
        spark.range(3).write.parquet(path)  # written, then the signal lands before the swap
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outputs.replace_files(
            spark, str(out), outputs.current_owner(spark, "r"), interrupted, overwrite=True
        )
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_a_completed_write_replaces_the_files(spark, tmp_path, previous):
    out, _ = previous
    owner = outputs.current_owner(spark, "run2")
    write = lambda path: spark.range(7).write.mode("error").parquet(path)  # noqa: E731
    outputs.replace_files(spark, str(out), owner, write, overwrite=True)
    assert spark.read.parquet(str(out)).count() == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]
    with pytest.raises(outputs.UserError, match="already exists"):
        outputs.replace_files(spark, str(out), owner, write, overwrite=False)
    assert spark.read.parquet(str(out)).count() == 7


def test_debris_of_a_writer_killed_between_the_renames_is_put_back(spark, tmp_path, previous):
    """The previous output had been moved aside, the new one not yet in place."""
    out, before = previous
    staging = tmp_path / f"scores{outputs.STAGING_INFIX}dead"
    staging.mkdir()
    (staging / outputs.OWNER_FILE).write_text(_dead_owner("dead").to_json())
    out.rename(staging / outputs.PREVIOUS_DIR)
    live = tmp_path / f"scores{outputs.STAGING_INFIX}live"
    live.mkdir()
    (live / outputs.OWNER_FILE).write_text(outputs.current_owner(spark, "live").to_json())

    done = outputs.clean_stale_files(spark, str(out), _never_ends)
    assert _files(out) == before
    assert not staging.exists()
    assert live.exists()  # its writer (this process) still runs
    assert done == [
        f"put the previous output back from {staging} (a predict was killed)",
        f"removed {staging}, left by a predict that did not finish",
        f"left {live}: the predict writing it is still running",
    ]


TABLE = "default.staged_outputs_test"


@pytest.fixture
def table(spark):
    spark.sql(f"DROP TABLE IF EXISTS {TABLE}")
    spark.range(5).write.saveAsTable(TABLE)
    yield TABLE
    for row in spark.sql("SHOW TABLES IN default LIKE 'staged_outputs_test*'").collect():
        spark.sql(f"DROP TABLE IF EXISTS default.{row['tableName']}")


def _tables(spark) -> list[str]:
    rows = spark.sql("SHOW TABLES IN default LIKE 'staged_outputs_test*'").collect()
    return sorted(r["tableName"] for r in rows)


def test_a_failed_table_write_leaves_the_table(spark, table):
    from pyspark.sql import functions as F

    frame = spark.range(100).select(F.raise_error(F.lit("boom")).alias("id"))
    write = lambda name: frame.write.mode("error").saveAsTable(name)  # noqa: E731
    owner = outputs.current_owner(spark, uuid.uuid4().hex)
    with pytest.raises(Exception, match="boom"):
        outputs.replace_table(spark, table, owner, write, overwrite=True)
    assert sorted(r.id for r in spark.table(table).collect()) == list(range(5))
    assert _tables(spark) == ["staged_outputs_test"]
    rows = spark.sql("DESCRIBE DATABASE EXTENDED default").collect()
    location = next(r[1] for r in rows if r[0].lower() == "location")
    left = Path(urlparse(location).path).glob(f"*{outputs.TABLE_STAGING_INFIX}{owner.run_id}")
    assert not list(left)  # the failed write's files, not only its table


def test_a_table_write_replaces_it_and_stale_staging_tables_go(spark, table):
    owner = outputs.current_owner(spark, "t2")
    write = lambda name: spark.range(9).write.mode("error").saveAsTable(name)  # noqa: E731
    outputs.replace_table(spark, table, owner, write, overwrite=True)
    assert spark.table(table).count() == 9
    assert _tables(spark) == ["staged_outputs_test"]
    props = {r["key"] for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
    assert outputs.OWNER_PROPERTY not in props

    stale = f"{table}{outputs.TABLE_STAGING_INFIX}dead"
    spark.range(1).write.saveAsTable(stale)
    quoted = _dead_owner("dead").to_json()
    spark.sql(f"ALTER TABLE {stale} SET TBLPROPERTIES ('{outputs.OWNER_PROPERTY}' = '{quoted}')")
    done = outputs.clean_stale_tables(spark, table, _never_ends)
    assert done == [f"dropped {stale}, left by a predict that did not finish"]
    assert _tables(spark) == ["staged_outputs_test"]
    assert spark.table(table).count() == 9
