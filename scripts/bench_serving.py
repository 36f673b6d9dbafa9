"""Serving benchmark: ``mlflow models serve`` of the template's model in its fast (numpy) form
and its Spark form, beside a scikit-learn model on the same data served the same way.

One run, one server at a time, on 127.0.0.1:

  fast      the template's default model (``python train.py`` on the shipped data), as served
            by default: the numpy form, no JVM
  spark     the same model with ``SPARKML_FAST_SERVING=off`` in the server's environment: the
            Spark flavor (a SparkSession in the server, a Spark job per request)
  sklearn   ``StandardScaler`` + ``LogisticRegression`` on the same rows, logged with
            ``mlflow.sklearn``: MLflow's own floor for a model served this way

For each: cold start (server process started → first ``/invocations`` answer), then sequential
requests after warm-up ones, and p50/p99 latency per batch size; the server's memory (RSS of
its whole process tree) and whether a JVM runs in it. Prints a Markdown table.

    python scripts/benchmark.py --serving
    python scripts/bench_serving.py --requests 300   # the same, directly
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA = ROOT / "data" / "breast_cancer.csv"
FORMS = ("fast", "spark", "sklearn")
BATCHES = (1, 100, 10_000)
WARMUP_REQUESTS = 3
READY_TIMEOUT_S = 300


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `mlflow models serve` runs uvicorn
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_template_model(tracking_uri: str) -> str:
    """The template's default model, logged by its own ``train`` entry point; its URI."""
    env = _env(MLFLOW_TRACKING_URI=tracking_uri, SPARKML_SYSTEM_METRICS="off")
    out = subprocess.run(
        [sys.executable, "train.py", "--data", str(DATA)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"train failed:\n{out.stderr[-3000:]}")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    return f"runs:/{run.info.run_id}/model"


def log_sklearn_model(tracking_uri: str, features: list[str], label: str) -> str:
    """The scikit-learn floor: a scaled logistic regression on the same rows."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlflow.set_tracking_uri(tracking_uri)
    frame = pd.read_csv(DATA)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(frame[features], frame[label])
    with mlflow.start_run(run_name="sklearn-floor") as run:
        mlflow.sklearn.log_model(
            model, name="model", input_example=frame[features].head(5), pip_requirements=[]
        )
    return f"runs:/{run.info.run_id}/model"


def _tree_rss_and_java(pid: int) -> tuple[float, bool]:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, False
    rss, java = 0, False
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            rss += proc.memory_info().rss
            java = java or proc.name() == "java"
    return rss / 2**20, java


def _post(base: str, body: bytes) -> bool:
    request = urllib.request.Request(
        f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def serve(model_uri: str, tracking_uri: str, log: Path, **env: str) -> Iterator[tuple[str, int]]:
    """A server in its own process group; its base URL and PID; stopped by its group."""
    port = _free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(MLFLOW_TRACKING_URI=tracking_uri, **env),
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                continue


def _bodies(features: list[str]) -> dict[int, bytes]:
    """Request bodies of 1, 100 and 10,000 rows (the shipped rows, repeated), exact floats."""
    import pandas as pd

    frame = pd.read_csv(DATA)[features]
    out = {}
    for size in BATCHES:
        rows = pd.concat([frame] * (size // len(frame) + 1), ignore_index=True).head(size)
        split = {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}
        out[size] = json.dumps({"dataframe_split": split}).encode()
    return out


def measure(
    base: str, pid: int, log: Path, bodies: dict[int, bytes], requests: dict[int, int]
) -> dict:
    """Cold start, then latency per batch size, then the server's memory."""
    started = time.perf_counter()
    while not _post(base, bodies[1]):
        if time.perf_counter() - started > READY_TIMEOUT_S:
            raise SystemExit(f"server not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    result: dict = {"ready_s": time.perf_counter() - started, "latency_ms": {}}
    for size, body in bodies.items():
        for _ in range(WARMUP_REQUESTS):
            _post(base, body)
        times = []
        for _ in range(requests[size]):
            t0 = time.perf_counter()
            if not _post(base, body):
                raise SystemExit(f"a {size}-row request failed:\n{log.read_text()[-2000:]}")
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        result["latency_ms"][size] = (statistics.median(times), p99)
    result["rss_mib"], result["jvm"] = _tree_rss_and_java(pid)
    return result


def table(results: dict[str, dict]) -> list[str]:
    """The Markdown table the docs carry."""
    names = {"fast": "fast form", "spark": "Spark form", "sklearn": "scikit-learn"}
    rows = {"": [names[form] for form in results]}
    rows["cold start to first answer"] = [f"{r['ready_s']:.1f} s" for r in results.values()]
    for size in BATCHES:
        label = f"{size:,} row{'s' if size > 1 else ''}, p50 / p99"
        rows[label] = [
            f"{r['latency_ms'][size][0]:,.1f} / {r['latency_ms'][size][1]:,.1f} ms"
            for r in results.values()
        ]
    rows["JVM in the server"] = ["yes" if r["jvm"] else "none" for r in results.values()]
    rows["server memory (RSS, all processes)"] = [
        f"{r['rss_mib']:,.0f} MiB" for r in results.values()
    ]
    lines = [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()]
    lines.insert(1, "|---|" + "---|" * len(results))
    return lines


def run(requests_one_row: int = 300, forms: tuple[str, ...] = FORMS) -> list[str]:
    """Train, log the floor, serve each form in turn; the Markdown table."""
    import pandas as pd
    import yaml

    project = yaml.safe_load((ROOT / "MLproject").read_text())
    label = project["entry_points"]["train"]["parameters"]["label"]["default"]
    header = list(pd.read_csv(DATA, nrows=0).columns)
    features = [c for c in header if c != label]
    requests = {1: requests_one_row, 100: max(10, requests_one_row // 5), 10_000: 10}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        models = {"fast": train_template_model(uri)}
        models["spark"] = models["fast"]
        if "sklearn" in forms:
            models["sklearn"] = log_sklearn_model(uri, features, label)
        bodies = _bodies(features)
        results = {}
        for form in forms:
            extra = {"SPARKML_FAST_SERVING": "off"} if form == "spark" else {}
            log = Path(tmp) / f"serve-{form}.log"
            with serve(models[form], uri, log, **extra) as (base, pid):
                results[form] = measure(base, pid, log, bodies, requests)
            print(f"{form}: ready in {results[form]['ready_s']:.1f} s", file=sys.stderr)
    return table(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="one-row requests per form")
    parser.add_argument("--forms", default=",".join(FORMS), help="comma-separated subset")
    args = parser.parse_args(argv)
    forms = tuple(f for f in args.forms.split(",") if f in FORMS)
    print("\n".join(run(args.requests, forms)))


if __name__ == "__main__":
    main()
