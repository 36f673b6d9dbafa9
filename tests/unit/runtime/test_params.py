"""Parameters: MLproject is the only place defaults live, and bad values get one clear line."""

from __future__ import annotations

import ast
import re
import shlex

import pytest

from sparkml_template import PROJECT_ROOT
from sparkml_template.errors import UserError
from sparkml_template.runtime.params import (
    check_training_params,
    load_mlproject,
    param_specs,
    parse_params,
)

ENTRY_POINTS = list(load_mlproject()["entry_points"])


def test_name_is_lowercase_with_dashes():
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", load_mlproject()["name"])


def test_core_entry_points_exist():
    assert {"main", "train", "evaluate"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_mlflow_reads_the_same_parameters(entry_point):
    """MLflow's own parser and ours agree on every name, type and default."""
    from mlflow.projects._project_spec import load_project

    theirs = load_project(str(PROJECT_ROOT)).get_entry_point(entry_point).parameters
    ours = param_specs(entry_point)
    assert {k: (v.type, v.default) for k, v in theirs.items()} == {
        k: (v.type, v.default) for k, v in ours.items()
    }


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_command_passes_every_parameter_through(entry_point):
    """Each declared parameter reaches the script as --name {name}, and nothing undeclared."""
    command = load_mlproject()["entry_points"][entry_point]["command"]
    tokens = shlex.split(command)
    assert tokens[0] == "python" and tokens[1].endswith(".py")
    passed = {t[2:] for t in tokens if t.startswith("--")}
    assert passed == set(param_specs(entry_point))
    for name in passed:
        assert f"--{name} {{{name}}}" in command


def _literal_defaults(tree: ast.AST) -> list[str]:
    """Keyword defaults and argparse-style default= in a script: where drift would hide."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "default":
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_scripts_define_no_defaults_of_their_own(entry_point):
    """Defaults drift when written twice (MLflow's wine example): scripts must not have any."""
    script = shlex.split(load_mlproject()["entry_points"][entry_point]["command"])[1]
    tree = ast.parse((PROJECT_ROOT / script).read_text())
    assert _literal_defaults(tree) == []


def test_parse_fills_defaults_from_mlproject():
    values, raw = parse_params("train", ["--regParam", "0.5"])
    specs = param_specs("train")
    assert values["regParam"] == 0.5
    assert raw == {"regParam": "0.5"}
    for name in ("maxIter", "seed", "testFraction", "label"):
        assert values[name] == specs[name].default


def test_parse_accepts_equals_form_and_empty_strings():
    values, _ = parse_params("train", ["--maxIter=7", "--registeredModelName", ""])
    assert values["maxIter"] == 7 and values["registeredModelName"] == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--regParam", "abc"], "regParam must be a number, got 'abc'"),
        (["--maxIter", "2.5"], "maxIter must be a whole number"),
        (["--regParam", "nan"], "regParam must be a finite number"),
        (["--regparam", "1"], "unknown parameter 'regparam'"),
        (["--maxIter"], "parameter 'maxIter' has no value"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_parse_rejects_bad_values_in_one_line(argv, message):
    with pytest.raises(UserError) as info:
        parse_params("train", argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(UserError) as info:
        parse_params("train", ["--learningRate", "0.1"])
    for name in param_specs("train"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"testFraction": 0.0}, "testFraction must be in (0, 1)"),
        ({"testFraction": 1.0}, "testFraction must be in (0, 1)"),
    ],
)
def test_training_ranges(override, message):
    values, _ = parse_params("train", [])
    check_training_params(values)  # the defaults themselves are valid
    with pytest.raises(UserError, match=re.escape(message)):
        check_training_params({**values, **override})
