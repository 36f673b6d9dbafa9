"""The spark_python_task that runs an entry point on a Databricks cluster.

The Databricks variant's commands read ``python sparkml_template/deploy/databricks_job.py <script>
<args>``. MLflow copies this file's *text* into the job file it uploads, after a prologue that
unpacks the project and changes into its directory; so this file must not rely on ``__file__``
or on being importable. It then runs ``<script>`` exactly as ``python <script> <args>`` would.

MLflow builds the task's parameters by shell-quoting each value and splitting the command on
single spaces, so a value like ``local[*]`` arrives as ``'local[*]'`` and an empty one as ``''``.
Joining the pieces back with spaces and shell-splitting them undoes exactly that.
"""

import os
import runpy
import shlex
import sys


def task_argv(raw: list[str]) -> list[str]:
    """The entry script and its arguments, as the MLproject command meant them."""
    return shlex.split(" ".join(raw))


def main() -> None:
    argv = task_argv(sys.argv[1:])
    if not argv:
        raise SystemExit("databricks_job: no entry script given")
    sys.path.insert(0, os.getcwd())  # the unpacked project; the job file itself lives elsewhere
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
