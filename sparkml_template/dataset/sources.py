"""What the ``data`` parameter names: a file or directory (with its format), a URI, or a table;
and a content hash of local data for the run's lineage."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from sparkml_template import PROJECT_ROOT
from sparkml_template.contract.dataset import DataSource
from sparkml_template.errors import UserError

# What a file name ends with, as opposed to a table name (`catalog.db.table` has dots too).
FILE_SUFFIXES = (
    ".csv", ".tsv", ".txt", ".gz", ".parquet", ".pq", ".json", ".orc", ".avro", ".out",
)  # fmt: skip
_TABLE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*){0,2}$")


def _format_from_name(name: str) -> str:
    lowered = name.lower().rstrip("/")
    if lowered.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return "csv"
    return "parquet"


def is_table_name(name: str, qualified: bool = False) -> bool:
    """``table``, ``db.table`` or ``catalog.db.table`` (``qualified``: a dot at least), not a file.

    A name ending in a file suffix (``scores.parquet``) is a path, whatever its dots.
    """
    if not _TABLE_NAME.match(name) or name.lower().endswith(FILE_SUFFIXES):
        return False
    return "." in name or not qualified


def resolve_source(uri: str) -> DataSource:
    """Decide what ``data`` names. Relative paths are tried against the working directory, then
    the project root (so a git-URL or Databricks run still finds the shipped data)."""
    uri = uri.strip()
    if not uri:
        raise UserError("data is empty: give a CSV/Parquet path or URI, or a table name")
    scheme = urlparse(uri).scheme
    if scheme and len(scheme) > 1 and scheme != "file":
        return DataSource(uri, _format_from_name(uri))
    path = Path(urlparse(uri).path if scheme == "file" else uri).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, PROJECT_ROOT / path]
    for candidate in candidates:
        if candidate.exists():
            fmt = _format_from_name(candidate.name)
            if candidate.is_dir() and any(candidate.glob("*.csv")):
                fmt = "csv"
            return DataSource(str(candidate.resolve()), fmt, candidate.resolve())
    if not scheme and is_table_name(uri):
        return DataSource(uri, "table")
    raise UserError(f"data not found: {uri} (looked in {Path.cwd()} and {PROJECT_ROOT})")


def content_digest(source: DataSource) -> str | None:
    """A content hash of a local file or directory (None for remote data and tables).

    MLflow's own Spark digest hashes the query plan, which does not change when the file's
    contents do; this one does.
    """
    if source.local_path is None:
        return None
    root = source.local_path
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for path in files:
        if root.is_dir() and path.name.startswith((".", "_")):
            continue  # Spark's .crc and _SUCCESS files
        digest.update(os.fsencode(path.relative_to(root) if root.is_dir() else path.name))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
