"""Keeping secrets out of artifacts: Spark conf is redacted the way Spark's own UI redacts it."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Spark's default for spark.redaction.regex (core/.../internal/config/package.scala).
DEFAULT_REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key"
REDACTED = "*********(redacted)"


def compile_redaction_regex(pattern: str | None) -> re.Pattern[str]:
    """Spark's pattern in Python's dialect; Spark's default if it does not compile here.

    The default is always added: a user pattern narrower than Spark's must not un-redact keys.
    """
    patterns = [DEFAULT_REDACTION_REGEX]
    if pattern and pattern != DEFAULT_REDACTION_REGEX:
        try:
            re.compile(pattern)
            patterns.append(pattern)
        except re.error:
            pass
    body = "|".join(f"(?:{p.removeprefix('(?i)')})" for p in patterns)
    return re.compile(body, re.IGNORECASE)


def redact_conf(items: Iterable[tuple[str, str]], pattern: str | None = None) -> dict[str, str]:
    """Replace the value of every entry whose key or value matches the pattern, as Spark does."""
    regex = compile_redaction_regex(pattern)
    return {
        key: REDACTED if regex.search(key) or regex.search(value or "") else value
        for key, value in sorted(items)
    }
