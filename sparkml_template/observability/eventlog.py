"""Reading Spark's own event log: plain or zstd, single file or rolling, finished or in progress.

Spark 4 writes ``eventlog_v2_<appId>/events_<N>_<appId>.zstd`` by default: a rolling directory of
zstd files, each a series of frames (the writer flushes a frame at every job end). A live
application's last frame and last line may be incomplete; a crashed one's may be cut anywhere.
Everything here reads what can be read and counts the rest in ``ReadStats`` rather than raising:
task metrics must never fail a training run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

IN_PROGRESS = ".inprogress"
ROLLING_PREFIX = "eventlog_v2_"
_EVENTS_FILE = re.compile(r"^events_(\d+)_")
_CHUNK = 1 << 20
_ZSTD_SUFFIXES = (".zstd", ".zst")
_OTHER_CODECS = (".lz4", ".lzf", ".snappy")  # Spark's own framings: no reader in Python here
_EVENT_PREFIX = '{"Event":"'


@dataclass
class ReadStats:
    """What reading an event log met besides well-formed events, for one warning line."""

    files: int = 0
    lines: int = 0
    events: int = 0
    corrupt_lines: int = 0
    truncated_files: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    in_progress: bool = False

    @property
    def skipped(self) -> int:
        return self.corrupt_lines + self.truncated_files + len(self.unreadable_files)

    def describe(self) -> str:
        parts = [f"{self.corrupt_lines} unparseable line(s)"] if self.corrupt_lines else []
        if self.truncated_files:
            parts.append(f"{self.truncated_files} file(s) cut short")
        if self.unreadable_files:
            parts.append(f"unreadable: {', '.join(self.unreadable_files)}")
        return "; ".join(parts)


def locate_event_log(log_dir: str | Path, app_id: str) -> Path | None:
    """The rolling directory or single file Spark wrote for ``app_id`` under ``log_dir``."""
    root = Path(str(log_dir).removeprefix("file://").removeprefix("file:"))
    if not root.is_dir():
        return None
    rolling = root / f"{ROLLING_PREFIX}{app_id}"
    if rolling.is_dir():
        return rolling
    for candidate in sorted(root.glob(f"{app_id}*")):
        if candidate.is_file() and not candidate.name.startswith("."):
            return candidate
    return None


def event_log_files(path: Path) -> list[Path]:
    """The files of one application's log in the order Spark wrote them."""
    if path.is_file():
        return [path]
    numbered = []
    for child in path.iterdir():
        match = _EVENTS_FILE.match(child.name)
        if match and child.is_file():
            numbered.append((int(match.group(1)), child))
    return [p for _, p in sorted(numbered)]


def _zstd_chunks(f: IO[bytes], stats: ReadStats) -> Iterator[bytes]:
    """Decompressed bytes of every complete block, frame after frame; a cut last frame ends it."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    pending = False  # inside a frame that has not ended yet
    while chunk := f.read(_CHUNK):
        while chunk:
            try:
                out = dobj.decompress(chunk)
            except zstandard.ZstdError:
                stats.truncated_files += 1  # garbage mid-file: keep what came before it
                return
            pending = True
            if out:
                yield out
            if dobj.eof:
                chunk, dobj, pending = dobj.unused_data, dctx.decompressobj(), False
            else:
                chunk = b""
    if pending:
        stats.truncated_files += 1


def _plain_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def iter_lines(path: Path, stats: ReadStats | None = None) -> Iterator[str]:
    """Every complete line of the log at ``path`` (file or rolling directory), decoded."""
    stats = stats if stats is not None else ReadStats()
    files = event_log_files(path)
    marks = [path, *path.iterdir()] if path.is_dir() else [path]  # rolling: appstatus_*
    stats.in_progress = any(p.name.endswith(IN_PROGRESS) for p in marks)
    for file in files:
        name = file.name.removesuffix(IN_PROGRESS)
        if name.endswith(_OTHER_CODECS):
            stats.unreadable_files.append(file.name)
            continue
        stats.files += 1
        tail = b""
        with open(file, "rb") as f:
            chunks = _zstd_chunks(f, stats) if name.endswith(_ZSTD_SUFFIXES) else _plain_chunks(f)
            for chunk in chunks:
                *complete, tail = (tail + chunk).split(b"\n")
                for raw in complete:
                    stats.lines += 1
                    yield raw.decode("utf-8", errors="replace")
        if tail.strip():
            # The last line of a live or crashed log may be cut; a whole one still parses.
            stats.lines += 1
            yield tail.decode("utf-8", errors="replace")


def event_name(line: str) -> str | None:
    """The event type from a line's prefix, without parsing the JSON (Spark writes it first)."""
    if line.startswith(_EVENT_PREFIX):
        end = line.find('"', len(_EVENT_PREFIX))
        if end > 0:
            return line[len(_EVENT_PREFIX) : end]
    return None


def parse_event(line: str, stats: ReadStats) -> dict[str, Any] | None:
    """The event on ``line``, or None (counted) if it is not a JSON object with an "Event"."""
    try:
        event = json.loads(line)
    except ValueError:
        stats.corrupt_lines += 1
        return None
    if not isinstance(event, dict) or not isinstance(event.get("Event"), str):
        stats.corrupt_lines += 1
        return None
    stats.events += 1
    return event


def read_events(path: Path, stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Every parseable event of the log, in order (tests and tools; capture streams lines)."""
    stats = stats if stats is not None else ReadStats()
    for line in iter_lines(path, stats):
        if line.strip():
            event = parse_event(line, stats)
            if event is not None:
                yield event


def write_plain_copy(path: Path, out: Path) -> Path:
    """One uncompressed file with the same lines (what ``spark.eventLog.compress=false`` gives)."""
    with open(out, "w", encoding="utf-8") as f:
        for line in iter_lines(path):
            f.write(line + "\n")
    return out
