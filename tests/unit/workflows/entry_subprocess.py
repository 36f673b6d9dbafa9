"""An entry-point script in its own process (`python predict.py …`), for what only a separate
process shows: being killed by PID, and files its user may not read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, Tracking, subprocess_env

# Root reads a chmod 000 file; without these capabilities it cannot (`setpriv`, util-linux).
NO_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def as_a_plain_user() -> list[str]:
    """The command prefix under which file permissions apply to this process's children."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a chmod 000 file stays readable")
    return NO_DAC_OVERRIDE


def entry_command(entry_point: str, *argv: str, prefix: list[str] | None = None) -> list[str]:
    return [*(prefix or []), sys.executable, str(PROJECT_ROOT / f"{entry_point}.py"), *argv]


def entry_env(tracking: Tracking) -> dict[str, str]:
    return subprocess_env(
        MLFLOW_TRACKING_URI=tracking.uri,
        MLFLOW_EXPERIMENT_ID=tracking.experiment_id,
        SPARKML_SYSTEM_METRICS="off",
    )


def run_entry(
    tracking: Tracking, entry_point: str, *argv: str, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        entry_command(entry_point, *argv, prefix=prefix),
        capture_output=True,
        text=True,
        timeout=300,
        env=entry_env(tracking),
        cwd=PROJECT_ROOT,
    )
