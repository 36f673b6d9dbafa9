"""Task names and the column names a pipeline writes, shared by your modules and the machinery.

For classification the label is indexed on the way in (training only) and mapped back on the way
out, so ``prediction`` holds the original label strings (also what MLflow's pyfunc flavour
returns when the model is served). For regression the label is cast to double and
``prediction`` is the number.
"""

from __future__ import annotations

CLASSIFICATION = "classification"
REGRESSION = "regression"
AUTO = "auto"
TASKS = (AUTO, CLASSIFICATION, REGRESSION)

LABEL_INDEX = "label_index"
LABEL_VALUE = "label_value"  # the regression label as a double
FEATURES = "features"
PREDICTION_INDEX = "prediction_index"
PREDICTION = "prediction"
PROBABILITY = "probability"
RAW_PREDICTION = "raw_prediction"


def prediction_type(task: str) -> str:
    """The MLflow type of the ``prediction`` column a pipeline of ``task`` outputs.

    Every Spark ML predictor outputs a double; a classification pipeline ends with
    ``IndexToString``, which turns it back into the label's class as a string. Known from the
    pipeline's shape, so the logged signature needs no Spark job to find it out.
    """
    return "string" if task == CLASSIFICATION else "double"
