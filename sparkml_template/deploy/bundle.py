"""The Databricks Asset Bundle (``databricks.yml`` + ``resources/``), generated from MLproject.

One job per entry point, each a single ``spark_python_task`` on the entry point's root script.
Its job parameters are the entry point's MLproject parameters with the same names and defaults,
and the task passes them on exactly as the MLproject command does (``--regParam
{{job.parameters.regParam}}``). Two targets: ``dev`` (a job cluster on runtime 17.3 LTS, the
pins of requirements.txt as libraries) and ``serverless`` (an environment with those pins as
dependencies). Neither installs pyspark or its Connect client libraries: Databricks provides its
own.

The files are committed so that ``databricks bundle deploy`` works from a clone; regenerate them
with ``python -m sparkml_template.deploy.bundle`` after changing MLproject (a test checks).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from sparkml_template import PROJECT_ROOT
from sparkml_template.deploy.variants import REQUIREMENTS, python_libraries
from sparkml_template.runtime.params import MLPROJECT, load_mlproject

BUNDLE_FILE = PROJECT_ROOT / "databricks.yml"
JOBS_FILE = PROJECT_ROOT / "resources" / "jobs.yml"
RUNTIME = "17.3.x-scala2.13"  # Spark 4.0 LTS
SERVERLESS_ENVIRONMENT = "4"  # the first serverless environment with pyspark.ml support
CLUSTER_KEY = "job_cluster"
ENVIRONMENT_KEY = "default"
_COMMAND = re.compile(r"^python\s+(\S+\.py)\s*(.*)$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
HEADER = (
    "# Generated from MLproject by sparkml_template/deploy/bundle.py; do not edit by hand:\n"
    "# change MLproject (or bundle.py) and run `python -m sparkml_template.deploy.bundle`.\n"
)


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def job_key(entry_point: str) -> str:
    return f"sparkml_{entry_point}"


def _default_text(spec: dict[str, Any]) -> str:
    """A job parameter's default is a string; MLproject's float/int defaults as MLflow prints
    them (an entry point without a default gets ``""`` and the script refuses it)."""
    default = spec.get("default")
    return "" if default is None else str(default)


def task_parameters(command: str) -> tuple[str, list[str]]:
    """The script and its argv with ``{param}`` as ``{{job.parameters.param}}``."""
    match = _COMMAND.match(" ".join(command.split()))
    if not match:
        raise ValueError(f"command {command!r} does not run `python <file>.py`")
    script, rest = match.groups()
    args = [_PLACEHOLDER.sub(r"{{job.parameters.\1}}", arg) for arg in rest.split()]
    return script, args


def jobs_resources(root: dict[str, Any]) -> dict[str, Any]:
    """``resources/jobs.yml``: one job per entry point, compute left to the targets."""
    jobs = {}
    for name, entry in root["entry_points"].items():
        script, args = task_parameters(str(entry["command"]))
        params = entry.get("parameters") or {}
        jobs[job_key(name)] = {
            "name": f"${{bundle.name}}-{name}",
            "description": f"The {name} entry point of MLproject ({script}).",
            "parameters": [{"name": p, "default": _default_text(s)} for p, s in params.items()],
            "tasks": [
                {
                    "task_key": name,
                    "spark_python_task": {"python_file": f"../{script}", "parameters": args},
                }
            ],
        }
    return {"resources": {"jobs": jobs}}


def _target_jobs(root: dict[str, Any], task_extra: dict[str, Any], job_extra: dict[str, Any]):
    return {
        job_key(name): {**job_extra, "tasks": [{"task_key": name, **task_extra}]}
        for name in root["entry_points"]
    }


def bundle(root: dict[str, Any], requirements: Path = REQUIREMENTS) -> dict[str, Any]:
    """``databricks.yml``: the bundle, its variables, and the ``dev`` and ``serverless`` targets."""
    libraries = [{"pypi": {"package": pin}} for pin in python_libraries("databricks", requirements)]
    dependencies = python_libraries("databricks", requirements)
    experiment_env = {"MLFLOW_EXPERIMENT_NAME": "${var.experiment_name}"}
    cluster = {
        "job_cluster_key": CLUSTER_KEY,
        "new_cluster": {
            "spark_version": RUNTIME,
            "node_type_id": "${var.node_type_id}",
            "num_workers": 1,
            "data_security_mode": "SINGLE_USER",
            "spark_env_vars": experiment_env,
        },
    }
    environment = {
        "environment_key": ENVIRONMENT_KEY,
        "spec": {"environment_version": SERVERLESS_ENVIRONMENT, "dependencies": dependencies},
    }
    serverless_env = {
        "environment_variables_key": ENVIRONMENT_KEY,
        "spec": {"variables": {**experiment_env, "MLFLOW_DFS_TMP": "${var.model_volume}"}},
    }
    return {
        "bundle": {"name": root["name"]},
        "include": ["resources/*.yml"],
        "variables": {
            "experiment_name": {
                "description": "MLflow experiment the runs log to (a workspace path).",
                "default": "/Workspace/Users/${workspace.current_user.userName}/${bundle.name}",
            },
            "node_type_id": {
                "description": "Node type of the dev target's job cluster.",
                "default": "i3.xlarge",
            },
            # No default: `bundle deploy -t serverless` without `--var model_volume=...` stops
            # in the CLI ("no value assigned to required variable"), not in a run on serverless.
            "model_volume": {
                "description": "Unity Catalog volume path where serverless writes the model "
                "(MLFLOW_DFS_TMP), e.g. /Volumes/main/default/models/tmp; required by the "
                "serverless target (--var model_volume=...), unused by dev.",
            },
        },
        "targets": {
            "dev": {
                "mode": "development",
                "default": True,
                # The CLI wants a value for every declared variable; dev's cluster JVM writes
                # the model itself and never reads this one.
                "variables": {"model_volume": ""},
                "resources": {
                    "jobs": _target_jobs(
                        root,
                        {"job_cluster_key": CLUSTER_KEY, "libraries": libraries},
                        {"job_clusters": [cluster]},
                    )
                },
            },
            "serverless": {
                "mode": "development",
                "resources": {
                    "jobs": _target_jobs(
                        root,
                        {
                            "environment_key": ENVIRONMENT_KEY,
                            "environment_variables_key": ENVIRONMENT_KEY,
                        },
                        {"environments": [environment], "environment_variables": [serverless_env]},
                    )
                },
            },
        },
    }


def merged_job(
    bundle_spec: dict[str, Any], jobs: dict[str, Any], target: str, key: str
) -> dict[str, Any]:
    """Job ``key`` as target ``target`` deploys it: the target's fields merged over the base
    job's, tasks matched by ``task_key`` (as the Databricks CLI merges them)."""
    base = jobs[key]
    override = bundle_spec["targets"][target].get("resources", {}).get("jobs", {}).get(key, {})
    job = {**base, **{k: v for k, v in override.items() if k != "tasks"}}
    extra = {t["task_key"]: t for t in override.get("tasks", [])}
    job["tasks"] = [{**t, **extra.get(t["task_key"], {})} for t in base["tasks"]]
    return job


def render(obj: dict[str, Any]) -> str:
    return HEADER + yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False, width=100)


def generated_files(mlproject: Path = MLPROJECT) -> dict[Path, str]:
    """What ``databricks.yml`` and ``resources/jobs.yml`` must contain for this MLproject."""
    root = load_mlproject(mlproject)
    return {BUNDLE_FILE: render(bundle(root)), JOBS_FILE: render(jobs_resources(root))}


def main() -> int:
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
