"""Java detection, Spark location and session conf: checked without starting a JVM."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from sparkml_template.errors import UserError
from sparkml_template.runtime.driver_memory import default_driver_memory, driver_memory_is_set
from sparkml_template.runtime.session import (
    check_java,
    is_local_master,
    parse_java_major,
    session_conf,
)


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('JAVA_VERSION="11.0.2"', 11),
        ("no version here", None),
    ],
)
def test_parse_java_major(text, major):
    assert parse_java_major(text) == major


def _fake_java(tmp_path, version_line: str):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_old_java_is_refused_with_one_line(tmp_path):
    home = _fake_java(tmp_path, 'java version "1.8.0_392"')
    with pytest.raises(UserError, match=r"Java 8 found .* needs Java 17\+"):
        check_java({"JAVA_HOME": str(home), "PATH": os.environ["PATH"]})


def test_missing_java_is_refused(tmp_path):
    with pytest.raises(UserError, match="Java not found"):
        check_java({"PATH": str(tmp_path)})


def test_this_machine_has_java_17_or_newer():
    assert check_java() >= 17


def test_java_check_comes_before_anything_else(tmp_path):
    """With Java 8 on PATH, train says so and exits 2 before parsing params or starting Spark."""
    home = _fake_java(tmp_path, 'java version "1.8.0_392"')
    env = {
        **os.environ,
        "JAVA_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
    }
    from sparkml_template import PROJECT_ROOT

    out = subprocess.run(
        [sys.executable, "train.py", "--regParam", "-1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if "error:" in ln]
    assert lines == [lines[0]] and "Java 8 found" in lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("master", "local"),
    [
        ("local[*]", True),
        ("local[2,3]", True),
        ("spark://127.0.0.1:7077", True),
        ("spark://10.0.0.5:7077", False),
        ("yarn", False),
        ("k8s://https://host:6443", False),
    ],
)
def test_is_local_master(master, local):
    assert is_local_master(master) is local


def test_local_sessions_bind_to_loopback_only():
    conf = session_conf("local[*]", "app")
    assert conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    remote = session_conf("yarn", "app")
    assert "spark.driver.host" not in remote and remote["spark.master"] == "yarn"


def test_a_local_driver_heap_is_a_capped_share_of_memory_unless_the_user_set_it(
    tmp_path, monkeypatch
):
    gib = 1 << 30
    assert default_driver_memory(16 * gib) == "4096m"  # 25%
    assert default_driver_memory(64 * gib) == "8192m"  # capped
    assert default_driver_memory(2 * gib) == "1024m" == default_driver_memory(None)  # floor
    for name in ("SPARK_DRIVER_MEMORY", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR", "SPARK_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert not driver_memory_is_set()
    assert session_conf("local[2]", "app")["spark.driver.memory"].endswith("m")
    assert "spark.driver.memory" not in session_conf("yarn", "app")
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.memory 3g\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert driver_memory_is_set()
    assert "spark.driver.memory" not in session_conf("local[2]", "app")
    monkeypatch.delenv("SPARK_CONF_DIR")
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 2g pyspark-shell")
    assert driver_memory_is_set()


def test_stray_opt_spark_does_not_shadow_pip_pyspark(tmp_path):
    """findspark alone prefers /opt/spark over pip's pyspark; locate_spark must not.

    /opt/spark is one of findspark's fixed search paths; a broken fake one is put there for the
    duration of the test (only if nothing is there already).
    """
    stray = "/opt/spark"
    if os.path.exists(stray):
        pytest.skip("a real /opt/spark exists on this machine")
    os.makedirs(f"{stray}/python/lib")
    try:
        code = (
            "import os, sys; sys.modules.pop('pyspark', None);"
            "from sparkml_template.runtime.session import locate_spark;"
            "home = locate_spark(); import pyspark;"
            "print(home); print(pyspark.__file__)"
        )
        env = {k: v for k, v in os.environ.items() if k != "SPARK_HOME"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        home, module = out.stdout.split()
        assert not home.startswith(stray)
        assert "site-packages/pyspark" in module
    finally:
        shutil.rmtree(stray)


def test_spark_home_wins_when_set(tmp_path):
    """A user's own Spark install (SPARK_HOME) is what findspark puts on sys.path."""
    code = (
        "from sparkml_template.runtime.session import locate_spark;"
        "import sys; locate_spark(); print(sys.path[0])"
    )
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    env = {**os.environ, "SPARK_HOME": home}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.path.join(home, "python")


def test_bad_spark_home_is_one_line(tmp_path):
    code = "from sparkml_template.runtime.session import locate_spark; locate_spark()"
    env = {**os.environ, "SPARK_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert f"SPARK_HOME={tmp_path} is not a Spark install" in out.stderr


def test_driver_options_bring_the_log_config_and_exit_on_oom_unless_the_user_set_theirs(
    monkeypatch, tmp_path
):
    from sparkml_template.runtime.session import LOG_CONFIG, _add_driver_options

    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    conf = session_conf("local[1]", "t")
    _add_driver_options(conf)
    options = conf["spark.driver.extraJavaOptions"]
    assert f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}" in options
    assert "-XX:+ExitOnOutOfMemoryError" in options and LOG_CONFIG.is_file()

    (tmp_path / "log4j2.properties").write_text("rootLogger.level = info\n")
    conf = session_conf("local[1]", "t")
    _add_driver_options(conf)
    assert "log4j2.configurationFile" not in conf["spark.driver.extraJavaOptions"]

    mine = "-Dlog4j2.configurationFile=file:/etc/mine.properties -XX:-ExitOnOutOfMemoryError"
    conf = session_conf("local[1]", "t", {"spark.driver.extraJavaOptions": mine})
    _add_driver_options(conf)
    assert conf["spark.driver.extraJavaOptions"].endswith(mine)
    assert "ExitOnOutOfMemoryError" not in conf["spark.driver.extraJavaOptions"].replace(mine, "")


def test_driver_options_skip_native_netlib_libraries_the_machine_lacks(monkeypatch, tmp_path):
    """Only the missing ones, so an installed libblas3 still serves Spark; the user's wins."""
    from sparkml_template.runtime import session

    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(session, "missing_netlib", lambda: ["lapack", "arpack"])
    conf = session_conf("local[1]", "t")
    session._add_driver_options(conf)
    options = conf["spark.driver.extraJavaOptions"]
    assert "-Ddev.ludovic.netlib.lapack.allowNative=false" in options
    assert "-Ddev.ludovic.netlib.arpack.allowNative=false" in options
    assert "netlib.blas" not in options

    mine = "-Ddev.ludovic.netlib.blas.allowNative=true"
    conf = session_conf("local[1]", "t", {"spark.driver.extraJavaOptions": mine})
    session._add_driver_options(conf)
    assert conf["spark.driver.extraJavaOptions"].count("netlib") == 1
