"""Yours: the few modules a user of the template edits. Nothing else needs changing to bring your
data or your model; the machinery calls these hooks and no other name in this package:

- ``data.read_source``, ``data.read_for_passes``, ``data.split_labelled``: how data is read and
  split into training and held-out rows;
- ``estimators.ESTIMATORS``: the models the ``estimator`` parameter chooses from;
- ``pipeline.build_pipeline``: the Spark ML pipeline, from a validated dataset's columns;
- ``scoring.evaluate_model_output``, ``scoring.GATES``, ``scoring.validation_thresholds``: how a
  model is scored and what it must meet (the report types come with them);
- ``charts.save_*``: the charts an evaluation logs.

These modules import only ``sparkml_template.contract`` and ``sparkml_template.errors`` (and each
other), so each imports and tests on a bare SparkSession (``tests/unit/yours``).
"""
