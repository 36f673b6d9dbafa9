"""Cost of the task metrics (issue 3's targets), measured, not asserted.

(1) parse: a rolling zstd event log with ``--tasks`` task-end events (default 100 000), built
    from a real Spark application's own events (its task start/end pairs repeated with new task
    ids), read the way a run reads it: the run's events filtered, the task table, summaries and
    the redacted copy written. Target: <= 5 s.
(2) overhead: ``mlflow run . -e train`` on the generated large dataset (``--rows``, default
    1 000 000), alternating with and without the capture (``SPARKML_TASK_METRICS=off``),
    ``--repeats`` times each; medians, the ratio, and the runs' own ``spark/capture_time_ms``.
    Target: on/off <= 1.03.

    python scripts/bench_task_metrics.py                 # both
    python scripts/bench_task_metrics.py --rows 0        # parse only
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from benchmark import machine  # noqa: E402
from make_large_dataset import make  # noqa: E402

TAG_RUN = "bench0000"
_TASK_ID = re.compile(r'"Task ID":\d+')


def real_app_lines(work: Path) -> list[str]:
    """Every line of a real application's event log: 400 tasks with a shuffle, tagged."""
    from sparkml_template.observability.eventlog import iter_lines, locate_event_log
    from sparkml_template.observability.task_events import run_tag
    from sparkml_template.runtime.session import get_spark

    work.mkdir(parents=True)  # Spark wants the event log directory to exist
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": work.as_uri()}
    spark = get_spark("local[2]", "bench-task-metrics", conf)
    sc = spark.sparkContext
    sc.addJobTag(run_tag(TAG_RUN))
    pairs = sc.parallelize(range(200_000), 200).map(lambda x: (x % 997, 1))
    pairs.reduceByKey(lambda a, b: a + b, 200).count()
    app_id = sc.applicationId
    spark.stop()
    return list(iter_lines(locate_event_log(work, app_id)))


def synthetic_log(lines: list[str], tasks: int, out: Path) -> Path:
    """A rolling zstd log like Spark's (a frame per 1 000 lines) with ``tasks`` task ends."""
    import zstandard

    is_task = [line.startswith('{"Event":"SparkListenerTask') for line in lines]
    first = is_task.index(True)
    last = len(is_task) - is_task[::-1].index(True)
    head, body, tail = lines[:first], lines[first:last], lines[last:]
    task_lines = [line for line in body if line.startswith('{"Event":"SparkListenerTask')]
    ends_per_copy = sum(line.startswith('{"Event":"SparkListenerTaskEnd"') for line in task_lines)
    copies = -(-tasks // ends_per_copy)
    app = out / "eventlog_v2_local-bench"
    app.mkdir(parents=True)
    compressor = zstandard.ZstdCompressor(level=1)
    with open(app / "events_1_local-bench.zstd", "wb") as f:
        batch: list[str] = []

        def emit(line: str) -> None:
            batch.append(line)
            if len(batch) == 1000:
                f.write(compressor.compress(("\n".join(batch) + "\n").encode()))
                batch.clear()

        for line in head + [x for x in body if not x.startswith('{"Event":"SparkListenerTask')]:
            emit(line)
        next_id = 0
        for _ in range(copies):
            for line in task_lines:
                emit(_TASK_ID.sub(f'"Task ID":{next_id}', line, count=1))
                next_id += line.startswith('{"Event":"SparkListenerTaskEnd"')
        for line in tail:
            emit(line)
        if batch:
            f.write(compressor.compress(("\n".join(batch) + "\n").encode()))
    return app


def bench_parse(tasks: int, repeats: int) -> dict:
    from sparkml_template.observability import task_tables
    from sparkml_template.observability.capture import read_run_log
    from sparkml_template.observability.eventlog_copy import RunLogWriter
    from sparkml_template.observability.task_events import run_tag

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log = synthetic_log(real_app_lines(work / "spark"), tasks, work / "synthetic")
        size = sum(p.stat().st_size for p in log.iterdir())
        times, cpu, count = [], [], 0
        for i in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            copy = RunLogWriter(work / f"copy{i}", "local-bench", [], None)
            run = read_run_log(log, run_tag(TAG_RUN), copy)
            frame = task_tables.tasks_frame(run.tasks)
            stages = task_tables.stage_summary(frame, run.stages)
            task_tables.run_metrics(frame, stages, len(run.jobs))
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            count = len(frame)
    return {
        "task_end_events": count, "log_bytes": size, "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu), "load": os.getloadavg()[0],
    }  # fmt: skip


def _train(data: Path, tracking: str, experiment: str, capture: bool) -> tuple[float, str]:
    env = dict(
        os.environ, MLFLOW_TRACKING_URI=tracking, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"
    )
    env["SPARKML_TASK_METRICS"] = "on" if capture else "off"
    cmd = [str(BIN / "mlflow"), "run", str(ROOT), "--env-manager", "local", "-e", "train",
           "--experiment-id", experiment, "-P", f"data={data}"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"mlflow run failed:\n{proc.stderr[-3000:]}")
    run_id = re.search(r"Run \(ID '([0-9a-f]+)'\) succeeded", proc.stderr)
    return elapsed, run_id.group(1) if run_id else ""


def bench_overhead(rows: int, repeats: int) -> dict:
    from mlflow.tracking import MlflowClient

    data = make(rows)
    with tempfile.TemporaryDirectory() as tmp:
        tracking = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(tracking)
        experiment = client.create_experiment("bench", artifact_location=Path(tmp).as_uri())
        times: dict[bool, list[float]] = {True: [], False: []}
        capture_ms = []
        for _ in range(repeats):
            for capture in (False, True):
                elapsed, run_id = _train(data, tracking, experiment, capture)
                times[capture].append(elapsed)
                if capture and run_id:
                    capture_ms.append(client.get_run(run_id).data.metrics["spark/capture_time_ms"])
    off, on = statistics.median(times[False]), statistics.median(times[True])
    return {
        "rows": rows, "off_s": off, "on_s": on, "ratio": on / off,
        "capture_time_ms": statistics.median(capture_ms) if capture_ms else None,
        "all_off_s": times[False], "all_on_s": times[True],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.tasks:
        parse = bench_parse(args.tasks, args.repeats)
        print(
            f"parse: {parse['task_end_events']} task events, {parse['log_bytes'] / 2**20:.1f} MiB "
            f"zstd log: {parse['seconds']:.2f} s wall, {parse['cpu_seconds']:.2f} s CPU "
            f"(median of {args.repeats}; target <= 5 s; load average {parse['load']:.1f})"
        )
    if args.rows:
        cost = bench_overhead(args.rows, args.repeats)
        print(
            f"overhead: train on {cost['rows']} rows: off {cost['off_s']:.1f} s, "
            f"on {cost['on_s']:.1f} s, ratio {cost['ratio']:.3f} (target <= 1.03); "
            f"capture itself {cost['capture_time_ms']:.0f} ms (median); "
            f"all off {cost['all_off_s']}, all on {cost['all_on_s']}"
        )


if __name__ == "__main__":
    main()
