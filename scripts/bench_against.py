"""What a change costs, end to end: ``mlflow run <checkout> -e train`` on the generated large
dataset with this checkout and with another commit's, alternating, medians (not a test).

    python scripts/bench_against.py --base <commit>              # 3 repeats each, 1 M rows
    python scripts/bench_against.py --base <commit> --repeats 5 --rows 200000
    python scripts/bench_against.py --base <commit> --entry-point main --data data/breast_cancer.csv
    python scripts/bench_against.py --base <commit> --this <other commit>   # two past commits
    python scripts/bench_against.py --base <commit> --entry-point main \
        --data bench-data/diabetes_1000000_rg.parquet -P label=target -P task=regression

The other commit (and the ``--this`` one, if given) is checked out with ``git worktree`` into a
temporary directory (removed afterwards); both run with this venv's interpreter and the same
tracking store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from benchmark import machine, timed  # noqa: E402
from make_large_dataset import make  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--this", help="a commit to measure instead of this checkout")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entry-point", default="train")
    parser.add_argument("--data", type=Path, help="a dataset instead of the generated one")
    parser.add_argument("-P", dest="params", action="append", default=[], metavar="NAME=VALUE",
                        help="another MLproject parameter, both sides (repeatable)")  # fmt: skip
    args = parser.parse_args()
    data = args.data.resolve() if args.data else make(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this": ROOT, "base": Path(tmp) / "base"}
        if args.this:
            trees["this"] = Path(tmp) / "this"
        added = [(trees["base"], args.base)] + ([(trees["this"], args.this)] if args.this else [])
        for tree, commit in added:
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT,
                           check=True, capture_output=True)  # fmt: skip
        try:
            import mlflow

            uri = f"sqlite:///{tmp}/bench.db"
            experiment_id = mlflow.MlflowClient(uri).create_experiment("against")
            env = {
                **os.environ,
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                "MLFLOW_TRACKING_URI": uri,
            }
            cmds = {
                name: [
                    str(BIN / "mlflow"),
                    "run",
                    str(tree),
                    "--env-manager",
                    "local",
                    "--experiment-id",
                    experiment_id,
                    "-e",
                    args.entry_point,
                    "-P",
                    f"data={data}",
                    *(arg for param in args.params for arg in ("-P", param)),
                ]
                for name, tree in trees.items()
            }
            times: dict[str, list[float]] = {name: [] for name in cmds}
            for i in range(args.repeats):
                order = list(cmds) if i % 2 == 0 else list(reversed(cmds))
                for name in order:
                    times[name].append(timed(cmds[name], env))
                    print(f"  {name}: {times[name][-1]:.1f} s", file=sys.stderr)
        finally:
            for tree, _ in added:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               capture_output=True)  # fmt: skip
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"Machine: {machine()}; {args.repeats} runs each, medians, wall clock.")
    this = args.this or "this"
    print(f"`mlflow run . -e {args.entry_point}` on {data.name}: {this} {med['this']:.1f} s, "
          f"{args.base} {med['base']:.1f} s, ratio {med['this'] / med['base']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
