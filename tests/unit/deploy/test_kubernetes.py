"""Kubernetes: the generated docker_env variant, the Job template and the Job MLflow's own code
makes from it (validated against the Kubernetes schema), the dispatch checks, and the CI a
template user gets (the GitHub workflow through actionlint, the pre-commit configuration).

The image built and run, `docker_env` and `mlflow run -b kubernetes` against a registry and an
emulated API server: tests/e2e/test_kubernetes_job.py."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import PROJECT_ROOT, VENV_BIN, only_run

from sparkml_template.deploy import dispatch
from sparkml_template.deploy.kube_argv import unquote
from sparkml_template.deploy.variants import KUBERNETES_ARGV as KUBE_ARGV
from sparkml_template.deploy.variants import stage_variant
from sparkml_template.errors import UserError

K8S_VERSION = "1.33"
TEMPLATE = PROJECT_ROOT / "kubernetes" / "job-template.yaml"
CONFIG = PROJECT_ROOT / "kubernetes" / "kubernetes_config.json"
IMAGE = "registry.example.com/ml/pyspark-mlflow-template-env:1.0"
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
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
        ours = entry.compute_command(params, None).replace("python ", f"python {KUBE_ARGV} ", 1)
        assert theirs.compute_command(params, None) == ours
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
    assert container["command"][:3] == ["python", KUBE_ARGV, "main.py"]
    # MLflow leaves each value shell-quoted in the argv a runtime execs without a shell:
    assert "'s3a://bucket/my data.csv'" in container["command"]


def test_the_pod_argv_reaches_the_script_as_the_root_command_means_it(staged, tmp_path):
    """kube_argv undoes MLflow's quoting: a script run through it in a pod gets the argv the
    root MLproject's command line means (empty values, ``local[*]``, spaces, quotes)."""
    from mlflow.projects import kubernetes as kb
    from mlflow.projects._project_spec import load_project
    from mlflow.projects.utils import get_entry_point_command

    params = {"data": "s3a://bucket/my data.csv", "label": "it's", "master": "local[*]"}
    project = load_project(str(staged))
    pod_argv = kb._get_run_command(get_entry_point_command(project, "main", params, None))
    root_line = get_entry_point_command(load_project(str(PROJECT_ROOT)), "main", params, None)
    echo = tmp_path / "main.py"
    echo.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    argv = [a.replace("main.py", str(echo)) if a == "main.py" else a for a in pod_argv]
    done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, cwd=staged)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == shlex.split(root_line[0])[2:]
    assert "" in json.loads(done.stdout) and "local[*]" in json.loads(done.stdout)


@pytest.mark.parametrize("value", ["", "local[*]", "a b", "it's", "plain", "'quoted'", "$HOME"])
def test_kube_argv_unquote_inverts_shlex_quote_only(value):
    assert unquote(shlex.quote(value)) == value
    if value != "'quoted'":  # the one value that is itself a quoted form
        assert unquote(value) == value  # an argv a shell already unquoted is left alone


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


# --- the CI a template user gets ------------------------------------------------------------


def test_the_github_workflow_passes_actionlint():
    """actionlint (pinned in requirements-dev.txt) on .github/workflows: syntax, expressions,
    action inputs, job graph; the workflow runs the suite and builds the image."""
    workflows = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    lint = subprocess.run(
        [str(VENV_BIN / "actionlint"), "-no-color", *map(str, workflows)],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    steps = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert ".ci/run" in steps
    assert any("docker build" in step.get("run", "") for step in jobs["image"]["steps"])


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = WORKFLOW.read_text().replace("runs-on: ubuntu-24.04", "runs-on: ${{ matrix.os }}", 1)
    (tmp_path / "ci.yml").write_text(broken)
    lint = subprocess.run(
        [str(VENV_BIN / "actionlint"), "-no-color", str(tmp_path / "ci.yml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert lint.returncode == 1 and "matrix" in lint.stdout


def test_pre_commit_config_is_valid_and_uses_the_venv_tools():
    """pre-commit's own validation; every hook runs a tool the venv has (no download)."""
    config = PROJECT_ROOT / ".pre-commit-config.yaml"
    check = subprocess.run(
        [str(VENV_BIN / "pre-commit"), "validate-config", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    hooks = {h["id"]: h for r in yaml.safe_load(config.read_text())["repos"] for h in r["hooks"]}
    assert {"ruff-check", "ruff-format", "lint-imports"} <= set(hooks)
    for hook in hooks.values():
        assert hook["language"] == "system"
        tool = hook["entry"].split()[0]
        assert tool.startswith(".venv/bin/") and (VENV_BIN / Path(tool).name).exists(), tool
