"""``python -m sparkml_template.workflows.warmup``: build the driver JVM's class-data archive.

The archive (``runtime.jvm_cache``) holds the classes a run loads, so it is built by running
the train workflow's Spark path once, on the shipped data and MLproject's defaults, without
MLflow: session, read, validate, fit, score, save. ``make setup`` runs this; it never fails
setup (a faster start is optional), and is silent when the archive exists.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sparkml_template.dataset.sources import resolve_source
from sparkml_template.observability.capture import TaskCapture
from sparkml_template.runtime import jvm_cache
from sparkml_template.runtime.params import parse_params
from sparkml_template.runtime.session import check_java, get_spark, java_executable, locate_spark
from sparkml_template.workflows.fitting import fit_and_score
from sparkml_template.workflows.runner import APP_PREFIX

WORKLOAD_FLAG = "--workload"


def run_workload(java_options: str) -> None:
    """The template's own Spark path once, in a driver started with ``java_options``."""
    params, _ = parse_params("train", [])
    conf = {**TaskCapture().spark_conf(), "spark.driver.extraJavaOptions": java_options}
    spark = get_spark("local[*]", f"{APP_PREFIX}:jvm-cache", conf)
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit_and_score(spark, params, resolve_source(params["data"]))
        fitted.model.write().save(str(Path(tmp) / "model"))
    jvm_cache.stop_jvm(spark)


def build(force: bool = False) -> Path | None:
    """Build the archive for this Java + Spark unless it exists; its path (None: failed)."""
    check_java()
    java, spark_home = java_executable(), locate_spark()
    if not (java and spark_home):
        return None
    workload = [sys.executable, "-m", __spec__.name, WORKLOAD_FLAG]
    return jvm_cache.build(java, spark_home, workload, force=force)


def main(argv: list[str]) -> int:
    """Build the archive; say why when it is not built, and carry on (exit 0)."""
    if argv[:1] == [WORKLOAD_FLAG]:
        run_workload(argv[1])
        return 0
    if not jvm_cache.enabled():
        print(f"jvm cache: disabled by {jvm_cache.DISABLE_ENV}")
        return 0
    start = time.monotonic()
    force = "--force" in argv
    try:
        existing = jvm_cache.archive_path(java_executable() or "java", locate_spark())
        if existing.is_file() and not force:
            return 0  # built before: setup stays quiet
        path = build(force=force)
    except Exception as exc:  # a faster start is optional: say why and carry on
        print(f"jvm cache: not built ({exc}); runs start without it")
        return 0
    if path is None:
        print("jvm cache: the JVM wrote no usable archive; runs start without it")
    else:
        size = path.stat().st_size / 2**20
        print(f"jvm cache: {path} ({size:.0f} MB, {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
