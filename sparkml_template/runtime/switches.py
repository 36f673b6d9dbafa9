"""On/off switches read from the environment (``SPARKML_JVM_CACHE``, ``SPARKML_TASK_METRICS``).

Every optional part of a run is on unless its variable says off, and they all read it the same
way: ``off``, ``0``, ``false`` or ``no`` in any case, with spaces ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

OFF_VALUES = frozenset({"off", "0", "false", "no"})


def switched_on(name: str, env: Mapping[str, str] | None = None) -> bool:
    """True unless the variable ``name`` says off (unset or empty means on)."""
    value = (os.environ if env is None else env).get(name, "")
    return value.strip().lower() not in OFF_VALUES
