"""Pins live in requirements.txt; conda.yaml's pip list must say exactly the same."""

from __future__ import annotations

import re

import yaml

from sparkml_template import PROJECT_ROOT


def _requirements(path) -> list[str]:
    lines = (PROJECT_ROOT / path).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("#", "-r"))]


def test_conda_pip_list_matches_requirements():
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    pip_lists = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    assert len(pip_lists) == 1
    assert sorted(pip_lists[0]) == sorted(_requirements("requirements.txt"))


def test_every_pin_is_exact():
    for path in ("requirements.txt", "requirements-dev.txt"):
        for req in _requirements(path):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.]*", req), (path, req)


def test_conda_pins_a_full_python_version_and_java_17():
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    deps = [d for d in conda["dependencies"] if isinstance(d, str)]
    python = [d for d in deps if d.startswith("python=")]
    # MLflow converts conda.yaml to a virtualenv/uv env only for a full X.Y.Z version.
    assert len(python) == 1 and re.fullmatch(r"python=3\.\d+\.\d+", python[0])
    assert "openjdk=17" in deps


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for req in _requirements("requirements.txt"):
        name, pinned = req.split("==")
        assert version(name) == pinned, name
