"""The run's own copy of the event log, safe to log as an artifact and replayable in the
Spark History Server.

Only the run's events are copied (plus the application-wide ones the History Server needs), as
one zstd file named ``<appId>.zstd``: the History Server reads a single file whose codec is its
extension. Secrets are removed twice: every property map is redacted by Spark's own rule (Spark
already does this for the environment, but not for a job's local properties), and then any
literal secret value (from the Spark conf or the process environment) left anywhere on a line is
replaced, whatever field carried it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from sparkml_template.runtime.redaction import REDACTED, compile_redaction_regex, redact_conf

_PROPERTY_MAPS = ("Properties", "modifiedConfigs")
_MIN_SECRET_LENGTH = 8  # shorter values would rewrite innocent text ("true", ports, ...)
_NOT_SECRET = re.compile(r"^(true|false|none|null|[\d.:]+)$", re.IGNORECASE)


def secret_values(
    conf: Iterable[tuple[str, str]],
    environ: Mapping[str, str] | None = None,
    pattern: str | None = None,
) -> list[str]:
    """Values of conf entries and environment variables whose names look secret."""
    regex = compile_redaction_regex(pattern)
    env = os.environ if environ is None else environ
    found = {v for k, v in [*conf, *env.items()] if v and regex.search(k)}
    secrets = (v for v in found if len(v) >= _MIN_SECRET_LENGTH and not _NOT_SECRET.match(v))
    return sorted(secrets, key=len, reverse=True)


def _redact_map(value: Any, pattern: str | None) -> Any:
    if isinstance(value, dict):
        return redact_conf(((str(k), str(v)) for k, v in value.items()), pattern)
    if isinstance(value, list):  # older Spark wrote [[key, value], ...]
        pairs = [(str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2]
        return [list(item) for item in redact_conf(pairs, pattern).items()]
    return value


def redact_event(event: dict[str, Any], pattern: str | None = None) -> dict[str, Any]:
    """The event with every property map redacted (environment sections, local properties)."""
    out = dict(event)
    if out.get("Event") == "SparkListenerEnvironmentUpdate":
        for section, value in event.items():
            if section not in ("Event", "Classpath Entries"):
                out[section] = _redact_map(value, pattern)
    for key in _PROPERTY_MAPS:
        if key in out:
            out[key] = _redact_map(out[key], pattern)
    return out


def _still_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


class RunLogWriter:
    """Writes kept lines to ``<dir>/eventlog/<appId>.zstd``, redacted, literal secrets scrubbed."""

    def __init__(self, out_dir: Path, app_id: str, secrets: list[str], pattern: str | None):
        import zstandard

        out_dir = out_dir / "eventlog"
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / f"{app_id}.zstd"
        self._pattern = pattern
        self._scrub = re.compile("|".join(map(re.escape, secrets))) if secrets else None
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 -- closed in close()
        self._stream = zstandard.ZstdCompressor(level=3).stream_writer(self._file)
        self.lines = 0
        self.dropped = 0
        self.has_end = False

    def write(self, line: str, event: dict[str, Any] | None) -> None:
        if event is not None and (
            event.get("Event") == "SparkListenerEnvironmentUpdate"
            or any(k in event for k in _PROPERTY_MAPS)
        ):
            line = json.dumps(redact_event(event, self._pattern), separators=(",", ":"))
        if self._scrub is not None:
            line, found = self._scrub.subn(REDACTED, line)
            if found and not _still_json(line):
                self.dropped += 1  # the value was part of the JSON's structure: drop the event
                return
        self.has_end |= line.startswith('{"Event":"SparkListenerApplicationEnd"')
        self._stream.write(line.encode("utf-8") + b"\n")
        self.lines += 1

    def close(self) -> Path:
        self._stream.close()  # closes the file too
        return self.path
