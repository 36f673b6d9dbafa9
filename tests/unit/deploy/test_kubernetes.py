"""Kubernetes: the generated docker_env variant, the Job template and the Job MLflow's own code
makes from it (validated against the Kubernetes schema), the dispatch checks, and, where a
Docker engine runs, the image built from the Dockerfile running an entry point.

No Kubernetes API server runs here: creating the Job and watching it are not tested."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import PROJECT_ROOT, only_run

from sparkml_template.deploy import dispatch
from sparkml_template.deploy.variants import stage_variant
from sparkml_template.errors import UserError

K8S_VERSION = "1.33"
TEMPLATE = PROJECT_ROOT / "kubernetes" / "job-template.yaml"
CONFIG = PROJECT_ROOT / "kubernetes" / "kubernetes_config.json"
IMAGE = "registry.example.com/ml/pyspark-mlflow-template-env:1.0"
DOCKER_BUILD = ("docker", "build", "--network", "host")
DOCKER_RUN = ("docker", "run", "--rm", "--network", "host")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return stage_variant("kubernetes", tmp_path_factory.mktemp("k8s") / "project", image=IMAGE)


def _template() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def test_variant_has_the_root_entry_points_and_a_docker_env(staged):
    from mlflow.projects._project_spec import load_project
    from mlflow.projects.env_type import DOCKER

    root = load_project(str(PROJECT_ROOT))
    variant = load_project(str(staged))
    assert variant.env_type == DOCKER
    assert variant.docker_env == {"image": IMAGE}
    for name, entry in root._entry_points.items():
        theirs = variant.get_entry_point(name)
        params = {p: "x y" for p, spec in entry.parameters.items() if spec.default is None}
        params.update({"data": "s3a://bucket/my data.csv", "registeredModelName": ""})
        assert [(p.name, p.type, p.default) for p in theirs.parameters.values()] == [
            (p.name, p.type, p.default) for p in entry.parameters.values()
        ]
        assert theirs.compute_command(params, None) == entry.compute_command(params, None)
    assert (staged / "train.py").is_file() and (staged / "sparkml_template").is_dir()
    assert not (staged / ".venv").exists()


def test_job_template_is_a_valid_job_with_the_promised_fields():
    template = _template()
    kubernetes_validate.validate(template, K8S_VERSION, strict=True)
    spec = template["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert template["metadata"]["namespace"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] > 0
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The tracking URI is the submitter's (MLflow appends it), never written into the template.
    assert "MLFLOW_TRACKING_URI" not in {e["name"] for e in container.get("env", [])}


def test_schema_validation_catches_a_broken_job():
    broken = _template()
    broken["spec"]["backoffLimit"] = "none"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_job_mlflow_generates_is_valid(staged, monkeypatch):
    """MLflow's own code fills the template in; the result must still be a valid Job."""
    from mlflow.projects import kubernetes as kb
    from mlflow.projects._project_spec import load_project
    from mlflow.projects.utils import get_entry_point_command, get_run_env_vars

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    project = load_project(str(staged))
    params = {"maxIter": "50", "data": "s3a://bucket/my data.csv"}
    command = get_entry_point_command(project, "main", params, None)
    job = kb._get_kubernetes_job_definition(
        project.name,
        IMAGE,
        "sha256:" + "0" * 64,
        kb._get_run_command(command),
        get_run_env_vars(run_id="a" * 32, experiment_id="7"),
        _template(),
    )
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    assert (env["MLFLOW_RUN_ID"], env["MLFLOW_EXPERIMENT_ID"]) == ("a" * 32, "7")
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"  # the template's own entries are kept
    assert DNS_LABEL.match(container["name"]) and len(job["metadata"]["name"]) <= 63
    assert [shlex.split(part)[0] for part in container["command"]][:2] == ["python", "main.py"]
    assert "s3a://bucket/my data.csv" in shlex.split(" ".join(container["command"]))


def test_kubernetes_config_is_accepted_by_mlflow(monkeypatch):
    from mlflow.projects import _parse_kubernetes_config

    monkeypatch.chdir(PROJECT_ROOT)  # MLflow reads the template path from the working directory
    parsed = _parse_kubernetes_config(json.loads(CONFIG.read_text()))
    assert parsed["kube-job-template"]["kind"] == "Job"
    assert parsed["repository-uri"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{'single': 'quotes'}", "is not valid JSON"),
        ('{"kube-job-template-path": "kubernetes/job-template.yaml"}', "lacks repository-uri"),
        ('{"repository-uri": "r/x", "kube-job-template-path": "nope.yaml"}', "not found"),
    ],
)
def test_bad_kubernetes_config_is_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "config.json"
    path.write_text(content)
    env = {"MLFLOW_TRACKING_URI": "http://mlflow.example.com"}
    with pytest.raises(UserError, match=expected):
        dispatch.prepare(dispatch.Submission("kubernetes", path), env=env)


def test_a_local_tracking_store_is_refused_for_kubernetes():
    with pytest.raises(UserError, match="local to this machine"):
        dispatch.kubernetes_tracking_uri({"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    assert dispatch.kubernetes_tracking_uri({"MLFLOW_TRACKING_URI": "https://m"}) == "https://m"


def test_submission_without_a_docker_engine_fails_cleanly(tracking, monkeypatch, tmp_path):
    """MLflow creates the run, then finds no engine: one line, and the run ends FAILED."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    sub = dispatch.Submission(
        "kubernetes", CONFIG, params={"maxIter": "5"}, experiment_id=tracking.experiment_id
    )
    monkeypatch.chdir(PROJECT_ROOT)
    with pytest.raises(UserError, match="kubernetes run failed") as err:
        dispatch.submit(sub)
    assert "\n" not in str(err.value)
    run = only_run(tracking)
    assert run.info.status == "FAILED"
    assert run.data.tags["mlflow.project.backend"] == "kubernetes"


# --- the image, where a Docker engine runs ---------------------------------------------------


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if info.returncode != 0:
        return "no Docker engine is running (`docker info` failed)"
    base = os.environ.get("SPARKML_TEMPLATE_BASE_IMAGE", "python:3.11-slim-bookworm")
    found = subprocess.run(["docker", "image", "inspect", base], capture_output=True, timeout=30)
    if found.returncode != 0:
        return f"base image {base} is not available locally (set SPARKML_TEMPLATE_BASE_IMAGE)"
    return None


@pytest.mark.docker
def test_image_builds_and_runs_an_entry_point(staged, tmp_path):
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)
    from mlflow.projects._project_spec import load_project
    from mlflow.projects.utils import get_entry_point_command
    from mlflow.tracking import MlflowClient

    base = os.environ.get("SPARKML_TEMPLATE_BASE_IMAGE", "python:3.11-slim-bookworm")
    env_image = "pyspark-mlflow-template-env:test"
    build = subprocess.run(
        [*DOCKER_BUILD, "--build-arg", f"BASE_IMAGE={base}", "-t", env_image, str(PROJECT_ROOT)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    # The project image, as MLflow's kubernetes backend builds it: FROM the env image + the code.
    project_dir = stage_variant("kubernetes", tmp_path / "project", image=env_image)
    (project_dir / "Dockerfile").write_text(
        f"FROM {env_image}\nCOPY . /mlflow/projects/code\nWORKDIR /mlflow/projects/code\n"
    )
    project_image = "pyspark-mlflow-template:test"
    subprocess.run(
        [*DOCKER_BUILD, "-t", project_image, str(project_dir)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    store = tmp_path / "store"
    store.mkdir(mode=0o777)
    store.chmod(0o777)  # the container runs as uid 1000
    uri = "sqlite:////store/mlflow.db"
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment_id = client.create_experiment("k8s", artifact_location="file:///store/artifacts")
    for path in store.iterdir():
        path.chmod(0o666)  # the SQLite file this process made, for the container's uid 1000
    project = load_project(str(project_dir))
    (command,) = get_entry_point_command(project, "train", {"maxIter": "5"}, None)
    env = ["-e", f"MLFLOW_TRACKING_URI={uri}", "-e", f"MLFLOW_EXPERIMENT_ID={experiment_id}"]
    run = subprocess.run(
        [*DOCKER_RUN, "-v", f"{store}:/store", *env, project_image, "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (result,) = MlflowClient(f"sqlite:///{store}/mlflow.db").search_runs([experiment_id])
    assert result.info.status == "FINISHED"
    assert result.data.tags["java.version"].startswith("17")
    assert result.data.tags["python.version"].startswith("3.11.")
