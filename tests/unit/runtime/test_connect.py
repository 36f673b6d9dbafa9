"""Spark Connect without a server: URL checks, the model exchange directory, job tags."""

from __future__ import annotations

import pytest
from servers import free_port

from sparkml_template.errors import UserError
from sparkml_template.observability.task_events import has_run_tag, run_tag
from sparkml_template.runtime.connect_models import (
    DEFAULT_DIR,
    check_exchange_dir,
    exchange_dir,
)
from sparkml_template.runtime.preflight import check_master_reachable, connect_endpoint
from sparkml_template.runtime.session import check_java, is_connect_master


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("sc://127.0.0.1:15003", ("127.0.0.1", 15003)),
        ("sc://spark.example.com", ("spark.example.com", 15002)),
        ("sc://host:443/;use_ssl=true;token=abc", ("host", 443)),
    ],
)
def test_connect_endpoint(url, endpoint):
    assert is_connect_master(url)
    assert connect_endpoint(url) == endpoint


@pytest.mark.parametrize("url", ["sc://", "sc://host:port", "sc://:15002"])
def test_malformed_connect_url_is_one_line(url):
    with pytest.raises(UserError, match="not a valid Spark Connect URL"):
        connect_endpoint(url)


def test_unreachable_connect_server_is_one_line():
    port = free_port()
    with pytest.raises(UserError, match=rf"Spark Connect server 127.0.0.1:{port} is unreachable"):
        check_master_reachable(f"sc://127.0.0.1:{port}", timeout=2)


def test_connect_master_needs_no_local_java(tmp_path):
    assert check_java({"PATH": str(tmp_path)}, master="sc://127.0.0.1:15002") == 0
    with pytest.raises(UserError, match="Java not found"):
        check_java({"PATH": str(tmp_path)}, master="local[*]")


def test_connect_job_tags_match_the_run():
    tag = run_tag("abc123")
    connect = f"SparkConnect_SessionTag_User__Session_0a-1b_Tag_{tag}"
    assert has_run_tag(["SparkConnect_OperationTag_User__Session_0a", connect], tag)
    assert has_run_tag([tag], tag)
    assert not has_run_tag([run_tag("abc1234")], tag)
    assert not has_run_tag([f"SparkConnect_SessionTag_Tag_{run_tag('other')}"], tag)


def test_exchange_dir_choice(tmp_path):
    assert exchange_dir({}) == DEFAULT_DIR
    assert exchange_dir({"MLFLOW_DFS_TMP": str(tmp_path)}) == tmp_path
    given = {"SPARKML_CONNECT_MODEL_DIR": str(tmp_path / "a"), "MLFLOW_DFS_TMP": "/elsewhere"}
    assert exchange_dir(given) == tmp_path / "a"
    with pytest.raises(UserError, match="must be an absolute path"):
        exchange_dir({"SPARKML_CONNECT_MODEL_DIR": "relative/dir"})


def test_serverless_needs_a_volume():
    serverless = {"DATABRICKS_RUNTIME_VERSION": "client.4.0"}
    with pytest.raises(UserError, match=r"MLFLOW_DFS_TMP=/Volumes/.*got 'nothing'"):
        exchange_dir(serverless)
    with pytest.raises(UserError, match="Unity Catalog volume"):
        exchange_dir({**serverless, "MLFLOW_DFS_TMP": "/tmp/models"})
    volume = "/Volumes/main/default/models/tmp"
    assert str(exchange_dir({**serverless, "MLFLOW_DFS_TMP": volume})) == volume


def test_unwritable_exchange_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the Spark Connect model directory"):
        check_exchange_dir({"SPARKML_CONNECT_MODEL_DIR": str(blocker / "models")})
    assert check_exchange_dir({"SPARKML_CONNECT_MODEL_DIR": str(tmp_path / "m")}).is_dir()


@pytest.mark.parametrize(
    ("argv", "master"),
    [
        (["--data", "x.csv", "--master", "sc://h:1"], "sc://h:1"),
        (["--master=local[2]"], "local[2]"),
        (["--data", "x.csv"], ""),
        (["--master"], ""),
    ],
)
def test_the_java_check_reads_the_master_before_parsing(argv, master):
    from sparkml_template.workflows.runner import _master_arg

    assert _master_arg(argv) == master
