"""The Databricks Asset Bundle: generated from MLproject (committed files in step), parameters
1:1 with MLproject, and each target's jobs valid for the typed resources of `databricks-bundles`
(the Databricks CLI, a Go binary, cannot be installed here)."""

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
