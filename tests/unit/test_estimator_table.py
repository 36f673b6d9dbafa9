"""The estimator table is the one source of an estimator's parameters: MLproject declares each
hyper-parameter with the table's type and default, every command passes it, tune's grids are the
table's, and the range checks come from the table (no Spark)."""

from __future__ import annotations

import re

import pytest

from sparkml_template.contract.estimator_spec import (
    Estimator,
    HyperParam,
    check_values,
    choose,
    hyper_params,
)
from sparkml_template.errors import UserError
from sparkml_template.runtime.params import load_mlproject, param_specs
from sparkml_template.yours.estimators import ESTIMATORS

# Parameters of every training run, not of an estimator.
TEMPLATE_WIDE = {
    "data", "label", "task", "estimator", "features", "excludeColumns", "testFraction", "seed",
    "master", "registeredModelName",
}  # fmt: skip
TRAINING_ENTRY_POINTS = ("train", "main", "tune")
MLPROJECT_TYPES = {int: "int", float: "float"}


def test_mlproject_declares_each_hyper_parameter_as_the_table_does():
    specs = param_specs("train")
    for name, param in hyper_params(ESTIMATORS).items():
        assert name in specs, f"MLproject's train does not declare {name}"
        assert specs[name].type == MLPROJECT_TYPES[param.type], name
        assert param.type(specs[name].default) == param.default, name


def test_mlproject_has_no_estimator_parameter_the_table_lacks():
    shared = {name for entry in ESTIMATORS.values() for name in entry.shared}
    extra = set(param_specs("train")) - set(hyper_params(ESTIMATORS)) - TEMPLATE_WIDE
    assert not extra, f"MLproject declares {sorted(extra)}, which no estimator takes"
    assert shared <= TEMPLATE_WIDE


@pytest.mark.parametrize("entry_point", TRAINING_ENTRY_POINTS)
def test_every_command_passes_every_hyper_parameter(entry_point):
    command = load_mlproject()["entry_points"][entry_point]["command"]
    for name in hyper_params(ESTIMATORS):
        assert re.search(rf"--{name} \{{{name}\}}", command), f"{entry_point} drops {name}"


def test_tune_takes_grid_strings_whose_empty_default_means_the_table_grid():
    tune = param_specs("tune")
    strings = {name for name in hyper_params(ESTIMATORS) if tune[name].type == "string"}
    assert strings == {"regParam", "elasticNetParam"}
    assert all(tune[name].default == "" for name in strings)


def test_every_grid_value_passes_its_own_range_check():
    for entry in ESTIMATORS.values():
        for name, values in entry.grid.items():
            for value in values:
                check_values(ESTIMATORS, {name: value})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"regParam": -0.1}, "regParam must be >= 0, got -0.1"),
        ({"elasticNetParam": 1.5}, "elasticNetParam must be in [0, 1], got 1.5"),
        ({"elasticNetParam": -0.5}, "elasticNetParam must be in [0, 1], got -0.5"),
        ({"maxIter": 0}, "maxIter must be >= 1, got 0"),
        ({"numTrees": 0}, "numTrees must be >= 1, got 0"),
        ({"maxDepth": 31}, "maxDepth must be in [0, 30] (Spark's range), got 31"),
    ],
)
def test_out_of_range_values_are_one_line(values, message):
    defaults = {name: p.default for name, p in hyper_params(ESTIMATORS).items()}
    check_values(ESTIMATORS, defaults)  # the defaults themselves are valid
    with pytest.raises(UserError, match=re.escape(message)):
        check_values(ESTIMATORS, {**defaults, **values})


def test_an_unknown_estimator_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown estimator 'svm'; choose one of: linear, "):
        choose(ESTIMATORS, "svm")


def test_two_specs_of_one_name_or_a_grid_outside_the_params_are_refused():
    narrow = HyperParam("maxDepth", int, 5, low=0, high=10)
    table = {
        **ESTIMATORS,
        "tree": Estimator(classes={}, params=(narrow,), grid={"maxDepth": [2]}),
    }
    with pytest.raises(ValueError, match="two different specs"):
        hyper_params(table)
    with pytest.raises(ValueError, match="grid names parameters the entry does not take"):
        Estimator(classes={}, params=(narrow,), grid={"numTrees": [2]})


def test_what_train_logs_as_the_estimator_params_comes_from_the_entry():
    assert ESTIMATORS["linear"].used_params == ("regParam", "elasticNetParam", "maxIter")
    assert ESTIMATORS["gbt"].used_params == ("maxIter", "maxDepth", "seed")
