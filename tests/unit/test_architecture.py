"""The layout docs/layout.md describes: import contracts kept (and able to fail), your modules
called only at their hooks, every root script an entry point, no two package modules with one
name."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

from conftest import PROJECT_ROOT, VENV_BIN

from sparkml_template.deploy.variants import entry_scripts
from sparkml_template.runtime.params import load_mlproject

PACKAGE = PROJECT_ROOT / "sparkml_template"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the package under ``root``, with the contracts in its pyproject.toml."""
    return subprocess.run(
        [str(VENV_BIN / "lint-imports"), "--config", str(root / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )


def test_import_contracts_are_kept():
    result = _lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"Contracts: [2-9]\d* kept, 0 broken", result.stdout), result.stdout


def _copy_with(tmp_path: Path, module: str, extra: str) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(
        PACKAGE, root / "sparkml_template", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    target = root / "sparkml_template" / module
    target.write_text(target.read_text() + extra)
    return root


def test_an_upward_import_breaks_the_layers(tmp_path):
    root = _copy_with(
        tmp_path, "runtime/session.py", "\nfrom sparkml_template.workflows import runner\n"
    )
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "Layers" in result.stdout and "BROKEN" in result.stdout
    assert "sparkml_template.runtime.session -> sparkml_template.workflows.runner" in result.stdout


def test_a_cycle_inside_a_layer_is_caught(tmp_path):
    # params -> switches is allowed by the layers (both in runtime); the way back closes a cycle.
    root = _copy_with(
        tmp_path, "runtime/switches.py", "\nfrom sparkml_template.runtime import params\n"
    )
    (root / "sparkml_template/runtime/params.py").write_text(
        (PACKAGE / "runtime/params.py").read_text()
        + "\nfrom sparkml_template.runtime import switches\n"
    )
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "No import cycle" in result.stdout and "BROKEN" in result.stdout


def test_every_root_script_is_an_entry_point_or_the_dispatch_command():
    scripts = set(entry_scripts(load_mlproject()))
    root_files = {p.name for p in PROJECT_ROOT.glob("*.py")}
    assert root_files == scripts | {"dispatch.py"}
    assert set(load_mlproject()["entry_points"]) == {s.removesuffix(".py") for s in scripts}


def test_each_workflow_module_is_named_for_its_entry_point():
    workflows = {p.stem for p in (PACKAGE / "workflows").glob("*.py")}
    assert set(load_mlproject()["entry_points"]) <= workflows


def test_no_two_package_modules_share_a_name():
    names = [p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_no_two_test_files_share_a_name():
    """pytest imports test files by basename (no packages under tests/): two alike collide."""
    names = [p.name for p in (PROJECT_ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def _imports_of_yours(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from sparkml_template.yours.<module> import <name>`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sparkml_template.yours"
        ):
            module = node.module.removeprefix("sparkml_template.yours").lstrip(".")
            found += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):  # a bare module import is not a hook: report it
            yours = [a.name for a in node.names if a.name.startswith("sparkml_template.yours")]
            found += [(name, "import") for name in yours]
    return found


def test_the_machinery_calls_your_modules_only_at_the_documented_hooks():
    from sparkml_template.yours import HOOKS

    machinery = [p for p in PACKAGE.rglob("*.py") if "yours" not in p.relative_to(PACKAGE).parts]
    used = {(p, m, n) for p in machinery for m, n in _imports_of_yours(p)}
    assert used, "the workflows import your modules: the scan found none"
    stray = sorted((str(p.relative_to(PACKAGE)), m, n) for p, m, n in used
                   if n not in HOOKS.get(m, ()))  # fmt: skip
    assert not stray, f"machinery imports from yours beyond the hooks: {stray}"
    unused = {(m, n) for m, names in HOOKS.items() for n in names} - {(m, n) for _, m, n in used}
    assert not unused, f"hooks no machinery calls: {sorted(unused)}"
