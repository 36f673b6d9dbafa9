"""The ``tune`` workflow, hyper-parameter tuning: a grid over regParam × elasticNetParam,
searched with Spark's own CrossValidator (numFolds >= 2) or TrainValidationSplit (numFolds = 1),
``parallelism`` models at a time.

The search sees only the training split (same ``testFraction`` and ``seed`` as ``train``); the
winning values are then trained and logged by ``train.run_training`` in the parent run, so the
best model's test metrics, lineage, signature and registration are exactly what ``train`` logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.data import (
    DataSource,
    profile_dataset,
    read_source,
    resolve_source,
    split_labelled,
)
from sparkml_template.errors import UserError
from sparkml_template.metrics import GATE_METRIC
from sparkml_template.pipeline import LABEL_INDEX, PREDICTION_INDEX, build_pipeline
from sparkml_template.plots import new_figure
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.params import check_training_params
from sparkml_template.workflows.train import TrainingResult, run_training

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

GRID_PARAMS = ("regParam", "elasticNetParam")
CV_METRIC = f"cv_{GATE_METRIC}"  # what the search maximises: the metric minAccuracy gates on


@dataclass(frozen=True)
class TuningPlan:
    """The checked grid and the data, ready before Spark starts."""

    source: DataSource
    grid: dict[str, list[float]]

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.grid.values())


def parse_grid(name: str, raw: str) -> list[float]:
    """``"0.0, 0.1"`` -> [0.0, 0.1] (duplicates dropped, order kept)."""
    values: list[float] = []
    for item in str(raw).split(","):
        text = item.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{name} grid value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{name} grid value {text!r} is not a finite number")
        if value not in values:
            values.append(value)
    if not values:
        raise UserError(f"{name} grid is empty: give comma-separated numbers, e.g. 0.0,0.1")
    return values


def prepare_tuning(params: dict[str, Any]) -> TuningPlan:
    """Parse both grids and range-check every value with train's own checks (no Spark yet)."""
    grid = {name: parse_grid(name, params[name]) for name in GRID_PARAMS}
    for name, values in grid.items():
        for value in values:
            check_training_params({**params, **{n: v[0] for n, v in grid.items()}, name: value})
    if params["numFolds"] < 1:
        raise UserError(
            f"numFolds must be >= 1 (1: TrainValidationSplit), got {params['numFolds']}"
        )
    if params["parallelism"] < 1:
        raise UserError(f"parallelism must be >= 1, got {params['parallelism']}")
    return TuningPlan(resolve_source(params["data"]), grid)


def search_grid(
    spark: SparkSession, params: dict[str, Any], plan: TuningPlan
) -> list[dict[str, float]]:
    """Fit every combination with Spark's validator; one result row per combination."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit

    label, fraction = params["label"], params["testFraction"]
    raw = read_source(spark, plan.source).cache()
    profile = profile_dataset(raw, label)
    # The same split as train's (same data, fraction and seed): the test rows stay unseen.
    train, _ = split_labelled(raw, label, fraction, params["seed"])
    pipeline = build_pipeline(profile, label, {**params, **{n: v[0] for n, v in plan.grid.items()}})
    lr = next(s for s in pipeline.getStages() if isinstance(s, LogisticRegression))
    builder = ParamGridBuilder()
    for name, values in plan.grid.items():
        builder.addGrid(lr.getParam(name), values)
    maps = builder.build()
    options: dict[str, Any] = {
        "estimator": pipeline,
        "estimatorParamMaps": maps,
        "evaluator": MulticlassClassificationEvaluator(
            labelCol=LABEL_INDEX, predictionCol=PREDICTION_INDEX, metricName=GATE_METRIC
        ),
        "parallelism": params["parallelism"],
        "seed": params["seed"],
    }
    if params["numFolds"] >= 2:
        fitted = CrossValidator(numFolds=params["numFolds"], **options).fit(train)
        scores, stds = fitted.avgMetrics, fitted.stdMetrics
    else:
        fitted = TrainValidationSplit(**options).fit(train)
        scores, stds = fitted.validationMetrics, []
    raw.unpersist()
    rows = []
    for i, param_map in enumerate(maps):
        row = {name: float(param_map[lr.getParam(name)]) for name in plan.grid}
        row[CV_METRIC] = float(scores[i])
        if stds:
            row[f"{CV_METRIC}_std"] = float(stds[i])
        rows.append(row)
    return rows


def save_grid_plot(rows: list[dict[str, float]], path: Path) -> Path:
    """The metric against regParam, one line per elasticNetParam (error bars: fold std)."""
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    regs = sorted({r["regParam"] for r in rows})
    for net in sorted({r["elasticNetParam"] for r in rows}):
        line = sorted((r for r in rows if r["elasticNetParam"] == net), key=lambda r: r["regParam"])
        ax.errorbar(
            [regs.index(r["regParam"]) for r in line],
            [r[CV_METRIC] for r in line],
            yerr=[r.get(f"{CV_METRIC}_std", 0.0) for r in line],
            marker="o",
            capsize=3,
            label=f"elasticNetParam={net:g}",
        )
    ax.set_xticks(range(len(regs)), [f"{r:g}" for r in regs])
    ax.set_xlabel("regParam")
    ax.set_ylabel(f"validation {GATE_METRIC}")
    ax.set_title(f"{GATE_METRIC} over the grid")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def log_search(run_id: str, rows: list[dict[str, float]]) -> dict[str, float]:
    """One nested child run per combination, then the parent's table, plot and best values."""
    import tempfile

    import mlflow

    child_ids = []
    for row in rows:
        grid_values = {name: row[name] for name in GRID_PARAMS}
        run_name = " ".join(f"{k}={v:g}" for k, v in grid_values.items())
        with mlflow.start_run(run_name=run_name, nested=True) as child:
            metrics = {k: v for k, v in row.items() if k not in GRID_PARAMS}
            tracking.log_batch(child.info.run_id, params=grid_values, metrics=metrics)
            child_ids.append(child.info.run_id)
    best_index = max(range(len(rows)), key=lambda i: rows[i][CV_METRIC])
    best = rows[best_index]
    table = {key: [r.get(key) for r in rows] for key in rows[0]}
    table["run_id"] = child_ids
    mlflow.log_table(table, artifact_file="tuning/results.json")
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(save_grid_plot(rows, Path(tmp) / "metric_over_grid.png")), "tuning")
    tracking.log_batch(
        run_id,
        params={f"best_{name}": best[name] for name in GRID_PARAMS},
        metrics={f"best_{CV_METRIC}": best[CV_METRIC], "grid_size": len(rows)},
        tags={"tuning.best_child_run_id": child_ids[best_index]},
    )
    return best


def run_tuning(
    spark: SparkSession, params: dict[str, Any], plan: TuningPlan, run_id: str
) -> TrainingResult:
    """Search, log the search, then train and log (and register, if asked) the best model."""
    kind = "cross-validation" if params["numFolds"] >= 2 else "train-validation split"
    with console().phase("search the grid", f"{plan.size} combinations, {kind}") as phase:
        rows = search_grid(spark, params, plan)
        best_row = max(rows, key=lambda r: r[CV_METRIC])
        phase.done(f"best {CV_METRIC} {best_row[CV_METRIC]:.4f}")
    best = log_search(run_id, rows)
    return run_training(spark, {**params, **{n: best[n] for n in GRID_PARAMS}}, plan.source, run_id)
