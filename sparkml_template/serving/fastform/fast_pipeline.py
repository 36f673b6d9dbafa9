"""Score a saved Spark ML pipeline with numpy and pandas: no JVM, the Spark model's answers.

Reads the directory Spark ML itself wrote (``PipelineModel.write().save``, the ``sparkml/``
folder of MLflow's Spark flavour): each stage's ``metadata/part-*`` JSON (its params) and its
``data/*.parquet`` (read with pyarrow), and reproduces every stage in float64, in Spark's own
order of operations. The stages are those the template's pipelines are made of; any other
stage makes ``load_pipeline`` raise ``NotConvertible``, naming it.

This package is shipped inside the logged model (its ``code`` folder, as ``sparkml_fastform``) and
this module is MLflow's pyfunc loader for it (``_load_pyfunc``): it imports nothing from the
project and nothing of Spark.
``SPARKML_FAST_SERVING=off`` in the serving process scores with Spark instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .fast_base import OFF_VALUES, PREDICTION, SWITCH, NotConvertible, Stage, _metadata, _param
from .fast_features import (
    Imputer,
    IndexToString,
    OneHotEncoder,
    SqlCasts,
    StringIndexer,
    VectorAssembler,
)
from .fast_predictors import LinearRegression, LogisticRegression, Predictor, TreeEnsemble

_ESTIMATORS = {
    "org.apache.spark.ml.classification.LogisticRegressionModel": None,
    "org.apache.spark.ml.regression.LinearRegressionModel": None,
    "org.apache.spark.ml.classification.RandomForestClassificationModel": "forest_classifier",
    "org.apache.spark.ml.regression.RandomForestRegressionModel": "forest_regressor",
    "org.apache.spark.ml.classification.GBTClassificationModel": "gbt_classifier",
    "org.apache.spark.ml.regression.GBTRegressionModel": "gbt_regressor",
    "org.apache.spark.ml.classification.DecisionTreeClassificationModel": "tree_classifier",
    "org.apache.spark.ml.regression.DecisionTreeRegressionModel": "tree_regressor",
}
CONVERTIBLE = (
    "org.apache.spark.ml.feature.SQLTransformer",
    "org.apache.spark.ml.feature.ImputerModel",
    "org.apache.spark.ml.feature.StringIndexerModel",
    "org.apache.spark.ml.feature.OneHotEncoderModel",
    "org.apache.spark.ml.feature.VectorAssembler",
    "org.apache.spark.ml.feature.IndexToString",
    *_ESTIMATORS,
)


def _stage(stage_dir: Path, position: int) -> Stage:
    meta = _metadata(stage_dir)
    cls = meta.get("class", "?")
    short = cls.rsplit(".", 1)[-1]
    name = f"stage {position} ({short})"
    if cls == "org.apache.spark.ml.feature.SQLTransformer":
        return SqlCasts(name, meta)
    if cls == "org.apache.spark.ml.feature.ImputerModel":
        return Imputer(name, meta, stage_dir)
    if cls == "org.apache.spark.ml.feature.StringIndexerModel":
        return StringIndexer(name, meta, stage_dir)
    if cls == "org.apache.spark.ml.feature.OneHotEncoderModel":
        return OneHotEncoder(name, meta, stage_dir)
    if cls == "org.apache.spark.ml.feature.VectorAssembler":
        return VectorAssembler(name, meta)
    if cls == "org.apache.spark.ml.feature.IndexToString":
        return IndexToString(name, meta)
    if short == "LogisticRegressionModel":
        return LogisticRegression(name, meta, stage_dir)
    if short == "LinearRegressionModel":
        return LinearRegression(name, meta, stage_dir)
    if cls in _ESTIMATORS:
        return TreeEnsemble(name, meta, stage_dir, _ESTIMATORS[cls])
    raise NotConvertible(name, f"no numpy equivalent for {cls}")


class FastPipeline:
    """A fitted Spark ML pipeline, loaded from its saved directory, scored with numpy."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        inputs: list[str] = []
        for stage in stages:
            inputs += [c for c in stage.inputs if c not in inputs]
        self.input_columns = inputs
        predictors = [s for s in stages if isinstance(s, Predictor)]
        self.predictor = predictors[-1] if predictors else None

    def transform(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Every column the pipeline makes, by name (vectors as 2-D arrays); a column the
        frame lacks is null in every row, as in a batch where it is."""
        n = len(frame)
        cols: dict[str, Any] = {c: frame[c].to_numpy() for c in frame.columns}
        for stage in self.stages:
            stage.apply(cols, n)
        return cols

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """What MLflow's Spark pyfunc returns: the ``prediction`` column as a list."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        values = self.transform(frame.reset_index(drop=True))[PREDICTION]
        if values.dtype == object:
            return list(values)
        return [float(v) for v in values]


def load_pipeline(path: str | os.PathLike[str]) -> FastPipeline:
    """The pipeline Spark saved at ``path``; ``NotConvertible`` names the first stage that is
    not reproduced."""
    root = Path(path)
    meta = _metadata(root)
    if meta.get("class") != "org.apache.spark.ml.PipelineModel":
        raise NotConvertible("the model", f"not a PipelineModel: {meta.get('class')}")
    stages = []
    for position, uid in enumerate(_param(meta, "stageUids", [])):
        found = sorted((root / "stages").glob(f"*_{uid}"))
        if len(found) != 1:
            raise NotConvertible(f"stage {position} ({uid})", "its saved directory is missing")
        stages.append(_stage(found[0], position))
    return FastPipeline(stages)


CONF_KEY = "fast_pipeline"  # the MLmodel's python_function config this package reads
FORM_KEY = "form"
FAST = "fast"


def switched_off(env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(SWITCH, "")
    return value.strip().lower() in OFF_VALUES


def logged_form(path: str | os.PathLike[str]) -> str:
    """The form the model was logged to serve (its MLmodel's ``fast_pipeline.form``): ``spark``
    when its numpy form did not convert or disagreed with Spark; ``fast`` otherwise."""
    import yaml

    try:
        mlmodel = yaml.safe_load((Path(path).parent / "MLmodel").read_text())
        conf = mlmodel["flavors"]["python_function"].get(CONF_KEY) or {}
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return FAST
    return str(conf.get(FORM_KEY, FAST))


def _load_pyfunc(path: str) -> Any:
    """MLflow's pyfunc entry: ``path`` is the model's ``sparkml`` directory."""
    if switched_off() or logged_form(path) != FAST:
        from .spark_form import load_spark_form

        return load_spark_form(path)
    return load_pipeline(path)
