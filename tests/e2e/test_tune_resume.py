"""A tune stopped halfway, by SIGTERM and by SIGKILL to the real `python tune.py` process once
some of its points have finished (seen in the tracking store), then completed with
`--resume <parent run id>`: the finished points are kept (the same child runs), the others are
searched again in the same parent, no point is searched twice to a finish, and every point's
metric, the best point and its metric are those of the same search run without a stop.

Each search has its own SQLite store (they run at the same time: the uninterrupted one in the
background while the stopped ones are stopped and resumed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import PROJECT_ROOT, Tracking, subprocess_env

from sparkml_template.workflows.tune import CV_METRIC
from sparkml_template.workflows.tune_points import PARENT_TAG, POINT_HASH_TAG

# Four points (regParam=1 with a pure L1 penalty scores far below the others), two folds each,
# one point at a time: the search is stopped between two points' finishes.
ARGV = (
    "--regParam", "0.0,1.0", "--elasticNetParam", "0.0,1.0", "--maxIter", "5",
    "--numFolds", "2", "--parallelism", "1", "--master", "local[2]",
)  # fmt: skip
POINTS = 4
TIMEOUT_S = 900  # a whole tune on a busy 2-core machine
pytestmark = pytest.mark.timeout(2400)  # three tunes, one of them in the background


def _command(*argv: str) -> list[str]:
    """`python tune.py …`: the real entry point, its own process (its PID is what is killed)."""
    return [sys.executable, str(PROJECT_ROOT / "tune.py"), *ARGV, *argv]


def _env(store: Tracking) -> dict[str, str]:
    return subprocess_env(
        MLFLOW_TRACKING_URI=store.uri,
        MLFLOW_EXPERIMENT_ID=store.experiment_id,
        SPARKML_SYSTEM_METRICS="off",
    )


def _store(root: Path) -> Tracking:
    root.mkdir(parents=True)
    uri = f"sqlite:///{root}/mlflow.db"
    experiment_id = mlflow.MlflowClient(uri).create_experiment(
        "tune", artifact_location=(root / "artifacts").as_uri()
    )
    return Tracking(uri, root / "artifacts", experiment_id)


def _start(store: Tracking, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            _command(*argv),
            env=_env(store),
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _runs(store: Tracking) -> tuple[list, list]:
    """(parents, children) of the store's experiment."""
    runs = store.client().search_runs([store.experiment_id], max_results=1000)
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    return parents, [r for r in runs if PARENT_TAG in r.data.tags]


def _finished(children: list) -> list:
    return [c for c in children if c.info.status == "FINISHED" and CV_METRIC in c.data.metrics]


def _outcome(store: Tracking, parent_id: str) -> dict:
    """What a completed search decided: best values and metric, every point's metric."""
    parent = store.client().get_run(parent_id)
    _, children = _runs(store)
    finished = _finished(children)
    return {
        "best": {k: v for k, v in parent.data.params.items() if k.startswith("best_")},
        "best_metric": parent.data.metrics[f"best_{CV_METRIC}"],
        "points": {c.data.tags[POINT_HASH_TAG]: c.data.metrics[CV_METRIC] for c in finished},
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same search with no stop, started in the background; waited for when first used."""
    root = tmp_path_factory.mktemp("tune-resume")
    store = _store(root / "uninterrupted")
    log = root / "uninterrupted.log"
    proc = _start(store, log)
    outcome: dict = {}

    def result() -> dict:
        if not outcome:
            code = proc.wait(timeout=TIMEOUT_S)
            assert code == 0, log.read_text()[-3000:]
            (parent,), _ = _runs(store)
            outcome.update(_outcome(store, parent.info.run_id))
        return outcome

    yield result
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_tune_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path, sig):
    store = _store(tmp_path / "stopped")
    log = tmp_path / "tune.log"
    proc = _start(store, log)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            _, children = _runs(store)
            if _finished(children):  # some points done: stop it by PID
                proc.send_signal(sig)
                break
            time.sleep(0.3)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    output = log.read_text()
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL), output[-3000:]
    (parent,), children = _runs(store)
    parent_id = parent.info.run_id
    kept = {c.info.run_id for c in _finished(children)}
    assert 1 <= len(kept) < POINTS, "the search was not stopped halfway"
    # SIGTERM ends the parent and the point under way KILLED; SIGKILL leaves both RUNNING
    expected = "KILLED" if sig == signal.SIGTERM else "RUNNING"
    assert parent.info.status == expected
    if sig == signal.SIGTERM:
        assert "tune: terminated (SIGTERM): the run ends KILLED" in output
        assert all(c.info.status in ("FINISHED", "KILLED") for c in children)

    resumed = subprocess.run(
        _command("--resume", parent_id),
        env=_env(store),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume: {len(kept)} of {POINTS} points already finished in run {parent_id}" in (
        resumed.stderr
    )
    parents, children = _runs(store)
    assert [p.info.run_id for p in parents] == [parent_id]  # the same parent, no new one
    final = store.client().get_run(parent_id)
    assert final.info.status == "FINISHED" and final.data.tags["tuning.resumes"] == "1"
    finished = _finished(children)
    hashes = [c.data.tags[POINT_HASH_TAG] for c in finished]
    assert len(hashes) == len(set(hashes)) == POINTS  # every point once, none twice
    assert kept <= {c.info.run_id for c in finished}  # the finished points were not re-run
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)  # no orphan left
    best_child = final.data.tags["tuning.best_child_run_id"]
    assert best_child in {c.info.run_id for c in finished}
    table = store.client().download_artifacts(parent_id, "tuning/results.json", str(tmp_path))
    assert len(json.loads(Path(table).read_text())["data"]) == POINTS
    assert "accuracy" in final.data.metrics  # the best model was refitted and logged

    assert _outcome(store, parent_id) == uninterrupted()
