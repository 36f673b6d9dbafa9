"""Yours: the estimators the ``estimator`` parameter chooses from. Adding one is one entry.

An entry names its Spark class per task, its hyper-parameters (type, default, the range Spark
accepts) and the grid ``tune`` searches. Everything else follows from the table: the range
checks before Spark starts, the estimator ``build_pipeline`` makes, what ``train`` logs and
``tune`` searches. A hyper-parameter you add here is also declared in MLproject's ``train``
parameters (and passed in its commands), so ``mlflow run -P`` can set it: the test
``tests/unit/test_estimator_table.py`` says exactly what is missing or differs.
"""

from __future__ import annotations

from sparkml_template.contract.estimator_spec import Estimator, HyperParam
from sparkml_template.contract.names import CLASSIFICATION, REGRESSION

REG_PARAM = HyperParam("regParam", float, 0.01, low=0.0)
ELASTIC_NET_PARAM = HyperParam("elasticNetParam", float, 0.0, low=0.0, high=1.0)
MAX_ITER = HyperParam("maxIter", int, 100, low=1)
NUM_TREES = HyperParam("numTrees", int, 20, low=1)
MAX_DEPTH = HyperParam("maxDepth", int, 5, low=0, high=30, note="(Spark's range)")

ESTIMATORS: dict[str, Estimator] = {
    "linear": Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.LogisticRegression",
            REGRESSION: "pyspark.ml.regression.LinearRegression",
        },
        params=(REG_PARAM, ELASTIC_NET_PARAM, MAX_ITER),
        grid={"regParam": [0.0, 0.01, 0.1], "elasticNetParam": [0.0, 0.5]},
    ),
    "random_forest": Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.RandomForestClassifier",
            REGRESSION: "pyspark.ml.regression.RandomForestRegressor",
        },
        params=(NUM_TREES, MAX_DEPTH),
        shared=("seed",),
        grid={"numTrees": [20, 50], "maxDepth": [4, 8]},
    ),
    "gbt": Estimator(
        classes={
            CLASSIFICATION: "pyspark.ml.classification.GBTClassifier",
            REGRESSION: "pyspark.ml.regression.GBTRegressor",
        },
        params=(MAX_ITER, MAX_DEPTH),
        shared=("seed",),
        grid={"maxIter": [20, 50], "maxDepth": [3, 5]},
        binary_only=(CLASSIFICATION,),
    ),
}
