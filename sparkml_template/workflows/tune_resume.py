"""``tune -P resume=<parent run id>``: finish a stopped search in the same parent run.

The parent records what its search was (``SEARCH_TAG``: the grid and every setting that changes
a point's metric; ``DIGEST_TAG``: the data's content digest) before its first point. A resume is
refused in one line, before Spark starts, unless the run is a tune parent of this experiment that
did not finish, searched the same data with the same settings, and no live process on this host
is still searching it. The points whose child run FINISHED with its metric and the same parameter
hash are then kept; the others (failed, killed, or left RUNNING by a process that died) are
searched again, in the same parent. Like Optuna's study in an RDB storage, the tracking store is
the only state: nothing else is written to disk.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkml_template.errors import UserError
from sparkml_template.workflows.tune_points import PARENT_TAG, POINT_HASH_TAG, GridPoint

if TYPE_CHECKING:
    from mlflow.entities import Run

SEARCH_TAG = "tuning.search"  # JSON: the grid and the settings a point's metric depends on
DIGEST_TAG = "tuning.data.digest"  # the data's content digest ("" for tables, remote data)
PROCESS_TAG = "tuning.process"  # host:pid of the process searching, while it runs
RESUMES_TAG = "tuning.resumes"  # how many times the search was resumed
RESUMED_IN_TAG = "tuning.resumed_in"  # on a launcher run of `mlflow run`: the parent it resumed
# The settings besides the hyper-parameters that change what a point scores.
SEARCH_SETTINGS = (
    "estimator",
    "label",
    "task",
    "features",
    "excludeColumns",
    "testFraction",
    "seed",
    "numFolds",
)


def search_identity(
    params: Mapping[str, Any], grid: Mapping[str, list[Any]], fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """What a search is, for comparing a resume with it: settings, fixed values and grid."""
    return {
        "settings": {name: params[name] for name in SEARCH_SETTINGS},
        "fixed": dict(sorted(fixed.items())),
        "grid": {name: list(values) for name, values in grid.items()},
    }


def this_experiment() -> str | None:
    """The experiment a run started now would go to (``mlflow run``'s, the environment's, or
    MLflow's default); None when a named experiment does not exist yet."""
    from mlflow.tracking import MlflowClient

    launcher = os.environ.get("MLFLOW_RUN_ID")
    if launcher:
        return MlflowClient().get_run(launcher).info.experiment_id
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        experiment = MlflowClient().get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
        return None if experiment is None else experiment.experiment_id
    return "0"  # MLflow's Default experiment


@dataclass(frozen=True)
class ResumeCheck:
    """The parent a resume continues, as found before Spark starts."""

    run_id: str
    experiment_id: str
    resumes: int  # resumes before this one


def check_resumable(run_id: str, identity: dict[str, Any], digest: str | None) -> ResumeCheck:
    """The parent ``run_id`` if this tune may continue it; else one line (exit 2)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        raise UserError(f"resume: no run {run_id!r} in the tracking store") from None
    tags = run.data.tags
    experiment = this_experiment()
    if run.info.experiment_id != experiment:
        raise UserError(
            f"resume: run {run_id} is in experiment {run.info.experiment_id}, not this one "
            f"({experiment}): set MLFLOW_EXPERIMENT_ID={run.info.experiment_id} to resume it"
        )
    if SEARCH_TAG not in tags or PARENT_TAG in tags:
        raise UserError(f"resume: run {run_id} is not a tune search (no {SEARCH_TAG} tag)")
    if run.info.lifecycle_stage != "active":
        raise UserError(f"resume: run {run_id} is deleted")
    if run.info.status == "FINISHED":
        raise UserError(f"resume: run {run_id} finished its search; nothing to resume")
    _refuse_live_process(run_id, run.info.status, tags.get(PROCESS_TAG, ""))
    logged = json.loads(tags[SEARCH_TAG])
    if (tags.get(DIGEST_TAG) or None) != digest:
        raise UserError(
            f"resume: run {run_id} searched other data (content digest "
            f"{tags.get(DIGEST_TAG) or 'none'}, this data's is {digest or 'none'}): "
            "resume with the same data, or start a new tune"
        )
    for part in ("grid", "fixed", "settings"):
        if logged.get(part) != identity[part]:
            raise UserError(
                f"resume: run {run_id} searched a different {part} "
                f"({_differences(logged.get(part) or {}, identity[part])}): resume with the "
                "same parameters, or start a new tune"
            )
    return ResumeCheck(run_id, run.info.experiment_id, int(tags.get(RESUMES_TAG, "0")))


def _differences(logged: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    names = sorted(set(logged) | set(given), key=str)
    return ", ".join(
        f"{n}: {logged.get(n)!r} there, {given.get(n)!r} here"
        for n in names
        if logged.get(n) != given.get(n)
    )


def _refuse_live_process(run_id: str, status: str, process: str) -> None:
    """A search still running in another live process on this host cannot be resumed."""
    host, _, pid = process.rpartition(":")
    if status != "RUNNING" or host != socket.gethostname() or not pid.isdigit():
        return
    if int(pid) == os.getpid():
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            alive = b"tune" in f.read()
    except OSError:
        alive = False
    if alive:
        raise UserError(
            f"resume: run {run_id} is still being searched by process {pid} on this host: "
            "stop it first (a resume re-runs the points it had not finished)"
        )


def process_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def finished_children(
    experiment_id: str, parent_id: str, points: list[GridPoint], metric: str
) -> tuple[dict[int, Run], list[Run]]:
    """The children of ``parent_id`` that count (FINISHED, with ``metric``, hash of a point of
    this grid; the first such per point), and the ones left RUNNING by a process that died."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    by_hash = {p.digest: p.index for p in points}
    done: dict[int, Run] = {}
    orphans: list[Run] = []
    client, token = MlflowClient(), None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        for child in page:
            index = by_hash.get(child.data.tags.get(POINT_HASH_TAG, ""))
            complete = child.info.status == "FINISHED" and metric in child.data.metrics
            if complete and index is not None and index not in done:
                done[index] = child
            elif child.info.status == "RUNNING":
                orphans.append(child)
        token = page.token
        if not token:
            return done, orphans
