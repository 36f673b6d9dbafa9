"""A real Spark standalone cluster on 127.0.0.1 (scripts/spark_cluster.py): training runs on its
executors, and the two ways a cluster commonly fails a user end in one line, in bounded time.

One cluster (a master and two 1-core, 1 GiB workers) serves the whole module and is stopped by
PID at the end.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, SHIPPED_DATA, Tracking, mlflow_run, only_run, subprocess_env
from hosts_support import split_csv
from servers import free_port

from sparkml_template.errors import UserError
from sparkml_template.runtime.preflight import check_master_reachable
from sparkml_template.runtime.session import executor_timeout
from sparkml_template.runtime.tracking import ERROR_TAG

WORKERS = 2
WORKER_MEMORY_MB = 1024


def load_cluster_script():
    """scripts/spark_cluster.py as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(
        "spark_cluster", PROJECT_ROOT / "scripts" / "spark_cluster.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


spark_cluster = load_cluster_script()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Master + two workers from the pip-installed pyspark; every PID is gone afterwards."""
    state = tmp_path_factory.mktemp("cluster")
    started = spark_cluster.start_cluster(
        state,
        workers=WORKERS,
        cores=1,
        memory=f"{WORKER_MEMORY_MB}m",
        port=free_port(),
        webui_port=free_port(),
        python=sys.executable,
        timeout=180,
    )
    yield started
    stopped = spark_cluster.stop_cluster(state)
    assert sorted(stopped) == sorted(started.pids)
    assert not any(spark_cluster.alive(pid) for pid in started.pids)


def spark_defaults(folder: Path, conf: dict[str, str]) -> Path:
    """A SPARK_CONF_DIR holding spark-defaults.conf: how users hand Spark conf to `mlflow run`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{key} {value}" for key, value in conf.items()]
    (folder / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    return folder


def task_executors(tracking: Tracking, run_id: str, tmp_path: Path) -> list[str]:
    """The executor of every task attempt of the run, from its ``spark/tasks.csv`` task table
    (built from Spark's event log by the task-metrics capture)."""
    import pandas as pd

    path = tracking.client().download_artifacts(run_id, "spark/tasks.csv", str(tmp_path))
    return pd.read_csv(path, dtype={"executor_id": str})["executor_id"].tolist()


def run_python(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """This interpreter on ``args`` in the project root (a driver process of its own)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env=env,
    )


def test_workers_registered_with_the_project_interpreter(cluster):
    status = spark_cluster.master_status(cluster.webui_url)
    workers = [w for w in status["workers"] if w["state"] == "ALIVE"]
    assert len(workers) == WORKERS
    assert {(w["host"], w["cores"], w["memory"]) for w in workers} == {
        ("127.0.0.1", 1, WORKER_MEMORY_MB)
    }
    for pid in cluster.worker_pids:  # executors inherit their worker's environment
        environ = dict(
            item.split("=", 1)
            for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
            if "=" in item
        )
        assert environ["PYSPARK_PYTHON"] == sys.executable


def test_start_refuses_a_busy_port(cluster, tmp_path):
    busy = int(cluster.master_url.rsplit(":", 1)[1])
    with pytest.raises(spark_cluster.ClusterError, match=f"--port {busy} is already in use"):
        spark_cluster.start_cluster(tmp_path, port=busy, webui_port=free_port())
    assert not (tmp_path / spark_cluster.STATE_FILE).exists()


def test_executors_run_python_with_the_project_interpreter(cluster):
    """A Python task runs on the executors (not the driver) with this venv's interpreter."""
    script = (
        "import json, os, sys\n"
        "from sparkml_template.runtime.session import get_spark\n"
        f"spark = get_spark({cluster.master_url!r}, 'interpreter-check')\n"
        "rdd = spark.sparkContext.parallelize(range(8), 8)\n"
        "print(json.dumps(sorted(set(rdd.map(lambda _: sys.executable).collect()))))\n"
        "spark.stop()\n"
    )
    env = subprocess_env()
    env.pop("PYSPARK_PYTHON", None)  # the template must choose
    out = run_python("-c", script, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [sys.executable]


@pytest.mark.cli
def test_mlflow_run_trains_on_two_executors(cluster, tracking: Tracking, tmp_path):
    conf = spark_defaults(
        tmp_path / "conf",
        {  # start scheduling once both workers' cores are in, so both can get tasks
            "spark.cores.max": str(WORKERS),
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        },
    )
    data = split_csv(SHIPPED_DATA, tmp_path / "data", parts=4)
    result = mlflow_run(
        tracking,
        "-e",
        "train",
        "-P",
        f"master={cluster.master_url}",
        "-P",
        f"data={data}",
        "-P",
        "maxIter=10",
        env={"SPARK_CONF_DIR": str(conf)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tracking)
    assert run.info.status == "FINISHED"
    assert run.data.tags["spark.master"] == cluster.master_url
    assert run.data.metrics["accuracy"] > 0.5
    app_id = run.data.tags["spark.app_id"]

    assert run.data.tags["spark.task_metrics.source"] == "event_log"
    executors = task_executors(tracking, run.info.run_id, tmp_path)
    assert executors, "the run's task table is empty"
    assert "driver" not in executors
    assert len(set(executors)) >= 2, set(executors)

    finished = spark_cluster.master_status(cluster.webui_url)["completedapps"]
    assert app_id in {app["id"] for app in finished}


def test_executor_bigger_than_any_worker_fails_in_bounded_time(cluster, tracking, tmp_path):
    conf = spark_defaults(tmp_path / "conf", {"spark.executor.memory": "2g"})
    env = subprocess_env(
        SPARK_CONF_DIR=str(conf),
        SPARKML_EXECUTOR_TIMEOUT="10",
        MLFLOW_TRACKING_URI=tracking.uri,
        MLFLOW_EXPERIMENT_ID=tracking.experiment_id,
    )
    result = run_python("train.py", "--master", cluster.master_url, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "no executor started" in errors[0]
    assert "spark.executor.memory=2g" in errors[0]
    assert "Traceback" not in result.stderr
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert "spark.executor.memory=2g" in run.data.tags[ERROR_TAG]

    # The driver stopped its application: the master holds no application waiting for cores.
    deadline = time.monotonic() + 60
    while spark_cluster.master_status(cluster.webui_url)["activeapps"]:
        assert time.monotonic() < deadline, "the application is still registered"
        time.sleep(0.5)


def test_unreachable_master_fails_before_spark_starts(tracking):
    closed = free_port()  # bound and released: nothing listens there
    env = subprocess_env(
        MLFLOW_TRACKING_URI=tracking.uri, MLFLOW_EXPERIMENT_ID=tracking.experiment_id
    )
    result = run_python("train.py", "--master", f"spark://127.0.0.1:{closed}", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"train: error: Spark master spark://127.0.0.1:{closed} is unreachable "
        "(connection refused): start it (python scripts/spark_cluster.py start) "
        "or fix the master parameter"
    ], result.stderr[-3000:]  # nothing else: no JVM was launched
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert "is unreachable" in run.data.tags[ERROR_TAG]


def test_master_urls_checked_before_spark_starts(cluster):
    closed = free_port()
    # A standby list is reachable when any of its masters is.
    check_master_reachable(f"spark://127.0.0.1:{closed},{cluster.master_url[len('spark://') :]}")
    with pytest.raises(UserError, match="expected spark://host:port"):
        check_master_reachable("spark://127.0.0.1")
    with pytest.raises(UserError, match="SPARKML_EXECUTOR_TIMEOUT must be a positive number"):
        executor_timeout({"SPARKML_EXECUTOR_TIMEOUT": "soon"})
