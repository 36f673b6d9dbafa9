"""The driver JVM's class-data archive: keyed on the install, used when present, never a
truncated one (a real JVM maps each candidate)."""

from __future__ import annotations

import os
from pathlib import Path

from sparkml_template.runtime import jvm_cache
from sparkml_template.runtime.session import java_executable, session_conf


def _fake_spark_home(root: Path) -> Path:
    jars = root / "jars"
    jars.mkdir(parents=True)
    for name in ("spark-core.jar", "spark-sql.jar"):
        (jars / name).write_bytes(b"PK" + name.encode())
    return root


def test_key_follows_the_jars(tmp_path):
    java = java_executable()
    home = _fake_spark_home(tmp_path / "spark")
    key = jvm_cache.archive_key(java, str(home))
    assert jvm_cache.archive_key(java, str(home)) == key
    jar = home / "jars" / "spark-sql.jar"
    os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns + 10**9))
    assert jvm_cache.archive_key(java, str(home)) != key  # reinstalled: the JVM would refuse it


def test_options_only_for_an_existing_archive(tmp_path, monkeypatch):
    java = java_executable()
    home = _fake_spark_home(tmp_path / "spark")
    monkeypatch.setenv(jvm_cache.DIR_ENV, str(tmp_path / "cache"))
    assert jvm_cache.driver_java_options(java, str(home)) is None
    archive = jvm_cache.archive_path(java, str(home))
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"archive")
    options = jvm_cache.driver_java_options(java, str(home))
    assert options is not None and f"-XX:SharedArchiveFile={archive}" in options
    monkeypatch.setenv(jvm_cache.DISABLE_ENV, "off")
    assert jvm_cache.driver_java_options(java, str(home)) is None


def test_prune_keeps_the_newest(tmp_path):
    paths = []
    for i in range(jvm_cache.KEEP + 2):
        path = tmp_path / f"spark-driver-{i}.jsa"
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        paths.append(path)
    jvm_cache._prune(tmp_path, keep=paths[0])
    left = sorted(p.name for p in tmp_path.glob("*.jsa"))
    assert len(left) == jvm_cache.KEEP
    assert paths[0].name in left and paths[-1].name in left and paths[1].name not in left


def test_test_session_maps_the_archive(spark):
    """The session fixture built the archive; the driver JVM was started with it mapped."""
    java, home = java_executable(), os.environ["SPARK_HOME"]
    archive = jvm_cache.archive_path(java, home)
    assert archive.is_file()
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={archive}" in args


def test_a_truncated_archive_is_refused(spark, tmp_path):
    """A partial file crashes a JVM that maps it: the build's check must say no, and yes to
    the real one."""
    archive = jvm_cache.archive_path(java_executable(), os.environ["SPARK_HOME"])
    truncated = tmp_path / "partial.jsa"
    with open(archive, "rb") as src:
        truncated.write_bytes(src.read(1 << 20))
    assert not jvm_cache._maps(truncated)
    assert jvm_cache._maps(archive)


def test_user_java_options_are_kept(spark):
    """A user's own driver options survive; ours go first (the fixture built the archive)."""
    from sparkml_template.runtime.session import _add_driver_options

    conf = session_conf("local[1]", "t", {"spark.driver.extraJavaOptions": "-Dmine=1"})
    _add_driver_options(conf)
    options = conf["spark.driver.extraJavaOptions"]
    assert options.endswith("-Dmine=1")
    assert "-XX:SharedArchiveFile=" in options
