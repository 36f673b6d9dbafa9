"""What the per-executor work costs a run, and a run at scale (issue 21's cost targets).

``--probe``: ``python train.py`` on generated rows (default 1 M), alternating the environment
probe on and off (``SPARKML_ENV_PROBE``), ``--repeats`` pairs; medians and their ratio. On
``local[*]`` the slow-host history lookup never runs (one host), so this is the whole cost.

``--scale``: one run each, in a fresh process, on generated rows (default 10 M): (1) plain
PySpark (``scripts/bench/contender.py plain``), (3) ``mlflow run . --env-manager local`` (main:
train then evaluate) and (0) ``mlflow run`` of an empty project (the CLI's own cost), each
with its wall time and peak resident memory (the largest process of its tree, sampled: the
driver JVM). ``--master`` and ``SPARK_CONF_DIR`` send (1) and (3) to a cluster.

    python scripts/bench_run_cost.py --probe --repeats 4
    python scripts/bench_run_cost.py --scale --rows 10000000
    SPARK_CONF_DIR=/tmp/pyspark-mlflow-template-cluster/conf PYSPARK_PYTHON=python3 \\
        python scripts/bench_run_cost.py --scale --master spark://198.51.100.10:7077
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark import empty_project, machine  # noqa: E402
from make_large_dataset import make  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of ``cmd`` and the peak resident memory (GiB) of its largest process (the
    driver JVM), sampled every 0.2 s over the whole process tree; fails loudly."""
    import psutil

    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a pipe left unread would block the child
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for each in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        peak = max(peak, each.memory_info().rss)
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read()[-3000:]}")
    return seconds, peak / 2**30


def tracking_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", **extra}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `mlflow run` calls `python`
    env.setdefault("SPARKML_SYSTEM_METRICS", "off")
    return env


def probe_cost(rows: int, repeats: int) -> None:
    data = make(rows)
    times: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        train = [sys.executable, "train.py", "--data", str(data)]
        timed(train, tracking_env(Path(tmp), SPARKML_ENV_PROBE="off"))  # page cache, JVM archive
        for _ in range(repeats):
            for switch in ("on", "off"):
                env = tracking_env(Path(tmp), SPARKML_ENV_PROBE=switch)
                times[switch].append(timed(train, env)[0])
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"machine: {machine()}; `python train.py` on {rows:,} rows, {repeats} pairs")
    print("| probe | median | runs |\n|---|---|---|")
    for switch in ("on", "off"):
        print(f"| {switch} | {statistics.median(times[switch]):.1f} s | "
              f"{', '.join(f'{t:.1f}' for t in times[switch])} |")  # fmt: skip
    print(f"on/off: {on / off:.3f}")


def scale(rows: int, master: str) -> None:
    data = make(rows)
    contender = str(ROOT / "scripts" / "bench" / "contender.py")
    with tempfile.TemporaryDirectory() as tmp:
        env = tracking_env(Path(tmp))
        plain = [sys.executable, contender, "plain", str(data)]
        mlflow_run = [str(BIN / "mlflow"), "run", "--env-manager", "local"]
        run = [*mlflow_run, str(ROOT), "-P", f"data={data}"]
        if master:
            plain += ["--master", master]
            run += ["-P", f"master={master}"]
        empty = [*mlflow_run, str(empty_project(Path(tmp)))]
        results = {
            "(0) `mlflow run` of an empty project": timed(empty, env),
            "(1) plain PySpark": timed(plain, env),
            "(3) `mlflow run .` (main)": timed(run, env),
        }
    print(f"machine: {machine()}; {rows:,} rows; master {master or 'local[*]'}")
    print("| contender | wall time | peak RSS (largest process) |\n|---|---|---|")
    for name, (seconds, gib) in results.items():
        print(f"| {name} | {seconds:.1f} s | {gib:.2f} GiB |")
    cli = results["(0) `mlflow run` of an empty project"][0]
    plain_s, run_s = results["(1) plain PySpark"][0], results["(3) `mlflow run .` (main)"][0]
    print(f"(3)/(1): {run_s / plain_s:.2f}; ((3) - (0))/(1): {(run_s - cli) / plain_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--probe", action="store_true", help="environment probe on vs off")
    mode.add_argument("--scale", action="store_true", help="one large run against plain PySpark")
    parser.add_argument("--rows", type=int, help="generated rows (1 M for --probe, 10 M --scale)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--master", default="", help="a cluster for --scale (default local[*])")
    args = parser.parse_args()
    if args.probe:
        probe_cost(args.rows or 1_000_000, args.repeats)
    else:
        scale(args.rows or 10_000_000, args.master)


if __name__ == "__main__":
    main()
