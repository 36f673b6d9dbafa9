"""Yours: the few modules a user of the template edits. Nothing else needs changing to bring your
data or your model. The machinery calls the names in ``HOOKS`` and no other name of this package
(``tests/unit/test_architecture.py`` checks it):

- ``data``: how data is read and split into training and held-out rows;
- ``estimators``: the models the ``estimator`` parameter chooses from (one entry each);
- ``pipeline``: the Spark ML pipeline, from a validated dataset's columns;
- ``scoring``: how a model is scored (the report types come with it), each task's primary
  metric (``GATES``) and what a model must meet (``validation_thresholds``);
- ``charts``: the charts an evaluation and what the model learned log.

These modules import only ``sparkml_template.contract`` and ``sparkml_template.errors`` (and each
other), so each imports and tests on a bare SparkSession (``tests/unit/yours``).
"""

HOOKS: dict[str, frozenset[str]] = {
    "data": frozenset({"read_source", "read_for_passes", "split_labelled"}),
    "estimators": frozenset({"ESTIMATORS"}),
    "pipeline": frozenset({"build_pipeline"}),
    "scoring": frozenset(
        {
            "evaluate_model_output",
            "GATES",
            "validation_thresholds",
            "Report",
            "ClassificationReport",
        }
    ),
    "charts": frozenset({"evaluation_charts", "learned_charts"}),
}
