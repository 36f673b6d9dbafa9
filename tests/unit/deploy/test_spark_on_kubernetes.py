"""Spark on Kubernetes (a ``k8s://`` master) cannot run here, so its configuration is checked
against Spark itself: every key docs/cluster.md tells users to set, and every key the template
sets for such a master, must be a configuration name Spark 4 defines in the pinned pyspark's own
jars (spark-core, spark-sql, spark-kubernetes). A misspelt key is silently ignored by Spark, so
this is the only place the mistake would show."""

from __future__ import annotations

import re
import zipfile
from functools import cache
from pathlib import Path

import pyspark
import pytest
from conftest import PROJECT_ROOT

from sparkml_template.observability.capture import TaskCapture
from sparkml_template.runtime.session import session_conf

JARS = ("spark-core_", "spark-sql_", "spark-kubernetes_")
_KEY = re.compile(rb"spark\.[A-Za-z0-9_.\-]+")
_SUFFIX = re.compile(rb"[A-Za-z][A-Za-z0-9]+")
K8S_MASTER = "k8s://https://203.0.113.10:6443"


@cache
def spark_strings() -> tuple[frozenset[str], frozenset[str]]:
    """(every ``spark.*`` string constant, every identifier-like string) in Spark's classes."""
    keys: set[str] = set()
    words: set[str] = set()
    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.iterdir():
        if not jar.name.startswith(JARS):
            continue
        with zipfile.ZipFile(jar) as archive:
            for name in archive.namelist():
                if name.endswith(".class"):
                    data = archive.read(name)
                    keys.update(m.decode() for m in _KEY.findall(data))
                    words.update(m.decode() for m in _SUFFIX.findall(data))
    return frozenset(k.rstrip(".") for k in keys), frozenset(words)


def known_to_spark(key: str) -> bool:
    """A key Spark defines whole, or a prefix Spark defines plus a suffix it names (Spark builds
    some keys that way, e.g. ``spark.kubernetes.authenticate.driver`` + ``serviceAccountName``)."""
    keys, words = spark_strings()
    if key in keys:
        return True
    prefix, _, suffix = key.rpartition(".")
    return prefix in keys and suffix in words


def documented_k8s_keys() -> list[str]:
    """The keys of the ``conf-k8s/spark-defaults.conf`` block in docs/cluster.md."""
    text = (PROJECT_ROOT / "docs" / "cluster.md").read_text()
    section = text.split("`conf-k8s/spark-defaults.conf`", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("spark.")]


def test_the_check_knows_spark_from_a_misspelling():
    assert known_to_spark("spark.kubernetes.container.image")
    assert known_to_spark("spark.executor.memory")
    assert not known_to_spark("spark.kubernetes.container.imag")
    assert not known_to_spark("spark.kubernetes.executor.cores.request")


@pytest.mark.parametrize("key", documented_k8s_keys())
def test_every_documented_k8s_setting_is_a_spark_4_key(key):
    assert known_to_spark(key), f"docs/cluster.md sets {key}, which Spark 4 does not define"


def test_the_keys_the_template_sets_for_a_k8s_master_are_spark_4_keys(monkeypatch):
    monkeypatch.setenv("SPARK_LOG_LEVEL", "WARN")
    capture = TaskCapture(enabled=True)
    conf = session_conf(K8S_MASTER, "sparkml-template:train", capture.spark_conf())
    capture.log_dir.rmdir()
    assert conf["spark.master"] == K8S_MASTER
    assert "spark.driver.host" not in conf  # the pods must reach the driver: the user's choice
    unknown = [key for key in conf if not known_to_spark(key)]
    assert not unknown, unknown
