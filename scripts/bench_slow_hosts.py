"""A host slow across runs, shown on real runs: a three-host cluster (``spark_cluster.py
--hosts``) with one worker held to a CPU quota (or none, ``--even``), ``--runs`` runs of
``python train.py`` in one experiment, and what each run concluded: every host's slowness
(tag ``spark.hosts.slowness``) and the hosts named slow across runs (``spark.slow_hosts``).

The rows are the shipped data drawn ``--rows`` times (``make_large_dataset.py``) and written
as ``--parts`` Parquet files, so every host gets tasks in every stage. Needs root (network
namespaces, a cgroup); everything is stopped and removed at the end.

    python scripts/bench_slow_hosts.py --runs 5                 # worker 2 at 0.25 core
    python scripts/bench_slow_hosts.py --runs 5 --even          # no quota: no host named
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import spark_cluster  # noqa: E402
from benchmark import machine  # noqa: E402
from make_large_dataset import make  # noqa: E402
from netns_hosts import worker_host  # noqa: E402

SLOW_WORKER = 2


def parted(rows: int, parts: int, folder: Path) -> Path:
    import pyarrow.parquet as pq

    table = pq.read_table(make(rows))
    out = folder / f"data_{rows}_{parts}"
    out.mkdir()
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), out / f"part-{i:05d}.parquet")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--even", action="store_true", help="no CPU quota on any worker")
    parser.add_argument("--quota", type=float, default=0.25, help="cores of worker 2")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--parts", type=int, default=12)
    args = parser.parse_args()

    import mlflow

    with tempfile.TemporaryDirectory(prefix="slow-hosts-") as tmp:
        folder = Path(tmp)
        data = parted(args.rows, args.parts, folder)
        uri = f"sqlite:///{folder}/mlflow.db"
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("slow-hosts")
        quota = {} if args.even else {SLOW_WORKER: args.quota}
        cluster = spark_cluster.start_hosts_cluster(
            folder / "cluster", workers=3, cores=1, memory="2g", cpu_quota=quota, timeout=180
        )
        env = {
            **os.environ,
            "SPARK_CONF_DIR": str(cluster.conf_dir),
            "PYSPARK_PYTHON": "python3",
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_EXPERIMENT_ID": experiment,
            "SPARKML_SYSTEM_METRICS": "off",
        }
        slow = worker_host(SLOW_WORKER).address
        print(f"machine: {machine()}; hosts cluster, worker {slow} quota {quota or 'none'}")
        print(f"data: {args.rows:,} rows in {args.parts} Parquet files; {args.runs} runs")
        print("| run | wall | slowness per host | spark.slow_hosts |\n|---|---|---|---|")
        try:
            for index in range(1, args.runs + 1):
                start = time.perf_counter()
                train = [sys.executable, "train.py", "--master", cluster.master_url]
                done = subprocess.run(
                    [*train, "--data", str(data)],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(f"run {index} failed:\n{done.stderr[-3000:]}")
                run = client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0]
                slowness = json.loads(run.data.tags.get("spark.hosts.slowness", "{}"))
                named = run.data.tags.get("spark.slow_hosts", "")
                shown = ", ".join(f"{h} {v:.2f}" for h, v in sorted(slowness.items()))
                print(f"| {index} | {wall:.0f} s | {shown} | {named or '-'} |", flush=True)
        finally:
            spark_cluster.stop_cluster(folder / "cluster")


if __name__ == "__main__":
    main()
