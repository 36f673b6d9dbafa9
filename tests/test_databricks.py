"""Databricks: the generated variant, the cluster spec, the dispatch checks, and the whole
``-b databricks`` submission path against the loopback workspace emulator (tests/emulators)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import PROJECT_ROOT, subprocess_env
from emulators.databricks import MLFLOW_BACKEND_KEYS, Emulator, check_fields

from sparkml_template import dispatch
from sparkml_template.databricks_job import task_argv
from sparkml_template.errors import UserError
from sparkml_template.project import load_mlproject
from sparkml_template.variants import python_libraries, requirement_pins, stage_variant

TOKEN = "dapi-test-token"
CLUSTER_SPEC = PROJECT_ROOT / "databricks" / "cluster-spec.json"


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return stage_variant("databricks", tmp_path_factory.mktemp("databricks") / "project")


def test_variant_has_every_entry_point_and_parameter_of_the_root(staged):
    from mlflow.projects._project_spec import load_project

    root = load_project(str(PROJECT_ROOT))
    variant = load_project(str(staged))  # MLflow's own parser: also checks the section's rules
    assert variant.databricks_spark_job_spec is not None
    assert variant.env_type is None  # no conda_env: MLflow forbids it next to databricks_spark_job
    assert set(variant._entry_points) == set(root._entry_points)
    for name, entry in root._entry_points.items():
        theirs = variant._entry_points[name].parameters
        assert [(p.name, p.type, p.default) for p in theirs.values()] == [
            (p.name, p.type, p.default) for p in entry.parameters.values()
        ]


def test_python_libraries_are_the_runtime_pins_but_pyspark(staged):
    libraries = load_mlproject(staged / "MLproject")["databricks_spark_job"]["python_libraries"]
    pins = requirement_pins()
    assert libraries == python_libraries("databricks")
    assert libraries == [p for p in pins if not p.startswith("pyspark==")]
    assert any(p.startswith("pyspark==") for p in pins)  # the one left out, on purpose


def test_job_parameters_reach_the_entry_script_as_the_root_command_meant(staged):
    """MLflow quotes values, then splits the command on spaces; the job file must undo that."""
    from mlflow.projects._project_spec import load_project

    params = {"data": "dbfs:/my data/x.csv", "registeredModelName": "", "label": "it's"}
    root = load_project(str(PROJECT_ROOT)).get_entry_point("main")
    variant = load_project(str(staged)).get_entry_point("main")
    pieces = variant.compute_command(params, None).split(" ")  # as databricks.py does
    assert pieces[:2] == ["python", "sparkml_template/databricks_job.py"]
    assert task_argv(pieces[2:]) == shlex.split(root.compute_command(params, None))[1:]


def test_cluster_spec_is_a_valid_new_cluster_on_a_spark_4_runtime():
    from databricks.sdk.service.compute import ClusterSpec

    spec = json.loads(CLUSTER_SPEC.read_text())
    assert check_fields(ClusterSpec, spec, "spec") == []
    assert int(spec["spark_version"].split(".")[0]) >= 17  # DBR 17+ runs Spark 4
    dispatch.check_databricks_spec(spec, CLUSTER_SPEC)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"existing_cluster_id": "0101-abc", "spark_version": "17.3.x-scala2.13"}', "new cl"),
        ('{"new_cluster": {"spark_version": "17.3.x-scala2.13"}}', "wraps the cluster"),
        ('{"num_workers": 1}', "no spark_version"),
    ],
)
def test_bad_backend_config_is_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "spec.json"
    path.write_text(content)
    sub = dispatch.Submission("databricks", path, experiment_id="1")
    with pytest.raises(UserError, match=expected):
        dispatch.prepare(
            sub,
            env={"DATABRICKS_HOST": "http://127.0.0.1:1", "DATABRICKS_TOKEN": "x"},
        )


def test_mlflow_rejects_existing_cluster_id_too():
    from mlflow.exceptions import MlflowException
    from mlflow.projects.databricks import before_run_validations

    with pytest.raises(MlflowException, match="new cluster"):
        before_run_validations("databricks", {"existing_cluster_id": "0101-abc"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "no Databricks host and token"),
        ({"DATABRICKS_HOST": "https://x.cloud.databricks.com"}, "DATABRICKS_TOKEN is not"),
        ({"DATABRICKS_CONFIG_PROFILE": "nope"}, r"\[nope\] profile"),
        ({"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, "logs to its workspace"),
    ],
)
def test_missing_databricks_credentials_are_one_clear_line(tmp_path, env, expected):
    env = {"DATABRICKS_CONFIG_FILE": str(tmp_path / "none.cfg"), **env}
    sub = dispatch.Submission("databricks", CLUSTER_SPEC, experiment_id="1")
    with pytest.raises(UserError, match=expected):
        dispatch.prepare(sub, env=env)


def test_a_databrickscfg_profile_is_found(tmp_path):
    cfg = tmp_path / "databrickscfg"
    cfg.write_text("[work]\nhost = https://w.cloud.databricks.com\ntoken = dapi1\n")
    env = {"DATABRICKS_CONFIG_FILE": str(cfg)}
    assert dispatch.databricks_host("databricks://work", env) == "https://w.cloud.databricks.com"


def test_unreachable_host_is_one_clear_line():
    with socket_closed_port() as port, pytest.raises(UserError, match=rf"cannot reach .*:{port}"):
        dispatch.check_reachable(f"http://127.0.0.1:{port}")


class socket_closed_port:
    """A loopback port nothing listens on (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        pass


def test_dispatch_cli_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "spec.json"
    bad.write_text('{"existing_cluster_id": "0101-abc"}')
    out = subprocess.run(
        [sys.executable, "dispatch.py", "databricks", "--backend-config", str(bad)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("dispatch: error:")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "existing_cluster_id" in out.stderr


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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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


# --- the code on a Databricks cluster ----------------------------------------------------------


def test_on_databricks_the_active_session_is_reused_without_findspark(spark, monkeypatch):
    from sparkml_template.session import check_java, get_spark

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")  # the cluster's JVM runs already
    monkeypatch.setitem(sys.modules, "findspark", None)  # importing it would now fail
    check_java()
    assert get_spark("yarn", "ignored") is spark  # the cluster's session; master not applied


def test_dbfs_and_table_inputs_are_read_as_given(spark):
    from sparkml_template.data import read_source, resolve_source

    assert resolve_source("dbfs:/mnt/data/cancer.csv").format == "csv"
    assert resolve_source("dbfs:/mnt/data/cancer.csv").uri == "dbfs:/mnt/data/cancer.csv"
    spark.createDataFrame([(1.0, "a")], "x double, diagnosis string").createOrReplaceTempView(
        "cancer_view"
    )
    source = resolve_source("cancer_view")
    assert source.format == "table"
    assert read_source(spark, source).count() == 1
