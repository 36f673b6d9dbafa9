"""The Databricks and Kubernetes variants of the project, derived from the root MLproject.

Both backends refuse the root MLproject as it is: MLflow's ``databricks_spark_job:`` section
forbids ``conda_env``, and ``-b kubernetes`` needs a ``docker_env``. Rather than keep two more
MLproject files in step by hand, each variant is generated from the root one at submit time:
every entry point and parameter (types and defaults) is carried over unchanged, and only the
environment section and, for Databricks, the command prefix differ.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from sparkml_template import PROJECT_ROOT
from sparkml_template.runtime.params import MLPROJECT, load_mlproject

VARIANTS = ("databricks", "kubernetes")
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
# Databricks runtimes ship their own Spark and its Connect client libraries: PyPI copies on the
# cluster would shadow them.
CONNECT_CLIENT = frozenset({"grpcio", "grpcio-status", "googleapis-common-protos", "pyarrow"})
RUNTIME_PROVIDED = {"databricks": frozenset({"pyspark"}) | CONNECT_CLIENT}
# The spark_python_task body. MLflow inlines this file's text into the job file it submits.
DATABRICKS_JOB = "sparkml_template/deploy/databricks_job.py"
# What a staged project holds besides its MLproject and the entry scripts its commands name.
STAGED_PATHS = ("sparkml_template", "data", "requirements.txt")
DEFAULT_IMAGE = "pyspark-mlflow-template-env:latest"
# Every Kubernetes command runs through it: MLflow leaves shell quotes in a Job's argv.
KUBERNETES_ARGV = "sparkml_template/deploy/kube_argv.py"
_SCRIPT = re.compile(r"^python\s+(\S+\.py)\b")


class _PlainDumper(yaml.SafeDumper):
    """Writes shared parameter specs out in full: a generated file needs no YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def requirement_pins(path: Path = REQUIREMENTS) -> list[str]:
    """The exact ``name==version`` pins of requirements.txt, in file order."""
    pins = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            pins.append(line)
    return pins


def python_libraries(variant: str = "databricks", path: Path = REQUIREMENTS) -> list[str]:
    """The runtime pins a cluster installs: requirements.txt minus what its runtime provides."""
    skip = RUNTIME_PROVIDED.get(variant, frozenset())
    return [pin for pin in requirement_pins(path) if pin.split("==")[0].lower() not in skip]


def entry_scripts(root: dict[str, Any]) -> list[str]:
    """The Python files the root entry points run (``python train.py ...`` -> ``train.py``)."""
    scripts = []
    for name, entry in root["entry_points"].items():
        match = _SCRIPT.match(" ".join(str(entry["command"]).split()))
        if not match:
            raise ValueError(f"entry point {name!r} does not run `python <file>.py`")
        if match.group(1) not in scripts:
            scripts.append(match.group(1))
    return scripts


def _entry_points(root: dict[str, Any], command_prefix: str = "") -> dict[str, Any]:
    """The root entry points, parameters untouched, commands on one line (optionally prefixed)."""
    out = {}
    for name, entry in root["entry_points"].items():
        command = " ".join(str(entry["command"]).split())
        if command_prefix:
            command = command.replace("python ", f"python {command_prefix} ", 1)
        out[name] = {"parameters": dict(entry.get("parameters") or {}), "command": command}
    return out


def databricks_mlproject(root: dict[str, Any], requirements: Path = REQUIREMENTS) -> dict[str, Any]:
    """The ``databricks_spark_job`` variant.

    MLflow turns ``python <file> <args>`` into a spark_python_task of ``<file>``: every command
    runs through one small job file that hands over to the entry point's own script.
    """
    return {
        "name": root["name"],
        "databricks_spark_job": {"python_libraries": python_libraries("databricks", requirements)},
        "entry_points": _entry_points(root, command_prefix=DATABRICKS_JOB),
    }


def kubernetes_mlproject(root: dict[str, Any], image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The ``docker_env`` variant: the image built from the Dockerfile carries the pinned deps.

    Each command runs through ``kube_argv.py``, which undoes the quotes MLflow's kubernetes
    backend leaves in the pod's argv (``'local[*]'``, ``''``).
    """
    return {
        "name": root["name"],
        "docker_env": {"image": image},
        "entry_points": _entry_points(root, command_prefix=KUBERNETES_ARGV),
    }


def variant_mlproject(variant: str, root: dict[str, Any], image: str = DEFAULT_IMAGE) -> dict:
    """The MLproject of ``variant`` as a dict."""
    if variant == "databricks":
        return databricks_mlproject(root)
    if variant == "kubernetes":
        return kubernetes_mlproject(root, image)
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


def stage_variant(
    variant: str,
    dest: Path,
    mlproject: Path = MLPROJECT,
    image: str = DEFAULT_IMAGE,
) -> Path:
    """Write a self-contained project dir for ``variant`` under ``dest`` and return it.

    Only what the job needs is copied (no virtualenv, tracking stores or caches): MLflow tars
    the whole dir and uploads it (Databricks) or builds it into an image (Kubernetes).
    """
    root = load_mlproject(mlproject)
    source = mlproject.parent
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for rel in (*STAGED_PATHS, *entry_scripts(root)):
        src = source / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=ignore, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / rel)
    spec = variant_mlproject(variant, root, image)
    header = (
        f"# Generated from the root MLproject by sparkml_template/deploy/variants.py ({variant}).\n"
        "# Do not edit: change the root MLproject instead.\n"
    )
    text = yaml.dump(spec, Dumper=_PlainDumper, sort_keys=False, width=1000)
    (dest / "MLproject").write_text(header + text, encoding="utf-8")
    return dest
