"""Reading event logs as Spark writes them: rolling + zstd and plain give the same table, and a
cut, corrupt or foreign log is read as far as it goes, with what was skipped counted."""

from __future__ import annotations

import json
import shutil

import pytest
import zstandard
from eventlog_apps import RUN_ID, app_log, app_run

from sparkml_template.observability.capture import read_run_log
from sparkml_template.observability.eventlog import (
    ReadStats,
    event_log_files,
    iter_lines,
    locate_event_log,
    read_events,
    write_plain_copy,
)
from sparkml_template.observability.task_events import run_tag
from sparkml_template.observability.task_tables import tasks_frame

# Columns a rerun of the same deterministic workload must reproduce (timings differ).
STABLE = [
    "job_id", "stage_id", "stage_attempt", "partition_id", "attempt", "status", "input_records",
    "shuffle_read_records", "shuffle_write_records", "shuffle_write_bytes", "shuffle_read_bytes",
]  # fmt: skip


def _table(path):
    return tasks_frame(read_run_log(path, run_tag(RUN_ID)).tasks)


def _stable(frame):
    return frame[STABLE].sort_values(STABLE).reset_index(drop=True)


def test_spark_writes_rolling_zstd_by_default_and_plain_when_asked(spark_apps):
    rolling, plain = app_log(spark_apps, "rolling"), app_log(spark_apps, "plain")
    assert rolling.is_dir() and rolling.name.startswith("eventlog_v2_")
    assert [p.suffix for p in event_log_files(rolling)] == [".zstd"]
    assert plain.is_file() and plain.name == spark_apps["plain"]["app_id"]
    frames = event_log_files(rolling)[0].read_bytes().count(b"\x28\xb5\x2f\xfd")
    assert frames > 1  # several zstd frames: the reader must go across them


def test_rolling_compressed_and_plain_logs_parse_to_the_same_table(spark_apps, tmp_path):
    rolling = app_log(spark_apps, "rolling")
    same_app_plain = write_plain_copy(rolling, tmp_path / spark_apps["rolling"]["app_id"])
    from_rolling = _table(rolling)
    assert len(from_rolling) > 10
    assert from_rolling.equals(_table(same_app_plain))
    # Spark's own plain log of the same workload (another application): same work, same table.
    assert _stable(from_rolling).equals(_stable(_table(app_log(spark_apps, "plain"))))


def test_several_rolling_files_are_read_in_order(spark_apps, tmp_path):
    lines = list(iter_lines(app_log(spark_apps, "rolling")))
    rolled = tmp_path / "eventlog_v2_local-1"
    rolled.mkdir()
    cut = len(lines) // 2
    # events_10 sorts before events_2 as text: the reader must order by number.
    for number, part in ((2, lines[:cut]), (10, lines[cut:])):
        data = ("\n".join(part) + "\n").encode()
        (rolled / f"events_{number}_local-1.zstd").write_bytes(zstandard.compress(data))
    (rolled / "appstatus_local-1.inprogress").write_bytes(b"")
    stats = ReadStats()
    assert list(iter_lines(rolled, stats)) == lines
    assert stats.in_progress and stats.skipped == 0
    assert locate_event_log(tmp_path, "local-1") == rolled


@pytest.mark.parametrize("keep", [0.35, 0.8])
def test_a_log_cut_mid_frame_reads_up_to_the_cut(spark_apps, tmp_path, keep):
    source = event_log_files(app_log(spark_apps, "rolling"))[0]
    data = source.read_bytes()
    cut = tmp_path / f"{spark_apps['rolling']['app_id']}.zstd.inprogress"
    cut.write_bytes(data[: int(len(data) * keep)])
    whole = [json.loads(line)["Event"] for line in iter_lines(source)]
    stats = ReadStats()
    events = list(read_events(cut, stats))
    assert 0 < len(events) < len(whole)
    assert [e["Event"] for e in events] == whole[: len(events)]
    assert stats.in_progress and stats.truncated_files == 1
    assert stats.corrupt_lines <= 1  # at most the one line the cut went through


def test_garbage_lines_and_unknown_events_are_counted_not_fatal(spark_apps, tmp_path):
    lines = list(iter_lines(app_log(spark_apps, "rolling")))
    middle = len(lines) // 2
    noisy = [
        *lines[:middle],
        "this is not json",
        '{"Event":"SparkListenerFromTheFuture","Payload":{"x":1}}',
        "[1, 2, 3]",
        '{"Event":"SparkListenerStageCompleted"}',  # a known event without its fields
        *lines[middle:],
    ]
    path = tmp_path / "noisy"
    path.write_text("\n".join(noisy) + "\n")
    run = read_run_log(path, run_tag(RUN_ID))
    clean = app_run(spark_apps, "rolling")
    assert run.stats.corrupt_lines == 3
    assert run.unknown_events == clean.unknown_events + 1
    assert tasks_frame(run.tasks).equals(tasks_frame(clean.tasks))


def test_older_spark_field_names_still_give_rows(spark_apps, tmp_path):
    """Spark 2/3 logs lack "Partition ID" and the push-shuffle block, and a Spark 1.x shuffle
    write block named its fields differently; metrics missing entirely read as 0."""
    out = []
    for line in iter_lines(app_log(spark_apps, "rolling")):
        event = json.loads(line)
        if event["Event"] == "SparkListenerTaskEnd":
            event["Task Info"].pop("Partition ID")
            metrics = event["Task Metrics"]
            metrics["Shuffle Read Metrics"].pop("Push Based Shuffle")
            write = metrics.pop("Shuffle Write Metrics")
            metrics["Shuffle Write Metrics"] = {
                "Bytes Written": write["Shuffle Bytes Written"],
                "Write Time": write["Shuffle Write Time"],
                "Records Written": write["Shuffle Records Written"],
            }
            metrics.pop("Peak Execution Memory")
        out.append(json.dumps(event))
    old = tmp_path / "old"
    old.write_text("\n".join(out) + "\n")
    before, after = _table(app_log(spark_apps, "rolling")), _table(old)
    assert (after["partition_id"] == before["partition_id"]).all()  # from "Index"
    assert after["shuffle_write_bytes"].sum() == before["shuffle_write_bytes"].sum() > 0
    assert (after["peak_execution_memory_bytes"] == 0).all()


def test_codecs_python_cannot_read_are_reported(tmp_path):
    (tmp_path / "local-9.lz4").write_bytes(b"\x00" * 10)
    stats = ReadStats()
    assert list(iter_lines(tmp_path / "local-9.lz4", stats)) == []
    assert stats.unreadable_files == ["local-9.lz4"]
    assert "unreadable" in stats.describe()


def test_locate_event_log_accepts_file_uris(spark_apps, tmp_path):
    entry = spark_apps["plain"]
    uri = f"file://{entry['log_dir']}"
    assert locate_event_log(uri, entry["app_id"]) == app_log(spark_apps, "plain")
    assert locate_event_log(tmp_path, "local-404") is None
    shutil.rmtree(tmp_path)
    assert locate_event_log(tmp_path, "local-404") is None
