"""Per host: the slowness figure (skew is not slowness, a throttled host is), a host slow across
runs read back through MLflow's search API (named after enough runs, never on an even cluster or
a placebo), and a real lost executor (``kill -9`` of an executor JVM) with what it cost."""

from __future__ import annotations

import itertools
import random
import re

import pandas as pd
import pytest
from eventlog_apps import app_run, lost_manifest

from sparkml_template.observability import hosts, task_tables
from sparkml_template.observability.capture import (
    LOST_EXECUTORS_TAG,
    SLOW_HOSTS_TAG,
    SLOWNESS_TAG,
    _slow_across_runs,
    log_run_metrics,
)
from sparkml_template.observability.host_history import (
    MASTER_TAG,
    SlowHostRule,
    earlier_slowness,
    slow_hosts,
)
from sparkml_template.observability.task_events import TASK_COLUMNS

MASTER = "spark://198.51.100.1:7077"
HOSTS = ["198.51.100.11", "198.51.100.12", "198.51.100.13"]


def _task(task_id, host, launch, duration, records, stage=0, executor=None) -> dict:
    row = dict.fromkeys(TASK_COLUMNS, 0)
    row.update(
        stage_id=stage, task_id=task_id, partition_id=task_id, host=host,
        executor_id=executor or host, launch_time=launch, finish_time=launch + duration,
        duration_ms=duration, input_records=records, status="SUCCESS", failure_reason="",
        speculative=False, locality="",
    )  # fmt: skip
    return row


def _stage(per_host_ms_per_record: dict[str, float], waves=6, records=10_000, heavy=None):
    """Tasks of one stage, one core per host, wave after wave; ``heavy`` = (host, wave) holds
    10x the records (and takes 10x the time: a skewed partition, not a slow host)."""
    rows, clock = [], dict.fromkeys(per_host_ms_per_record, 1_000_000)
    for wave in range(waves):
        for host, rate in per_host_ms_per_record.items():
            n = records * (10 if heavy == (host, wave) else 1)
            duration = int(rate * n)
            rows.append(_task(len(rows), host, clock[host], duration, n))
            clock[host] += duration
    return task_tables.tasks_frame(rows)


def test_a_skewed_partition_on_a_healthy_host_is_neither_slow_nor_a_straggler():
    tasks = _stage({HOSTS[0]: 0.2, HOSTS[1]: 0.2}, heavy=(HOSTS[0], 3))
    heavy = tasks.loc[tasks["input_records"].idxmax()]
    assert heavy["duration_ms"] >= 10 * tasks["duration_ms"].median()  # really skewed
    slowness = hosts.host_slowness(tasks)
    assert slowness == pytest.approx({HOSTS[0]: 1.0, HOSTS[1]: 1.0})
    assert task_tables.find_stragglers(tasks).empty
    # the rule it replaces (1.5x the stage's median duration) called it a straggler
    assert heavy["duration_ms"] > 1.5 * tasks["duration_ms"].median()


def test_a_throttled_host_is_slow_and_its_tasks_are_stragglers():
    tasks = _stage({HOSTS[0]: 0.2, HOSTS[1]: 0.2, HOSTS[2]: 0.6})
    slowness = hosts.host_slowness(tasks)
    assert slowness[HOSTS[2]] == pytest.approx(3.0)
    assert slowness[HOSTS[0]] == pytest.approx(0.5)  # its 0.2 vs the others tasks median 0.4
    flagged = task_tables.find_stragglers(tasks)
    assert set(flagged["host"]) == {HOSTS[2]}
    assert len(flagged) == 6  # every wave, the first compared with the other first tasks
    assert flagged["ratio_to_median"].min() == pytest.approx(3.0)


def test_empty_partitions_unsized_stages_and_a_single_host():
    tasks = _stage({HOSTS[0]: 0.2, HOSTS[1]: 0.5})
    empty = _task(99, HOSTS[0], 2_000_000, 900, 0)  # overhead only: left out, not "infinitely slow"
    unsized = [_task(100 + i, HOSTS[i % 2], 3_000_000, 50, 0, stage=7) for i in range(6)]
    tasks = task_tables.tasks_frame([*tasks.to_dict("records"), empty, *unsized])
    rated = hosts.task_rates(tasks)
    assert 99 not in set(rated["task_id"]) and 7 not in set(rated["stage_id"])
    assert hosts.host_slowness(tasks)[HOSTS[1]] == pytest.approx(2.5)
    one_host = tasks.assign(host="localhost", executor_id="driver")
    assert hosts.host_slowness(one_host) == {"localhost": 1.0}
    assert hosts.parse_slowness_tag(hosts.slowness_tag({"a": 2.345})) == {"a": 2.35}
    assert hosts.parse_slowness_tag("not json") == {}


def test_the_host_table_adds_up_to_the_task_table():
    tasks = _stage({HOSTS[0]: 0.2, HOSTS[1]: 0.4})
    names = hosts.executor_hosts(tasks, {})
    table = hosts.host_table(tasks, names, hosts.lost_executors(tasks, {}), {HOSTS[1]: 2.0})
    assert list(table.columns) == hosts.HOST_COLUMNS
    assert table["tasks"].sum() == len(tasks)
    slowness = table.set_index("host")["slowness"]
    assert pd.isna(slowness[HOSTS[0]]) and slowness[HOSTS[1]] == 2.0  # not compared: no figure


def test_an_idle_host_and_a_loss_that_cost_nothing_are_still_rows():
    """A host whose executor ran no task is in the table; an executor lost when nothing was
    running on it, and nothing it made was needed again, is recorded at no cost (seen on the
    multi-host cluster: a late, CPU-limited host, and an executor killed between jobs)."""
    tasks = _stage({HOSTS[0]: 0.2}).assign(executor_id="1")
    during = int(tasks["launch_time"].min()) + 1  # while the run's tasks ran
    executors = {
        "1": {"host": HOSTS[0], "added_time": 0},
        "2": {"host": HOSTS[1], "added_time": 0},  # registered, never given a task
        "3": {"host": HOSTS[0], "added_time": 0, "removed_time": during, "removed_reason": "137"},
    }
    names = hosts.executor_hosts(tasks, executors)
    lost = hosts.lost_executors(tasks, executors)
    assert lost[["executor_id", "rerun_tasks", "cost_ms"]].values.tolist() == [["3", 0, 0.0]]
    assert "0 tasks re-run, +0.0 s" in hosts.lost_clause(lost.iloc[0].to_dict())
    table = hosts.host_table(tasks, names, lost, {}).set_index("host")
    assert table.loc[HOSTS[1], ["executors", "tasks"]].tolist() == [1, 0]
    assert table.loc[HOSTS[0], ["executors", "tasks", "lost_executors"]].tolist() == [2, 6, 1]


class _Store:
    """A real MLflow store and one experiment in it (``fresh`` opens another)."""

    def __init__(self, client, root):
        self.client, self.root, self.clock = client, root, 1_700_000_000_000
        self.fresh()

    def fresh(self) -> None:
        name = f"hosts-{self.clock}"
        self.experiment_id = self.client.create_experiment(name, (self.root / name).as_uri())

    def runs(self, slowness_per_run: list[dict[str, float]], master: str = MASTER) -> list[str]:
        """One run per entry, a minute apart, with the tags a real run leaves."""
        ids = []
        for slowness in slowness_per_run:
            self.clock += 60_000
            run = self.client.create_run(self.experiment_id, start_time=self.clock)
            self.client.set_tag(run.info.run_id, MASTER_TAG, master)
            self.client.set_tag(run.info.run_id, SLOWNESS_TAG, hosts.slowness_tag(slowness))
            ids.append(run.info.run_id)
        return ids

    def replay(self, per_run: list[dict[str, float]]) -> list[str]:
        """Run after run, what each would have tagged as slow across runs."""
        return [_slow_across_runs(self.runs([s])[0], s, None) for s in per_run]


@pytest.fixture(params=["sqlite", "file"])
def store(request, tmp_path, monkeypatch) -> _Store:
    """A real MLflow store of each kind the template meets (sqlite, the legacy file store)."""
    from mlflow.tracking import MlflowClient

    if request.param == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (tmp_path / "mlruns").as_uri()
    else:
        uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return _Store(MlflowClient(uri), tmp_path / "artifacts")


def test_a_consistently_slow_host_is_named_once_enough_runs_saw_it(store):
    per_run = [{HOSTS[0]: 1.0, HOSTS[1]: 2.6 + i / 10, HOSTS[2]: 0.9} for i in range(7)]
    named = store.replay(per_run)
    rule = SlowHostRule()
    assert named[: rule.min_runs] == [""] * rule.min_runs  # not enough history yet
    assert all(line.startswith(f"{HOSTS[1]} ") for line in named[rule.min_runs :]), named
    assert "of the last 5 runs" in named[-1] and HOSTS[0] not in named[-1]
    other_cluster = store.runs([per_run[0]], master="local[*]")[0]
    assert _slow_across_runs(other_cluster, per_run[0], None) == ""  # another cluster's history


def test_an_even_cluster_names_no_host_in_any_run(store):
    noise = random.Random(21)
    per_run = [{h: round(noise.uniform(0.75, 1.35), 2) for h in HOSTS} for _ in range(8)]
    per_run[4][HOSTS[2]] = 2.4  # one bad run (a neighbour's backup job) is not a slow host
    assert store.replay(per_run) == [""] * 8


def test_a_placebo_shuffling_host_labels_across_the_same_runs_names_none(store):
    real = [{HOSTS[0]: 1.0, HOSTS[1]: 2.5, HOSTS[2]: 1.1} for _ in range(8)]
    # The same figures with the labels shuffled run by run (a rotation: the slow figure never
    # stays on one host two runs in a row, as when slowness follows the data, not the node).
    placebo = [dict(zip(HOSTS[i % 3 :] + HOSTS[: i % 3], r.values(), strict=True)) for i, r in
               enumerate(real)]  # fmt: skip
    slow_label = [next(h for h, v in run.items() if v >= 1.5) for run in placebo]
    assert all(a != b for a, b in itertools.pairwise(slow_label))
    assert any(line for line in store.replay(real))  # the true labels: named
    store.fresh()
    assert store.replay(placebo) == [""] * 8


def test_the_history_lookup_is_bounded_and_reads_damaged_tags_as_nothing(store):
    ids = store.runs([{HOSTS[0]: 2.0}] * 9)
    store.client.set_tag(ids[-2], SLOWNESS_TAG, "{oops")
    history = earlier_slowness(store.client, store.experiment_id, MASTER, ids[-1], 5)
    assert len(history) == 5 and history[0] == {}  # the newest other run first
    env = {"SPARKML_SLOW_HOST_MIN_RUNS": "4", "SPARKML_SLOW_HOST_FACTOR": "x"}
    rule = SlowHostRule.from_env(env)
    assert (rule.factor, rule.min_runs, rule.last_runs) == (1.5, 4, 5)
    assert slow_hosts({HOSTS[0]: 2.0}, history, rule) == [(HOSTS[0], 2.0, 4)]
    assert earlier_slowness(store.client, store.experiment_id, "it's", ids[-1], 5) == []


@pytest.fixture(scope="module")
def lost_app(tmp_path_factory):
    """A real local-cluster application whose task ``kill -9``ed its own executor JVM."""
    return lost_manifest(tmp_path_factory)


@pytest.mark.slow
def test_a_killed_executor_is_recorded_with_its_reason_and_cost(lost_app, tracking, tmp_path):
    import mlflow

    run = app_run(lost_app, "lost")
    assert lost_app["lost"]["result"]["sum"] == sum(x for x in range(20_000))  # Spark recovered
    tasks = task_tables.tasks_frame(run.tasks)
    lost = hosts.lost_executors(tasks, run.executors, run.fetch_failed_from)
    assert len(lost) == 1
    row = lost.iloc[0]
    assert row["reason"] == "Command exited with code 137"  # SIGKILL, as Spark's worker saw it
    on_it = tasks[tasks["executor_id"] == row["executor_id"]]
    assert "ExecutorLostFailure: Command exited with code 137" in set(on_it["failure_reason"])
    # Re-runs = every task of a resubmitted stage attempt + later attempts that then succeeded.
    resubmitted = tasks[(tasks["stage_attempt"] > 0) | (tasks["attempt"] > 0)]
    expected = resubmitted[resubmitted["status"] == "SUCCESS"]
    assert row["rerun_tasks"] == len(expected) >= 1
    assert row["rerun_time_ms"] == expected["duration_ms"].sum()
    failed = tasks[tasks["status"] != "SUCCESS"]
    assert row["failed_tasks"] == len(failed) and row["cost_ms"] == pytest.approx(
        failed["duration_ms"].sum() + expected["duration_ms"].sum()
    )
    assert 0 < row["lost_at_s"] < (tasks["finish_time"].max() - tasks["launch_time"].min()) / 1000

    (tmp_path / "out").mkdir()
    with mlflow.start_run() as active:
        log_run_metrics(active.info.run_id, run, "event_log", tmp_path / "out")
    data = tracking.client().get_run(active.info.run_id).data
    pattern = r"executor \d+ on 127\.0\.0\.1 lost at \d+\.\d s: Command exited with code 137; "
    assert re.fullmatch(pattern + r"\d+ tasks? re-run, \+\d+\.\d s", data.tags[LOST_EXECUTORS_TAG])
    assert data.metrics["spark/lost_executors"] == 1
    assert data.metrics["spark/rerun_tasks"] == row["rerun_tasks"]
    assert data.metrics["spark/hosts"] == 1 and SLOW_HOSTS_TAG not in data.tags
    table = pd.read_csv(tmp_path / "out" / "hosts.csv")
    assert table[["executors", "lost_executors", "tasks"]].values.tolist() == [[2, 1, len(tasks)]]
    files = {a.path for a in tracking.client().list_artifacts(active.info.run_id, "spark")}
    assert {"spark/hosts.csv", "spark/lost_executors.csv", "spark/hosts_table.json"} <= files
