"""Wall-clock benchmark of the template against the code it replaces (issue 2's targets).

Contenders, run alternately, each in a fresh process, ``--repeats`` times per dataset:
  (1) plain   the same pipeline in plain PySpark, default SparkSession, no MLflow
  (2) seed    plain PySpark + mlflow.pyspark.ml.autolog() + mlflow.spark.log_model with an
              input example and inferred requirements (a typical starting script)
  (3) run     `mlflow run . --env-manager local` — the template's main entry point
  (3') run, with SPARKML_JVM_CACHE=off: the same without the driver JVM's class-data archive
              (built by `make setup`), to show what the archive is worth
on the shipped data and on a generated large dataset. Prints medians and the ratios (3)/(1)
and (3)/(2) as a Markdown table, with the machine, and saves JSON under bench-results/.
A command that fails is retried once (and the retry is reported); a second failure stops.

With ``--estimators``, every (task, estimator) pair instead: (1) against (3) with ``-P task=…
-P estimator=…``, on generated 1 M-row data for each task (classification: the shipped
breast-cancer rows; regression: scikit-learn's diabetes rows), alternating, medians. Alongside
them, (0) ``mlflow run`` of an empty project (its command is ``python -c pass``): what the
MLflow CLI itself costs on this machine (importing it, creating the run, ending it, exiting),
which no project can shorten; the table also gives (3) without it, against (1).

    python scripts/benchmark.py                  # 3 repeats, shipped data + 1 M rows
    python scripts/benchmark.py --large-rows 0   # shipped data only
    python scripts/benchmark.py --estimators     # 6 pairs on 1 M rows; gbt with maxIter=20
    python scripts/benchmark.py --estimators --only regression:linear
    python scripts/benchmark.py --serving        # the served model: fast, Spark, scikit-learn

With ``--serving``, ``mlflow models serve`` instead (scripts/bench_serving.py): cold start and
p50/p99 latency for 1, 100 and 10,000 rows of the template's model in its fast and Spark forms,
beside a scikit-learn model on the same data served the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from make_large_dataset import LABELS, make  # noqa: E402

from sparkml_template.workflows import warmup  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def commands(data: Path, experiment_id: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each contender's command line and the environment it adds."""
    contender = str(ROOT / "scripts" / "bench" / "contender.py")
    run = [
        str(BIN / "mlflow"),
        "run",
        str(ROOT),
        "--env-manager",
        "local",
        "--experiment-id",
        experiment_id,
        "-P",
        f"data={data}",
    ]
    return {
        "plain": ([sys.executable, contender, "plain", str(data)], {}),
        "seed": ([sys.executable, contender, "seed", str(data)], {}),
        "run": (run, {}),
        "run_no_archive": (run, {"SPARKML_JVM_CACHE": "off"}),
    }


def timed(cmd: list[str], env: dict[str, str]) -> float:
    for attempt in (1, 2):
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if out.returncode == 0:
            return elapsed
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        print(f"  attempt {attempt} failed: {' '.join(cmd[:3])}: {tail[0]}", file=sys.stderr)
    raise SystemExit(f"benchmark command failed twice: {' '.join(cmd)}\n{out.stderr[-3000:]}")


def bench(data: Path, repeats: int, tmp: Path) -> dict[str, list[float]]:
    import mlflow

    uri = f"sqlite:///{tmp}/bench.db"
    client = mlflow.MlflowClient(uri)  # creates the tables now, outside any timing
    name = f"bench-{data.stem}"
    experiment_id = client.create_experiment(name, artifact_location=(tmp / name).as_uri())
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
    }
    cmds = commands(data, experiment_id)
    order = list(cmds)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    timed(cmds["plain"][0], env)  # warm the OS page cache once
    for i in range(repeats):
        shift = i % len(order)
        for key in order[shift:] + order[:shift]:  # rotate who goes first
            cmd, extra = cmds[key]
            times[key].append(timed(cmd, {**env, **extra}))
            print(f"  {data.name} {key}: {times[key][-1]:.1f} s", file=sys.stderr)
    return times


TASK_DATA = {"classification": "breast_cancer", "regression": "diabetes"}
ESTIMATORS = ("linear", "random_forest", "gbt")


EMPTY_PROJECT = "name: empty\nentry_points:\n  main:\n    command: python -c pass\n"


def empty_project(tmp: Path) -> Path:
    """A project whose entry point does nothing: ``mlflow run`` of it is the CLI's own cost."""
    project = tmp / "empty-project"
    project.mkdir(exist_ok=True)
    (project / "MLproject").write_text(EMPTY_PROJECT)
    return project


def estimator_commands(
    task: str, estimator: str, rows: int, experiment_id: str, extra: dict[str, str]
) -> dict[str, list[str]]:
    """(1) and (3) for one (task, estimator) pair, with the same data and estimator params."""
    kind = TASK_DATA[task]
    data, label = make(rows, kind=kind), LABELS[kind]
    contender = str(ROOT / "scripts" / "bench" / "contender.py")
    plain = [sys.executable, contender, "plain", str(data), "--task", task]
    plain += ["--estimator", estimator, "--label", label]
    run = [str(BIN / "mlflow"), "run", str(ROOT), "--env-manager", "local"]
    run += ["--experiment-id", experiment_id, "-P", f"data={data}", "-P", f"label={label}"]
    run += ["-P", f"task={task}", "-P", f"estimator={estimator}"]
    for name, value in extra.items():
        plain += [f"--{name}", value]
        run += ["-P", f"{name}={value}"]
    return {"plain": plain, "run": run}


def bench_estimators(
    repeats: int, rows: int, gbt_iter: int, tmp: Path, only: set[tuple[str, ...]]
) -> list[str]:
    """Every (task, estimator) pair, (1) and (3) alternating; the Markdown table's rows."""
    import mlflow

    uri = f"sqlite:///{tmp}/bench.db"
    experiment_id = mlflow.MlflowClient(uri).create_experiment("bench-estimators")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": uri}  # fmt: skip
    empty = [str(BIN / "mlflow"), "run", str(empty_project(tmp)), "--env-manager", "local",
             "--experiment-id", experiment_id]  # fmt: skip
    rows_md = []
    for task in TASK_DATA:
        for estimator in ESTIMATORS:
            if only and (task, estimator) not in only:
                continue
            extra = {"maxIter": str(gbt_iter)} if estimator == "gbt" else {}
            cmds = {**estimator_commands(task, estimator, rows, experiment_id, extra), "cli": empty}
            times: dict[str, list[float]] = {k: [] for k in cmds}
            for i in range(repeats):
                for key in list(cmds)[:: 1 if i % 2 == 0 else -1]:
                    times[key].append(timed(cmds[key], env))
                    print(f"  {task} {estimator} {key}: {times[key][-1]:.1f} s", file=sys.stderr)
            med = {k: statistics.median(v) for k, v in times.items()}
            spread = " / ".join(
                f"{min(times[k]):.1f}–{max(times[k]):.1f}" for k in ["plain", "run"]
            )
            settings = ", ".join(f"{k}={v}" for k, v in extra.items()) or "defaults"
            rows_md.append(
                f"| {task} | {estimator} ({settings}) | {med['plain']:.1f} s | {med['run']:.1f} s "
                f"| **{med['run'] / med['plain']:.2f}** | {med['cli']:.1f} s "
                f"| {(med['run'] - med['cli']) / med['plain']:.2f} | {spread} s |"
            )
    return rows_md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--estimators", action="store_true", help="every (task, estimator)")
    parser.add_argument("--gbt-iter", type=int, default=20, help="gbt's maxIter (both sides)")
    parser.add_argument("--only", action="append", default=[], metavar="TASK:ESTIMATOR",
                        help="with --estimators: just these pairs (repeatable)")  # fmt: skip
    parser.add_argument("--serving", action="store_true", help="mlflow models serve latency")
    args = parser.parse_args()
    warmup.main([])
    if args.serving:
        from bench_serving import run as bench_serving

        print(f"Machine: {machine()}; one server at a time, sequential requests.\n")
        print("\n".join(bench_serving()))
        return
    if args.estimators:
        with tempfile.TemporaryDirectory() as tmp:
            only = {tuple(pair.split(":", 1)) for pair in args.only}
            rows = bench_estimators(args.repeats, args.large_rows, args.gbt_iter, Path(tmp), only)
        print(f"Machine: {machine()}; {args.repeats} runs each, medians, wall clock; "
              f"{args.large_rows} rows per task.\n")  # fmt: skip
        print("| task | estimator | (1) plain PySpark | (3) `mlflow run .` | (3)/(1) "
              "| (0) `mlflow run` of an empty project | ((3) − (0))/(1) | spread (1) / (3) |\n"
              "|---|---|---|---|---|---|---|---|")  # fmt: skip
        print("\n".join(rows))
        return  # what `make setup` does: (3) runs as a user's would after setup
    datasets = [ROOT / "data" / "breast_cancer.csv"]
    if args.large_rows:
        datasets.append(make(args.large_rows))
    results = {"machine": machine(), "repeats": args.repeats, "datasets": {}}
    lines = [
        f"Machine: {results['machine']}; {args.repeats} runs each, medians, wall clock.",
        "",
        "| data | (1) plain PySpark | (2) autolog + log_model | (3) `mlflow run .` "
        "| (3)/(1) | (3)/(2) | (3') without JVM archive | (3')/(1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for data in datasets:
            times = bench(data, args.repeats, Path(tmp))
            med = {k: statistics.median(v) for k, v in times.items()}
            results["datasets"][data.name] = {"times": times, "median": med}
            lines.append(
                f"| {data.name} | {med['plain']:.1f} s | {med['seed']:.1f} s | {med['run']:.1f} s "
                f"| {med['run'] / med['plain']:.2f} | {med['run'] / med['seed']:.2f} "
                f"| {med['run_no_archive']:.1f} s | {med['run_no_archive'] / med['plain']:.2f} |"
            )
    print("\n".join(lines))
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(results, indent=2)
    )


if __name__ == "__main__":
    main()
