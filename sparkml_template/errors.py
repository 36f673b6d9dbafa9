"""Errors a user can cause. The entry points turn them into one line and a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the person running the job: parameters, data, model URI, environment.

    The message is printed as it is, on one line, without a traceback: write it for that person
    (say what was wrong and what is accepted).
    """

    exit_code = 2


class QualityGateError(UserError):
    """The model scored below the requested minimum; CI/CD pipelines gate on this exit code."""

    exit_code = 3


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when the message is empty): what a
    one-line error keeps of a library's multi-line exception."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
