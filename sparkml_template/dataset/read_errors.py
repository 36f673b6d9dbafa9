"""Input Spark cannot read, as one line: which file, and why.

A damaged or truncated Parquet file, a CSV part that is binary or has malformed rows, a file
deleted or made unreadable while a job reads it, a directory this user may not list: Spark
reports each as a long Java stack trace, wherever in the run the data happens to be read (the
schema, the validation job, a fit, a write). ``unreadable_input`` finds the file and the
innermost cause in that text, so the runner can turn any of them into a ``UserError`` in one
place (docs/failures.md lists the cases).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

from sparkml_template.errors import UserError

# FAILED_READ_FILE.NO_HINT / .FILE_NOT_EXIST / .CANNOT_READ_FILE_FOOTER / ...: "… reading file
# <uri>. <more>" (the path may hold dots; the sentence's own dot is followed by a space).
_READING = re.compile(
    r"\[FAILED_READ_FILE[\w.]*\] Encountered error while reading file (\S+?)\.(?=\s|$)"
)
_DENIED = re.compile(r"java\.nio\.file\.AccessDeniedException: (\S+?):? Permission denied")
_NOT_FOUND_DENIED = re.compile(r"java\.io\.FileNotFoundException: (\S+) \(Permission denied\)")
_CAUSE = re.compile(r"^Caused by: [\w.$]+(?:: (.*))?$", re.MULTILINE)
_CONDITION = re.compile(r"^\[[A-Z_.]+\]\s*")
_SQLSTATE = re.compile(r"\s*SQLSTATE: \w+\s*$")
MAX_CAUSE_CHARS = 200
# What a malformed CSV row is refused by, and where to change that.
MALFORMED_HINT = "CSV is read with mode=FAILFAST in sparkml_template/yours/data.py"


def _error_text(exc: BaseException) -> str:
    """Everything the exception says, Java causes included (Py4J asks the JVM for it)."""
    parts = []
    for getter in (lambda: str(exc), lambda: getattr(exc, "_stackTrace", None)):
        try:
            text = getter()
        except Exception:  # a dead JVM cannot describe its exception
            continue
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)


def _display(uri: str) -> str:
    """``file:///a/b%20c.csv`` -> ``/a/b c.csv``; other URIs as they are."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return uri


def _shorten(text: str) -> str:
    """One printable line of at most ``MAX_CAUSE_CHARS`` (a binary file's bytes included)."""
    line = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return line if len(line) <= MAX_CAUSE_CHARS else line[: MAX_CAUSE_CHARS - 1] + "…"


def _cause(text: str, file: str) -> str:
    """The innermost Java cause, in words; the file's own name taken out of it."""
    if "Permission denied" in text:
        return "permission denied"
    if "FAILED_READ_FILE.FILE_NOT_EXIST" in text:
        return "the file disappeared while it was being read (deleted or replaced)"
    causes = [c.strip() for c in _CAUSE.findall(text) if c and c.strip()]
    if not causes:
        if "FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER" in text:
            return "not a readable Parquet file (damaged or truncated?): cannot read its footer"
        return "Spark could not read it"
    cause = _SQLSTATE.sub("", _CONDITION.sub("", causes[-1]))
    names = {file, _display(file), urlparse(file).path, "file:" + _display(file)}
    for name in sorted(names, key=len, reverse=True):
        cause = cause.replace(name, "the file")
    cause = _shorten(cause)
    if "MALFORMED_CSV_RECORD" in text:
        return f"{cause} (a row that does not fit the header; {MALFORMED_HINT})"
    if "ChecksumException" in text:
        return f"its checksum does not match its .crc file (damaged or changed): {cause}"
    if "org.apache.parquet" in text or "footer" in cause.lower():
        return f"not a readable Parquet file (damaged or truncated?): {cause}"
    return cause


def unreadable_input(exc: BaseException) -> UserError | None:
    """A ``UserError`` naming the file Spark could not read and why, or None when ``exc`` is not
    about reading input (then it is a bug, or another failure the caller handles)."""
    if isinstance(exc, UserError):
        return None
    text = _error_text(exc)
    found = _READING.search(text)
    if found is None:
        found = _DENIED.search(text) or _NOT_FOUND_DENIED.search(text)
    if found is None:
        return None
    file = found.group(1)
    return UserError(f"cannot read {_display(file)}: {_cause(text, file)}")
