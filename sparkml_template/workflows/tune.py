"""The ``tune`` workflow, hyper-parameter tuning: the estimator's grid from its entry in
``yours/estimators.py`` (a parameter given as a comma-separated string replaces its values),
searched with Spark's own CrossValidator (numFolds >= 2) or TrainValidationSplit (numFolds = 1),
``parallelism`` models at a time, on the task's gate metric (accuracy or r2).

The search sees only the training split (same ``testFraction`` and ``seed`` as ``train``); the
winning values are then trained and logged by ``train.run_training`` in the parent run, so the
best model's test metrics, lineage, signature and registration are exactly what ``train`` logs.
That refit reuses the data the search read, cached and validated, rather than reading and
validating it a second time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.estimator_spec import (
    Estimator,
    HyperParam,
    check_values,
    choose,
    grid_strings,
    parse_grid,
)
from sparkml_template.contract.figures import new_figure
from sparkml_template.contract.names import (
    CLASSIFICATION,
    LABEL_INDEX,
    LABEL_VALUE,
    PREDICTION,
    PREDICTION_INDEX,
)
from sparkml_template.dataset.sources import resolve_source
from sparkml_template.errors import UserError
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.params import check_training_params
from sparkml_template.workflows.fitting import Validated, read_and_validate
from sparkml_template.workflows.train import TrainingResult, run_training
from sparkml_template.yours.data import split_labelled
from sparkml_template.yours.estimators import ESTIMATORS
from sparkml_template.yours.pipeline import build_pipeline
from sparkml_template.yours.scoring import GATES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class TuningPlan:
    """The checked grid and the data, ready before Spark starts."""

    source: DataSource
    grid: dict[str, list[float]]
    # tune's comma-separated params outside the estimator's grid: their first value, fixed
    fixed: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.grid.values())


def cv_metric(task: str) -> str:
    """What the search maximises: the metric the task's gate (minAccuracy, minR2) uses."""
    return f"cv_{GATES[task].metric}"


CV_METRIC = cv_metric(CLASSIFICATION)  # the classification search's metric name


def prepare_tuning(params: dict[str, Any]) -> TuningPlan:
    """Parse the grid and range-check every value with train's own checks (no Spark yet).

    Hyper-parameters given as comma-separated strings (MLproject's tune regParam and
    elasticNetParam) that the estimator does not search are fixed at their first value; left
    empty, they take the estimator's grid (or, outside it, the table's default).
    """
    entry = choose(ESTIMATORS, params["estimator"])
    grid = entry.tuning_grid(params)
    fixed = {
        name: parse_grid(name, params[name])[0]
        for name in grid_strings(ESTIMATORS, params)
        if name not in grid
    }
    numeric = {**_table_defaults(entry, params), **fixed}
    for name, values in grid.items():
        for value in values:
            first = {n: v[0] for n, v in grid.items()}
            check_values(ESTIMATORS, {**numeric, **first, name: value})
    check_training_params(params)
    if params["numFolds"] < 1:
        raise UserError(
            f"numFolds must be >= 1 (1: TrainValidationSplit), got {params['numFolds']}"
        )
    if params["parallelism"] < 1:
        raise UserError(f"parallelism must be >= 1, got {params['parallelism']}")
    return TuningPlan(resolve_source(params["data"]), grid, fixed)


def _table_defaults(entry: Estimator, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every hyper-parameter of ``entry`` that tune takes as a string (a grid)
    set to the table's default, so that the refit and the checks see numbers."""
    numbers = dict(params)
    for param in entry.params:
        if isinstance(params.get(param.name), str):
            numbers[param.name] = param.default
    return numbers


def search_grid(
    params: dict[str, Any], plan: TuningPlan, validated: Validated
) -> list[dict[str, float]]:
    """Fit every combination with Spark's validator on ``validated`` data's training split; one
    result row per combination."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator, RegressionEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit

    label, fraction = params["label"], params["testFraction"]
    raw, profile = validated.data, validated.profile
    # The same split as train's (same data, fraction and seed): the test rows stay unseen.
    train, _ = split_labelled(raw, label, fraction, params["seed"])
    first = {n: v[0] for n, v in plan.grid.items()}
    entry = choose(ESTIMATORS, params["estimator"])
    values = {**_table_defaults(entry, params), **plan.fixed, **first}
    pipeline = build_pipeline(profile, label, values)
    spark_class = entry.spark_class(profile.task)
    estimator = next(s for s in pipeline.getStages() if isinstance(s, spark_class))
    builder = ParamGridBuilder()
    for name, values in plan.grid.items():
        spark_param = estimator.getParam(_spec(entry, name).spark)
        builder.addGrid(spark_param, [_typed(entry, name, v) for v in values])
    maps = builder.build()
    gate = GATES[profile.task]
    if profile.task == CLASSIFICATION:
        evaluator: Any = MulticlassClassificationEvaluator(
            labelCol=LABEL_INDEX, predictionCol=PREDICTION_INDEX, metricName=gate.metric
        )
    else:
        evaluator = RegressionEvaluator(
            labelCol=LABEL_VALUE, predictionCol=PREDICTION, metricName=gate.metric
        )
    metric = cv_metric(profile.task)
    options: dict[str, Any] = {
        "estimator": pipeline,
        "estimatorParamMaps": maps,
        "evaluator": evaluator,
        "parallelism": params["parallelism"],
        "seed": params["seed"],
    }
    if params["numFolds"] >= 2:
        fitted = CrossValidator(numFolds=params["numFolds"], **options).fit(train)
        scores, stds = fitted.avgMetrics, fitted.stdMetrics
    else:
        fitted = TrainValidationSplit(**options).fit(train)
        scores, stds = fitted.validationMetrics, []
    rows = []
    for i, param_map in enumerate(maps):
        row = {
            name: float(param_map[estimator.getParam(_spec(entry, name).spark)])
            for name in plan.grid
        }
        row[metric] = float(scores[i])
        if stds:
            row[f"{metric}_std"] = float(stds[i])
        rows.append(row)
    return rows


def _spec(entry: Estimator, name: str) -> HyperParam:
    return next(p for p in entry.params if p.name == name)


def _typed(entry: Estimator, name: str, value: float) -> Any:
    """A grid value as Spark's param wants it: int for the int parameters (numTrees, ...)."""
    return _spec(entry, name).type(value)


def save_grid_plot(rows: list[dict[str, float]], grid: list[str], path: Path) -> Path:
    """The metric against the grid's first parameter, one line per value of the second (error
    bars: fold std)."""
    metric = next(k for k in rows[0] if k.startswith("cv_") and not k.endswith("_std"))
    x_name = grid[0]
    series = grid[1] if len(grid) > 1 else None
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    xs = sorted({r[x_name] for r in rows})
    for value in sorted({r[series] for r in rows}) if series else [None]:
        line = sorted(
            (r for r in rows if series is None or r[series] == value), key=lambda r: r[x_name]
        )
        ax.errorbar(
            [xs.index(r[x_name]) for r in line],
            [r[metric] for r in line],
            yerr=[r.get(f"{metric}_std", 0.0) for r in line],
            marker="o",
            capsize=3,
            label=f"{series}={value:g}" if series else metric,
        )
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_xlabel(x_name)
    ax.set_ylabel(f"validation {metric[3:]}")
    ax.set_title(f"{metric[3:]} over the grid")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def log_search(run_id: str, rows: list[dict[str, float]], grid: list[str]) -> dict[str, float]:
    """One nested child run per combination, then the parent's table, plot and best values."""
    import tempfile

    import mlflow

    metric = next(k for k in rows[0] if k.startswith("cv_") and not k.endswith("_std"))
    child_ids = []
    for row in rows:
        grid_values = {name: row[name] for name in grid}
        run_name = " ".join(f"{k}={v:g}" for k, v in grid_values.items())
        with mlflow.start_run(run_name=run_name, nested=True) as child:
            metrics = {k: v for k, v in row.items() if k not in grid}
            tracking.log_batch(child.info.run_id, params=grid_values, metrics=metrics)
            child_ids.append(child.info.run_id)
    best_index = max(range(len(rows)), key=lambda i: rows[i][metric])
    best = rows[best_index]
    table = {key: [r.get(key) for r in rows] for key in rows[0]}
    table["run_id"] = child_ids
    mlflow.log_table(table, artifact_file="tuning/results.json")
    with tempfile.TemporaryDirectory() as tmp:
        plot = save_grid_plot(rows, grid, Path(tmp) / "metric_over_grid.png")
        mlflow.log_artifact(str(plot), "tuning")
    tracking.log_batch(
        run_id,
        params={f"best_{name}": best[name] for name in grid},
        metrics={f"best_{metric}": best[metric], "grid_size": len(rows)},
        tags={"tuning.best_child_run_id": child_ids[best_index]},
    )
    return best


def run_tuning(
    spark: SparkSession, params: dict[str, Any], plan: TuningPlan, run_id: str
) -> TrainingResult:
    """Search, log the search, then train and log (and register, if asked) the best model.

    The data is read, cached and validated once: the search and the refit both use it.
    """
    kind = "cross-validation" if params["numFolds"] >= 2 else "train-validation split"
    validated = read_and_validate(spark, params, plan.source, cache=True)
    try:
        with console().phase("search the grid", f"{plan.size} combinations, {kind}") as phase:
            rows = search_grid(params, plan, validated)
            metric = next(k for k in rows[0] if k.startswith("cv_") and not k.endswith("_std"))
            best_row = max(rows, key=lambda r: r[metric])
            phase.done(f"best {metric} {best_row[metric]:.4f}")
        grid = list(plan.grid)
        best = log_search(run_id, rows, grid)
        entry = choose(ESTIMATORS, params["estimator"])
        chosen = {n: _typed(entry, n, best[n]) for n in grid}
        values = {**_table_defaults(entry, params), **plan.fixed, **chosen}
        return run_training(spark, values, plan.source, run_id, validated)
    finally:
        validated.data.unpersist()
