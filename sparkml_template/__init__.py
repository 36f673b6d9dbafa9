"""The library behind the template's entry points.

``yours``: the few modules a user edits (how data is read and split, the estimator table, the
pipeline, how a model is scored and gated, its charts), standing only on ``contract`` (the names,
types and helpers both sides share). The template's machinery calls them only from
``workflows``, at the hooks ``yours/__init__.py`` lists; the rest of it sits in layers, each
depending only on those below (the contracts in ``pyproject.toml`` are checked by the tests):

- ``workflows``: one module per entry point (train, evaluate, tune, promote, predict, main), the
  Spark part of training they share (``fitting``) and the frame they all run in (``runner``);
- ``deploy``: the Databricks and Kubernetes variants of the project and their submission;
- ``observability``: what each Spark task did, from the event log or the Spark UI's REST API,
  and what the model learned;
- ``runtime``: parameters, Java and Spark start-up, the JVM archive, probes, MLflow logging;
- ``dataset``: what ``data`` names, the validation job, Parquet footers, a content hash.

Nothing here creates a SparkSession or touches MLflow at import time, so every module can be
imported (and tested) on its own.
"""

from pathlib import Path

__version__ = "0.1.0"

# The project checkout (MLproject, data/, requirements.txt): relative data paths and the
# deploy variants are resolved against it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
