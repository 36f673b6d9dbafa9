"""Benchmark contenders (1) and (2): the template's pipeline written as users write it before
adopting the template.

    python scripts/bench/contender.py plain DATA   # default SparkSession, no MLflow
    python scripts/bench/contender.py seed DATA    # + mlflow.pyspark.ml.autolog() and
                                                   #   mlflow.spark.log_model with an input
                                                   #   example and inferred requirements
    python scripts/bench/contender.py plain DATA --task regression --estimator gbt \
        --label target --maxIter 20                # the other (task, estimator) pairs

The estimator gets the MLproject defaults the template passes it (``--maxIter`` and friends
override them, for both sides of a comparison).
"""

import argparse
from contextlib import nullcontext

from pyspark.ml import Pipeline
from pyspark.ml.classification import (
    GBTClassifier,
    LogisticRegression,
    RandomForestClassifier,
)
from pyspark.ml.evaluation import MulticlassClassificationEvaluator, RegressionEvaluator
from pyspark.ml.feature import IndexToString, StringIndexer, VectorAssembler
from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor
from pyspark.sql import SparkSession
from pyspark.sql.functions import col

CLASSES = {
    ("classification", "linear"): LogisticRegression,
    ("classification", "random_forest"): RandomForestClassifier,
    ("classification", "gbt"): GBTClassifier,
    ("regression", "linear"): LinearRegression,
    ("regression", "random_forest"): RandomForestRegressor,
    ("regression", "gbt"): GBTRegressor,
}
PARAMS = {  # the MLproject defaults each estimator takes
    "linear": {"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 100},
    "random_forest": {"numTrees": 20, "maxDepth": 5, "seed": 42},
    "gbt": {"maxIter": 100, "maxDepth": 5, "seed": 42},
}

parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=["plain", "seed"])
parser.add_argument("path")
parser.add_argument("--task", default="classification")
parser.add_argument("--estimator", default="linear")
parser.add_argument("--label", default="diagnosis")
parser.add_argument("--master", default="local[*]", help="a cluster (bench_run_cost.py --scale)")
for name in ("maxIter", "numTrees", "maxDepth"):
    parser.add_argument(f"--{name}", type=int)
args = parser.parse_args()
params = {**PARAMS[args.estimator]}
params.update({k: getattr(args, k) for k in params if getattr(args, k, None) is not None})
mode, path, label = args.mode, args.path, args.label
classification = args.task == "classification"

spark = SparkSession.builder.master(args.master).getOrCreate()
if mode == "seed":
    import mlflow

    mlflow.pyspark.ml.autolog()
reader = spark.read.option("header", True).option("inferSchema", True)
df = reader.csv(path) if path.endswith(".csv") else spark.read.parquet(path)
if not classification:
    df = df.withColumn(label, col(label).cast("double"))
train, test = df.randomSplit([0.8, 0.2], seed=42)
features = [c for c in df.columns if c != label]
with mlflow.start_run() if mode == "seed" else nullcontext():
    target = label
    stages: list = [VectorAssembler(inputCols=features, outputCol="features")]
    if classification:
        indexer = StringIndexer(inputCol=label, outputCol="label_index").fit(train)
        stages.insert(0, indexer)
        target = "label_index"
    stages.append(CLASSES[(args.task, args.estimator)](labelCol=target, **params))
    if classification:
        stages.append(IndexToString(inputCol="prediction", outputCol="predicted",
                                    labels=indexer.labels))  # fmt: skip
    model = Pipeline(stages=stages).fit(train)
    if classification:
        evaluator = MulticlassClassificationEvaluator(labelCol=target, metricName="accuracy")
    else:
        evaluator = RegressionEvaluator(labelCol=target, metricName="rmse")
    score = evaluator.evaluate(model.transform(test))
    if mode == "seed":
        mlflow.log_metric(evaluator.getMetricName(), score)
        example = test.select(*features).limit(5).toPandas()
        mlflow.spark.log_model(model, artifact_path="model", input_example=example)
print(evaluator.getMetricName(), score)
spark.stop()
