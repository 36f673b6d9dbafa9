"""Run an entry point script with the argv MLflow meant, in a Kubernetes pod.

MLflow's ``-b kubernetes`` backend makes the Job's ``command`` from the entry point's command line
as ``[shlex.quote(t) for t in shlex.split(line)]`` (``mlflow/projects/kubernetes.py``). A container
runtime execs that list without a shell, so every value that needed quoting arrives with its quotes:
``--master 'local[*]'`` and ``--features ''`` reach the script as ``'local[*]'`` and ``''``. The
Kubernetes variant of MLproject therefore runs ``python sparkml_template/deploy/kube_argv.py
main.py ...``: each argument that is exactly what ``shlex.quote`` makes of some value is turned back
into that value, then the script runs as ``python main.py`` would run it.

Arguments already unquoted (the same command run through a shell, as ``docker_env`` runs locally)
are left alone: ``local[*]`` is not the quoted form of anything, and stays ``local[*]``.
"""

from __future__ import annotations

import os
import runpy
import shlex
import sys


def unquote(token: str) -> str:
    """``value`` when ``token == shlex.quote(value)`` and quoting changed it; else ``token``."""
    if not token.startswith("'"):
        return token
    try:
        parts = shlex.split(token)
    except ValueError:
        return token
    if len(parts) == 1 and shlex.quote(parts[0]) == token:
        return parts[0]
    return token


def main(argv: list[str]) -> None:
    """``argv``: the script, then its arguments as the pod received them."""
    if not argv:
        raise SystemExit("usage: kube_argv.py <script.py> [args...]")
    script, *args = (unquote(a) for a in argv)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script.py` sets it
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
