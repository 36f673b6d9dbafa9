"""The Databricks Asset Bundle: generated from MLproject (committed files in step), parameters
1:1 with MLproject, each target's jobs valid for the typed resources of `databricks-bundles`, and
each target's variables resolved as the Databricks CLI resolves them (the CLI, a Go binary,
cannot be installed here)."""

from __future__ import annotations

import re

import pytest
import yaml
from databricks.bundles.jobs import Job

from sparkml_template.deploy.bundle import (
    BUNDLE_FILE,
    JOBS_FILE,
    RUNTIME,
    generated_files,
    job_key,
    merged_job,
)
from sparkml_template.deploy.variants import RUNTIME_PROVIDED, requirement_pins
from sparkml_template.runtime.params import load_mlproject

ROOT = load_mlproject()
BUNDLE = yaml.safe_load(BUNDLE_FILE.read_text())
JOBS = yaml.safe_load(JOBS_FILE.read_text())["resources"]["jobs"]


def test_committed_bundle_is_what_mlproject_generates():
    for path, text in generated_files().items():
        assert path.read_text() == text, (
            f"{path.name} is stale: python -m sparkml_template.deploy.bundle"
        )


@pytest.mark.parametrize("entry_point", list(ROOT["entry_points"]))
def test_job_parameters_are_the_mlproject_parameters(entry_point):
    entry = ROOT["entry_points"][entry_point]
    job = JOBS[job_key(entry_point)]
    defaults = {p["name"]: p["default"] for p in job["parameters"]}
    expected = {
        name: "" if spec.get("default") is None else str(spec["default"])
        for name, spec in entry["parameters"].items()
    }
    assert defaults == expected
    # The task's argv is the MLproject command with each {param} as a job parameter reference.
    (task,) = job["tasks"]
    python = task["spark_python_task"]
    command = " ".join(["python", python["python_file"].removeprefix("../"), *python["parameters"]])
    as_mlproject = re.sub(r"\{\{job\.parameters\.(\w+)\}\}", r"{\1}", command)
    assert as_mlproject == " ".join(entry["command"].split())


@pytest.mark.parametrize("target", ["dev", "serverless"])
def test_every_job_of_every_target_is_a_valid_bundle_job(target):
    for entry_point in ROOT["entry_points"]:
        job = merged_job(BUNDLE, JOBS, target, job_key(entry_point))
        typed = Job.from_dict(job)  # unknown fields, wrong types, missing required: errors
        (task,) = typed.tasks
        assert task.spark_python_task.python_file == f"../{entry_point}.py"
        if target == "dev":
            (cluster,) = typed.job_clusters
            assert cluster.new_cluster.spark_version == RUNTIME
            assert task.job_cluster_key == cluster.job_cluster_key
            installed = [lib.pypi.package for lib in task.libraries]
        else:
            (environment,) = typed.environments
            assert task.environment_key == environment.environment_key
            installed = environment.spec.dependencies
        provided = RUNTIME_PROVIDED["databricks"]
        pins = [p for p in requirement_pins() if p.split("==")[0] not in provided]
        assert installed == pins  # requirements.txt minus pyspark and its client (the runtime's)
        assert not any(p.startswith(("pyspark==", "grpcio==")) for p in installed)


def test_every_variable_used_is_declared():
    text = BUNDLE_FILE.read_text() + JOBS_FILE.read_text()
    used = set(re.findall(r"\$\{var\.(\w+)\}", text))
    assert used <= set(BUNDLE["variables"]), used - set(BUNDLE["variables"])
    assert BUNDLE["include"] == ["resources/*.yml"]


class MissingVariable(Exception):
    pass


def _cli_variables(target: str, given: dict[str, str]) -> dict[str, str]:
    """Variable values as `databricks bundle deploy -t <target> --var k=v ...` resolves them:
    a --var, else the target's own value (`targets.<t>.variables`, shorthand or `default:`),
    else the declared default. Like the CLI, every declared variable needs a value, used by
    the target or not, and a --var or target value must name a declared variable."""
    declared = BUNDLE["variables"]
    own = BUNDLE["targets"][target].get("variables", {})
    for name in [*given, *own]:
        if name not in declared:
            raise MissingVariable(f'variable "{name}" is not declared in the bundle')
    values = {}
    for name, spec in declared.items():
        mine = own.get(name)
        mine = mine.get("default") if isinstance(mine, dict) else mine
        candidates = (given.get(name), mine, spec.get("default"))
        value = next((v for v in candidates if v is not None), None)
        if value is None:
            raise MissingVariable(f'no value assigned to required variable "{name}"')
        values[name] = str(value)
    return values


def _deployed_jobs(target: str, values: dict[str, str]) -> dict[str, dict]:
    """The target's jobs with every `${var.X}` replaced; a reference left over fails."""
    jobs = {key: merged_job(BUNDLE, JOBS, target, key) for key in JOBS}
    text = re.sub(r"\$\{var\.(\w+)\}", lambda m: values[m.group(1)], yaml.safe_dump(jobs))
    assert "${var." not in text
    return yaml.safe_load(text)


def test_dev_deploys_with_no_variables_given():
    values = _cli_variables("dev", {})
    jobs = _deployed_jobs("dev", values)
    cluster = jobs[job_key("train")]["job_clusters"][0]["new_cluster"]
    assert cluster["node_type_id"] == BUNDLE["variables"]["node_type_id"]["default"]


def test_serverless_without_a_model_volume_is_the_cli_error_naming_it():
    with pytest.raises(MissingVariable, match='required variable "model_volume"'):
        _cli_variables("serverless", {})


def test_serverless_with_a_model_volume_writes_the_model_there():
    volume = "/Volumes/main/ml/models/tmp"
    jobs = _deployed_jobs("serverless", _cli_variables("serverless", {"model_volume": volume}))
    for job in jobs.values():
        (env,) = job["environment_variables"]
        assert env["spec"]["variables"]["MLFLOW_DFS_TMP"] == volume


def test_a_var_the_bundle_does_not_declare_is_refused():
    with pytest.raises(MissingVariable, match='"model_volum" is not declared'):
        _cli_variables("serverless", {"model_volum": "/Volumes/x"})
