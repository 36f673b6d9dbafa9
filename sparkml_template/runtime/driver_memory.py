"""How much heap a local driver gets: a local master's driver runs every task, and Spark's 1g
default fails on modest data, so the heap is sized to the machine unless the user chose it."""

from __future__ import annotations

import os
import re
from pathlib import Path

# A local driver's heap: this share of the machine's memory, at least 1g, at most 8g.
DRIVER_MEMORY_SHARE = 0.25
DRIVER_MEMORY_MIN_MB = 1024
DRIVER_MEMORY_MAX_MB = 8192


def machine_memory_bytes() -> int | None:
    """Physical memory, or the container's cgroup limit when that is lower (None if unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def default_driver_memory(total_bytes: int | None) -> str:
    """``DRIVER_MEMORY_SHARE`` of ``total_bytes`` in MiB, within the floor and the cap."""
    if not total_bytes:
        return f"{DRIVER_MEMORY_MIN_MB}m"
    share = int(total_bytes * DRIVER_MEMORY_SHARE) // (1 << 20)
    return f"{max(DRIVER_MEMORY_MIN_MB, min(DRIVER_MEMORY_MAX_MB, share))}m"


def driver_memory_is_set(env: dict[str, str] | None = None) -> bool:
    """Whether the user already chose the driver's heap (environment, submit args, defaults)."""
    env = os.environ if env is None else env
    if env.get("SPARK_DRIVER_MEMORY"):
        return True
    submit = env.get("PYSPARK_SUBMIT_ARGS", "")
    if "--driver-memory" in submit or "spark.driver.memory" in submit:
        return True
    conf_dirs = [env.get("SPARK_CONF_DIR"), env.get("SPARK_HOME") and f"{env['SPARK_HOME']}/conf"]
    for conf_dir in filter(None, conf_dirs):
        try:
            text = (Path(conf_dir) / "spark-defaults.conf").read_text()
        except OSError:
            continue
        if re.search(r"^\s*spark\.driver\.memory\s", text, re.MULTILINE):
            return True
    return False
