"""Databricks end to end: the whole ``-b databricks`` submission path against the loopback
workspace emulator (tests/emulators), and the emulator's own contract."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import PROJECT_ROOT, subprocess_env
from emulators.databricks import MLFLOW_BACKEND_KEYS, Emulator
from servers import free_port

TOKEN = "dapi-test-token"
CLUSTER_SPEC = PROJECT_ROOT / "databricks" / "cluster-spec.json"


# --- the emulator's own contract ------------------------------------------------------------


@pytest.fixture
def bare_emulator(tmp_path):
    emulator = Emulator(tmp_path / "ws", TOKEN).start()
    yield emulator
    emulator.stop()


def _call(url: str, path: str, body: object, token: str = TOKEN) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_emulator_refuses_a_wrong_token(bare_emulator):
    status, body = _call(bare_emulator.url, "/api/2.0/jobs/runs/submit", {}, token="wrong")
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"new_cluster": {"spark_version": "17.3.x-scala2.13", "num_wrkers": 1}}, "unknown"),
        ({"new_cluster": {"spark_version": "17.3.x", "num_workers": "1"}}, "expected int"),
        ({"spark_python_task": {"parameters": []}}, "python_file: required"),
        ({"libraries": [{"pypi": {"package": 3}}]}, "expected str"),
        ({"new_cluster": {"num_workers": 0, "node_type_id": "i3.xlarge"}}, "spark_version"),
    ],
)
def test_emulator_validates_submitted_json_strictly(bare_emulator, change, expected):
    body = {
        "run_name": "r",
        "new_cluster": json.loads(CLUSTER_SPEC.read_text()),
        "libraries": [],
        "spark_python_task": {"python_file": "dbfs:/x.py", "parameters": []},
        **change,
    }
    status, answer = _call(bare_emulator.url, "/api/2.0/jobs/runs/submit", body)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert expected in answer["message"]


# --- the whole submission path ---------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A real `mlflow server` on loopback behind the emulated workspace, and one experiment whose
    artifacts the emulated cluster writes straight to a local folder (as a cluster writes DBFS)."""
    import mlflow

    root = tmp_path_factory.mktemp("workspace")
    server = _start_mlflow_server(root)
    try:
        emulator = Emulator(root / "ws", TOKEN, tracking=server.url).start()
        client = mlflow.MlflowClient(server.url)
        experiment_id = client.create_experiment(
            "/Users/test/pyspark-template", artifact_location=(root / "artifacts").as_uri()
        )
        yield emulator, client, experiment_id
        emulator.stop()
    finally:
        server.stop()


class _Server:
    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url

    def stop(self) -> None:
        if self.process.poll() is None:
            import os

            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def _start_mlflow_server(root: Path) -> _Server:
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 -- kept open for the server's life
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--default-artifact-root",
            (root / "default-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
        start_new_session=True,
    )
    server = _Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(1)
    server.stop()
    raise RuntimeError("mlflow server did not answer /health within 180 s")


def _dispatch(emulator: Emulator, experiment_id: str, *args: str) -> subprocess.Popen:
    env = subprocess_env(DATABRICKS_HOST=emulator.url, DATABRICKS_TOKEN=TOKEN)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "DATABRICKS_CONFIG_PROFILE"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "dispatch.py", "databricks", "--experiment-id", experiment_id, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
    )


@pytest.mark.cli
def test_databricks_submission_runs_the_job_and_reports_its_states(workspace):
    """One good and one bad submission, at once (MLflow polls a Databricks run every 30 s)."""
    emulator, client, experiment_id = workspace
    ws = emulator.workspace
    bad = _dispatch(emulator, experiment_id, "-P", "maxIter=many")
    # The second starts once the first submitted: both upload the same project tarball.
    deadline = time.monotonic() + 300
    while not ws.runs and bad.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    good = _dispatch(emulator, experiment_id, "-P", "maxIter=20")
    _, good_err = good.communicate(timeout=600)
    _, bad_err = bad.communicate(timeout=600)

    assert good.returncode == 0, good_err[-3000:]
    runs = {r.data.params.get("maxIter"): r for r in client.search_runs([experiment_id])}
    run = runs["20"]
    rid = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["maxIter"] == "20"
    assert run.data.metrics["accuracy"] > 0.8
    assert run.data.tags["mlflow.project.backend"] == "databricks"
    # The session is the cluster's (its conf), not one the template built from `master`.
    assert run.data.tags["spark.master"] == "local[2]"
    # The model the cluster logged (an MLflow 3 logged model, written where a cluster writes).
    models = [m for m in client.search_logged_models([experiment_id]) if m.source_run_id == rid]
    assert [m.name for m in models] == ["model"]
    assert (Path(urlparse(models[0].artifact_location).path) / "MLmodel").is_file()

    assert bad.returncode == 2, bad_err[-3000:]
    assert bad_err.strip().splitlines()[-1].startswith("dispatch: error: databricks run failed")
    assert "maxIter must be a whole number" in bad_err.strip().splitlines()[-1]
    assert runs["many"].info.status == "FAILED"

    states = {r.run_id: r for r in ws.runs.values()}
    assert sorted((r.life_cycle_state, r.result_state) for r in states.values()) == [
        ("TERMINATED", "FAILED"),
        ("TERMINATED", "SUCCESS"),
    ]
    for job in states.values():
        assert job.reported[0].split("/")[0] in ("PENDING", "RUNNING")  # seen before the end
        assert job.reported[-1].startswith("TERMINATED/")
        assert set(job.ignored_fields) == MLFLOW_BACKEND_KEYS  # MLflow's own, sent along
    called = {(m, p) for m, p, _ in ws.requests if not p.startswith("/dbfs/")}
    assert {
        ("GET", "/api/2.0/dbfs/get-status"),
        ("POST", "/api/2.0/jobs/runs/submit"),
        ("GET", "/api/2.0/jobs/runs/get"),
        ("POST", "/api/2.0/mlflow/runs/create"),
    } <= called
    assert any(m == "POST" and p.startswith("/dbfs/mlflow-experiments/") for m, p, _ in ws.requests)
    assert ws.unhandled == []


# --- the Asset Bundle's jobs ----------------------------------------------------------------


def _bundle_submit_body(job: dict, variables: dict[str, str], overrides: dict[str, str]) -> dict:
    """What running bundle job ``job`` submits, as one Jobs API 2.0 run: its job cluster, its
    task's libraries, and the task's argv with the job parameters filled in.

    Two stand-ins for what the bundle's deploy does in a workspace: the entry script is uploaded
    to DBFS, and the synced project is on PYTHONPATH (a workspace script's own folder is).
    """
    import re

    from databricks.sdk.service import jobs as sdk_jobs

    text = json.dumps(job)
    for name, value in variables.items():  # "var.experiment_name", "bundle.name"
        text = text.replace(f"${{{name}}}", value)
    job = json.loads(text)
    (cluster,) = job["job_clusters"]
    (task,) = job["tasks"]
    params = {p["name"]: p["default"] for p in job["parameters"]} | overrides
    python = task["spark_python_task"]
    argv = [
        re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: params[m.group(1)], arg)
        for arg in python["parameters"]
    ]
    new_cluster = dict(cluster["new_cluster"])
    new_cluster["spark_env_vars"] = {
        **new_cluster.get("spark_env_vars", {}),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    script = python["python_file"].removeprefix("../")
    submit = sdk_jobs.SubmitTask.from_dict(
        {
            "task_key": task["task_key"],
            "new_cluster": new_cluster,
            "libraries": task["libraries"],
            "spark_python_task": {"python_file": f"dbfs:/bundle/{script}", "parameters": argv},
        }
    ).as_dict()
    submit.pop("task_key")  # Jobs API 2.0: one task, no key
    return {"run_name": job["name"], **submit}


@pytest.mark.cli
def test_bundle_train_job_runs_on_the_emulated_workspace(workspace):
    """The dev target's train job, as the bundle defines it, with `--params regParam=0.1`."""
    import yaml
    from databricks.sdk import WorkspaceClient

    from sparkml_template.deploy.bundle import BUNDLE_FILE, JOBS_FILE, job_key, merged_job

    emulator, client, experiment_id = workspace
    spec = yaml.safe_load(BUNDLE_FILE.read_text())
    jobs = yaml.safe_load(JOBS_FILE.read_text())["resources"]["jobs"]
    job = merged_job(spec, jobs, "dev", job_key("train"))
    variables = {
        "var.experiment_name": client.get_experiment(experiment_id).name,
        "var.node_type_id": spec["variables"]["node_type_id"]["default"],
        "bundle.name": spec["bundle"]["name"],
    }
    overrides = {"regParam": "0.1", "data": str(PROJECT_ROOT / "data" / "breast_cancer.csv")}
    body = _bundle_submit_body(job, variables, overrides)
    assert "${" not in json.dumps(body)

    api = WorkspaceClient(host=emulator.url, token=TOKEN).api_client
    script = PROJECT_ROOT / "train.py"
    api.do("POST", "/dbfs/bundle/train.py", data=script.read_bytes())
    run_id = api.do("POST", "/api/2.0/jobs/runs/submit", body=body)["run_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = api.do("GET", "/api/2.0/jobs/runs/get", query={"run_id": run_id})["state"]
        if state["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
            break
        time.sleep(2)
    log = emulator.workspace.get_run(run_id).log_path.read_text(errors="replace")
    assert state.get("result_state") == "SUCCESS", log[-3000:]

    runs = client.search_runs([experiment_id], filter_string="params.regParam = '0.1'")
    assert len(runs) == 1, log[-3000:]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["regParam"] == "0.1"
    assert run.data.params["maxIter"] == "100"  # the MLproject default, through the bundle
    assert run.data.tags["spark.master"] == "local[2]"  # the cluster's session
    models = client.search_logged_models([experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)
