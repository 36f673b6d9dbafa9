"""Databricks, without a workspace: the generated variant, the cluster spec, the dispatch checks,
and the code paths a Databricks cluster takes (an active session, dbfs:/ and table inputs). The
whole submission path runs against the emulator in tests/e2e/test_databricks.py."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, subprocess_env
from emulators.databricks import check_fields
from servers import free_port

from sparkml_template.deploy import dispatch
from sparkml_template.deploy.databricks_job import task_argv
from sparkml_template.deploy.variants import (
    RUNTIME_PROVIDED,
    python_libraries,
    requirement_pins,
    stage_variant,
)
from sparkml_template.errors import UserError
from sparkml_template.runtime.params import load_mlproject

TOKEN = "dapi-test-token"
CLUSTER_SPEC = PROJECT_ROOT / "databricks" / "cluster-spec.json"


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return stage_variant("databricks", tmp_path_factory.mktemp("databricks") / "project")


def test_variant_has_every_entry_point_and_parameter_of_the_root(staged):
    from mlflow.projects._project_spec import load_project

    root = load_project(str(PROJECT_ROOT))
    variant = load_project(str(staged))  # MLflow's own parser: also checks the section's rules
    assert variant.databricks_spark_job_spec is not None
    assert variant.env_type is None  # no conda_env: MLflow forbids it next to databricks_spark_job
    assert set(variant._entry_points) == set(root._entry_points)
    for name, entry in root._entry_points.items():
        theirs = variant._entry_points[name].parameters
        assert [(p.name, p.type, p.default) for p in theirs.values()] == [
            (p.name, p.type, p.default) for p in entry.parameters.values()
        ]


def test_python_libraries_are_the_runtime_pins_but_pyspark(staged):
    libraries = load_mlproject(staged / "MLproject")["databricks_spark_job"]["python_libraries"]
    pins = requirement_pins()
    assert libraries == python_libraries("databricks")
    provided = RUNTIME_PROVIDED["databricks"]  # pyspark and its Connect client libraries
    assert libraries == [p for p in pins if p.split("==")[0] not in provided]
    assert any(p.startswith("pyspark==") for p in pins)  # left out on purpose


def test_job_parameters_reach_the_entry_script_as_the_root_command_meant(staged):
    """MLflow quotes values, then splits the command on spaces; the job file must undo that."""
    from mlflow.projects._project_spec import load_project

    params = {"data": "dbfs:/my data/x.csv", "registeredModelName": "", "label": "it's"}
    root = load_project(str(PROJECT_ROOT)).get_entry_point("main")
    variant = load_project(str(staged)).get_entry_point("main")
    pieces = variant.compute_command(params, None).split(" ")  # as databricks.py does
    assert pieces[:2] == ["python", "sparkml_template/deploy/databricks_job.py"]
    assert task_argv(pieces[2:]) == shlex.split(root.compute_command(params, None))[1:]


def test_cluster_spec_is_a_valid_new_cluster_on_a_spark_4_runtime():
    from databricks.sdk.service.compute import ClusterSpec

    spec = json.loads(CLUSTER_SPEC.read_text())
    assert check_fields(ClusterSpec, spec, "spec") == []
    assert int(spec["spark_version"].split(".")[0]) >= 17  # DBR 17+ runs Spark 4
    dispatch.check_databricks_spec(spec, CLUSTER_SPEC)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"existing_cluster_id": "0101-abc", "spark_version": "17.3.x-scala2.13"}', "new cl"),
        ('{"new_cluster": {"spark_version": "17.3.x-scala2.13"}}', "wraps the cluster"),
        ('{"num_workers": 1}', "no spark_version"),
    ],
)
def test_bad_backend_config_is_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "spec.json"
    path.write_text(content)
    sub = dispatch.Submission("databricks", path, experiment_id="1")
    with pytest.raises(UserError, match=expected):
        dispatch.prepare(
            sub,
            env={"DATABRICKS_HOST": "http://127.0.0.1:1", "DATABRICKS_TOKEN": "x"},
        )


def test_mlflow_rejects_existing_cluster_id_too():
    from mlflow.exceptions import MlflowException
    from mlflow.projects.databricks import before_run_validations

    with pytest.raises(MlflowException, match="new cluster"):
        before_run_validations("databricks", {"existing_cluster_id": "0101-abc"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "no Databricks host and token"),
        ({"DATABRICKS_HOST": "https://x.cloud.databricks.com"}, "DATABRICKS_TOKEN is not"),
        ({"DATABRICKS_CONFIG_PROFILE": "nope"}, r"\[nope\] profile"),
        ({"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, "logs to its workspace"),
    ],
)
def test_missing_databricks_credentials_are_one_clear_line(tmp_path, env, expected):
    env = {"DATABRICKS_CONFIG_FILE": str(tmp_path / "none.cfg"), **env}
    sub = dispatch.Submission("databricks", CLUSTER_SPEC, experiment_id="1")
    with pytest.raises(UserError, match=expected):
        dispatch.prepare(sub, env=env)


def test_a_databrickscfg_profile_is_found(tmp_path):
    cfg = tmp_path / "databrickscfg"
    cfg.write_text("[work]\nhost = https://w.cloud.databricks.com\ntoken = dapi1\n")
    env = {"DATABRICKS_CONFIG_FILE": str(cfg)}
    assert dispatch.databricks_host("databricks://work", env) == "https://w.cloud.databricks.com"


def test_unreachable_host_is_one_clear_line():
    port = free_port()
    with pytest.raises(UserError, match=rf"cannot reach .*:{port}"):
        dispatch.check_reachable(f"http://127.0.0.1:{port}")


def test_dispatch_cli_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "spec.json"
    bad.write_text('{"existing_cluster_id": "0101-abc"}')
    out = subprocess.run(
        [sys.executable, "dispatch.py", "databricks", "--backend-config", str(bad)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("dispatch: error:")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "existing_cluster_id" in out.stderr


# --- the code on a Databricks cluster ----------------------------------------------------------


def test_on_databricks_the_active_session_is_reused_without_findspark(spark, monkeypatch):
    from sparkml_template.runtime.session import check_java, get_spark

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")  # the cluster's JVM runs already
    monkeypatch.setitem(sys.modules, "findspark", None)  # importing it would now fail
    check_java()
    assert get_spark("yarn", "ignored") is spark  # the cluster's session; master not applied


def test_dbfs_and_table_inputs_are_read_as_given(spark):
    from sparkml_template.dataset.sources import resolve_source
    from sparkml_template.yours.data import read_source

    assert resolve_source("dbfs:/mnt/data/cancer.csv").format == "csv"
    assert resolve_source("dbfs:/mnt/data/cancer.csv").uri == "dbfs:/mnt/data/cancer.csv"
    spark.createDataFrame([(1.0, "a")], "x double, diagnosis string").createOrReplaceTempView(
        "cancer_view"
    )
    source = resolve_source("cancer_view")
    assert source.format == "table"
    assert read_source(spark, source).count() == 1
