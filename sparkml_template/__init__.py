"""The library behind the template's entry points.

Yours, at the top: ``data`` (reading and validating a dataset), ``pipeline`` (the Spark ML
pipeline), ``metrics`` (how a model is scored and gated) and ``plots`` (its charts). The
template's machinery sits in four subpackages, each depending only on those below it (the
contracts in ``pyproject.toml`` are checked by the tests):

- ``workflows``: one module per entry point (train, evaluate, tune, promote, predict, main) and
  the frame they all run in (``runner``);
- ``deploy``: the Databricks and Kubernetes variants of the project and their submission;
- ``observability``: what each Spark task did, from the event log or the Spark UI's REST API;
- ``runtime``: parameters, Java and Spark start-up, the JVM archive, probes, MLflow logging.

Nothing here creates a SparkSession or touches MLflow at import time, so every module can be
imported (and tested) on its own.
"""

from pathlib import Path

__version__ = "0.1.0"

# The project checkout (MLproject, data/, requirements.txt): relative data paths and the
# deploy variants are resolved against it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
