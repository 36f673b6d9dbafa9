"""Benchmark contenders (1) and (2): the template's pipeline written as users write it before
adopting the template.

    python scripts/bench/contender.py plain DATA   # default SparkSession, no MLflow
    python scripts/bench/contender.py seed DATA    # + mlflow.pyspark.ml.autolog() and
                                                   #   mlflow.spark.log_model with an input
                                                   #   example and inferred requirements
"""

import sys
from contextlib import nullcontext

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import IndexToString, StringIndexer, VectorAssembler
from pyspark.sql import SparkSession

mode, path = sys.argv[1], sys.argv[2]
label = "diagnosis"
spark = SparkSession.builder.master("local[*]").getOrCreate()
if mode == "seed":
    import mlflow

    mlflow.pyspark.ml.autolog()
reader = spark.read.option("header", True).option("inferSchema", True)
df = reader.csv(path) if path.endswith(".csv") else spark.read.parquet(path)
train, test = df.randomSplit([0.8, 0.2], seed=42)
features = [c for c in df.columns if c != label]
with mlflow.start_run() if mode == "seed" else nullcontext():
    indexer = StringIndexer(inputCol=label, outputCol="label_index").fit(train)
    stages = [
        indexer,
        VectorAssembler(inputCols=features, outputCol="features"),
        LogisticRegression(featuresCol="features", labelCol="label_index", regParam=0.01),
        IndexToString(inputCol="prediction", outputCol="predicted", labels=indexer.labels),
    ]
    model = Pipeline(stages=stages).fit(train)
    evaluator = MulticlassClassificationEvaluator(labelCol="label_index", metricName="accuracy")
    accuracy = evaluator.evaluate(model.transform(test))
    if mode == "seed":
        mlflow.log_metric("accuracy", accuracy)
        example = test.select(*features).limit(5).toPandas()
        mlflow.spark.log_model(model, artifact_path="model", input_example=example)
print("accuracy", accuracy)
spark.stop()
