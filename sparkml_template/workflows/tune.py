"""The ``tune`` workflow, hyper-parameter tuning: the estimator's grid from its entry in
``yours/estimators.py`` (a parameter given as a comma-separated string replaces its values),
searched on the folds Spark's CrossValidator (numFolds >= 2) or TrainValidationSplit
(numFolds = 1) makes, ``parallelism`` points at a time, on the task's gate metric (accuracy or
r2). Each point is a child run logged when it finishes (``tune_points``), so a stopped search
keeps its finished points and ``-P resume=<parent run id>`` completes it (``tune_resume``).

The search sees only the training split (same ``testFraction`` and ``seed`` as ``train``); the
winning values are then trained and logged by ``train.run_training`` in the parent run, so the
best model's test metrics, lineage, signature and registration are exactly what ``train`` logs.
That refit reuses the data the search read, cached and validated, rather than reading and
validating it a second time.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkml_template.contract.dataset import DataSource
from sparkml_template.contract.estimator_spec import (
    Estimator,
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
from sparkml_template.dataset.sources import content_digest, resolve_source
from sparkml_template.errors import UserError
from sparkml_template.runtime import tracking
from sparkml_template.runtime.console import console
from sparkml_template.runtime.params import check_training_params
from sparkml_template.runtime.preflight import check_tracking_server
from sparkml_template.workflows.fitting import Validated, read_and_validate
from sparkml_template.workflows.train import TrainingResult, run_training
from sparkml_template.workflows.tune_points import (
    GridPoint,
    PointSearch,
    fold_scores,
    make_folds,
    point_hash,
)
from sparkml_template.workflows.tune_resume import (
    DIGEST_TAG,
    PROCESS_TAG,
    RESUMED_IN_TAG,
    RESUMES_TAG,
    SEARCH_TAG,
    ResumeCheck,
    check_resumable,
    finished_children,
    process_tag,
    search_identity,
)
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
    # every other hyper-parameter the estimator takes, typed: what each point is fitted with
    held: dict[str, Any] = field(default_factory=dict)
    resume: ResumeCheck | None = None  # the stopped search this tune completes
    digest: str | None = None  # the data's content digest, when known before Spark
    launcher_run_id: str | None = None  # `mlflow run`'s own run, when it is not the parent

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.grid.values())

    @property
    def resume_run_id(self) -> str | None:
        """The run the runner starts instead of a new one: the parent being resumed."""
        return self.resume.run_id if self.resume else None


def cv_metric(task: str) -> str:
    """What the search maximises: the metric the task's gate (minAccuracy, minR2) uses."""
    return f"cv_{GATES[task].metric}"


CV_METRIC = cv_metric(CLASSIFICATION)  # the classification search's metric name


def prepare_tuning(params: dict[str, Any]) -> TuningPlan:
    """Parse the grid and range-check every value with train's own checks (no Spark yet); with
    ``resume``, check that the run named is a stopped search of the same data and grid.

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
    source = resolve_source(params["data"])
    held = {
        name: entry.param(name).type(numeric[name]) if name not in entry.shared else numeric[name]
        for name in entry.used_params
        if name not in grid
    }
    plan = TuningPlan(source, grid, fixed, held)
    resume = str(params.get("resume") or "").strip()
    if not resume:
        return plan
    check_tracking_server()  # before the store is asked about the run
    digest = content_digest(source)
    identity = search_identity(params, grid, held)
    launcher = os.environ.get("MLFLOW_RUN_ID")
    return TuningPlan(
        source,
        grid,
        fixed,
        held,
        resume=check_resumable(resume, identity, digest),
        digest=digest,
        launcher_run_id=launcher if launcher and launcher != resume else None,
    )


def _table_defaults(entry: Estimator, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every hyper-parameter of ``entry`` that tune takes as a string (a grid)
    set to the table's default, so that the refit and the checks see numbers."""
    numbers = dict(params)
    for param in entry.params:
        if isinstance(params.get(param.name), str):
            numbers[param.name] = param.default
    return numbers


def evaluator_for(task: str) -> Any:
    """Spark's evaluator of the task's gate metric, on the pipeline's own columns."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator, RegressionEvaluator

    metric = GATES[task].metric
    if task == CLASSIFICATION:
        return MulticlassClassificationEvaluator(
            labelCol=LABEL_INDEX, predictionCol=PREDICTION_INDEX, metricName=metric
        )
    return RegressionEvaluator(labelCol=LABEL_VALUE, predictionCol=PREDICTION, metricName=metric)


def grid_points(
    params: dict[str, Any], plan: TuningPlan, validated: Validated
) -> tuple[Any, list[GridPoint]]:
    """The pipeline and every combination in ParamGridBuilder's order (CrossValidator's)."""
    from pyspark.ml.tuning import ParamGridBuilder

    entry = choose(ESTIMATORS, params["estimator"])
    first = {n: v[0] for n, v in plan.grid.items()}
    values = {**_table_defaults(entry, params), **plan.fixed, **first}
    pipeline = build_pipeline(validated.profile, params["label"], values)
    spark_class = entry.spark_class(validated.profile.task)
    estimator = next(s for s in pipeline.getStages() if isinstance(s, spark_class))
    builder = ParamGridBuilder()
    for name, grid_values in plan.grid.items():
        spark_param = estimator.getParam(entry.param(name).spark)
        builder.addGrid(spark_param, [entry.param(name).type(v) for v in grid_values])
    points = []
    for index, param_map in enumerate(builder.build()):
        typed = {n: param_map[estimator.getParam(entry.param(n).spark)] for n in plan.grid}
        shown = {n: float(v) for n, v in typed.items()}
        points.append(GridPoint(index, shown, param_map, point_hash({**plan.held, **typed})))
    return pipeline, points


def _mark_search(run_id: str, params: dict[str, Any], plan: TuningPlan, digest: str | None) -> None:
    """What the search is, on the parent, before its first point: what a resume compares."""
    tags = {
        SEARCH_TAG: json.dumps(search_identity(params, plan.grid, plan.held), sort_keys=True),
        DIGEST_TAG: digest or "",
        PROCESS_TAG: process_tag(),
    }
    if plan.resume is not None:
        tags[RESUMES_TAG] = str(plan.resume.resumes + 1)
    tracking.log_batch(run_id, tags=tags)
    if plan.launcher_run_id:  # `mlflow run`'s own run: say where the work went
        tracking.log_batch(
            plan.launcher_run_id,
            tags={
                RESUMED_IN_TAG: run_id,
                "mlflow.note.content": f"This launch resumed the tune search of run {run_id}; "
                "its points, best model and report are logged there.",
            },
        )


def search(
    spark: SparkSession, params: dict[str, Any], plan: TuningPlan, validated: Validated, run_id: str
) -> tuple[list[dict[str, float]], list[str]]:
    """Every point's row and child run id, in grid order: those a resumed parent finished,
    then the others, searched now and logged one by one as they finish."""
    from mlflow.tracking import MlflowClient

    pipeline, points = grid_points(params, plan, validated)
    metric = cv_metric(validated.profile.task)
    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    say = console()
    rows: dict[int, dict[str, float]] = {}
    child_ids: dict[int, str] = {}
    if plan.resume is not None:
        done, orphans = finished_children(experiment_id, run_id, points, metric)
        for child in orphans:  # left RUNNING by a process that died: it is searched again
            MlflowClient().set_terminated(child.info.run_id, "KILLED")
        for index, child in done.items():
            logged = child.data.metrics
            kept = {k: logged[k] for k in (metric, f"{metric}_std") if k in logged}
            rows[index] = {**points[index].values, **kept}  # as the point's search made it
            child_ids[index] = child.info.run_id
        say.say(
            f"resume: {len(done)} of {len(points)} points already finished in run {run_id}; "
            f"searching {len(points) - len(done)}"
        )
    pending = [p for p in points if p.index not in rows]
    cross_validated = params["numFolds"] >= 2
    train, _ = split_labelled(
        validated.data, params["label"], params["testFraction"], params["seed"]
    )
    folds = make_folds(train, params["numFolds"], params["seed"]) if pending else None
    evaluator = evaluator_for(validated.profile.task)

    def score(point: GridPoint, stop: Any) -> list[float]:
        assert folds is not None
        return fold_scores(pipeline, evaluator, folds, point, stop)

    runner = PointSearch(
        spark, experiment_id, run_id, metric, cross_validated, score, params["parallelism"]
    )

    def finished(point: GridPoint) -> None:
        value = runner.rows[point.index][metric]
        say.say(f"point {point.index + 1}/{len(points)} {point.name}: {metric} {value:.4f}")

    try:
        runner.run(pending, finished)
    finally:
        if folds is not None:
            folds.release()
    rows.update(runner.rows)
    child_ids.update(runner.child_ids)
    order = sorted(rows)
    return [rows[i] for i in order], [child_ids[i] for i in order]


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


def log_results(
    run_id: str, rows: list[dict[str, float]], child_ids: list[str], grid: list[str]
) -> dict[str, float]:
    """The parent's results table, plot and best values (the first best in grid order, as
    CrossValidator picks it); the child runs are already logged."""
    import tempfile

    metric = next(k for k in rows[0] if k.startswith("cv_") and not k.endswith("_std"))
    best_index = max(range(len(rows)), key=lambda i: rows[i][metric])
    best = rows[best_index]
    table = {key: [r.get(key) for r in rows] for key in rows[0]}
    table["run_id"] = child_ids
    tracking.log_table(run_id, table, "tuning/results.json")
    with tempfile.TemporaryDirectory() as tmp:
        plot = save_grid_plot(rows, grid, Path(tmp) / "metric_over_grid.png")
        tracking.log_artifact_files(run_id, plot, "tuning")
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
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = None if plan.resume else pool.submit(content_digest, plan.source)  # while read
        validated = read_and_validate(spark, params, plan.source, cache=True)
        data_digest = plan.digest if hashing is None else hashing.result()
    try:
        _mark_search(run_id, params, plan, data_digest)
        with console().phase("search the grid", f"{plan.size} combinations, {kind}") as phase:
            rows, child_ids = search(spark, params, plan, validated, run_id)
            metric = next(k for k in rows[0] if k.startswith("cv_") and not k.endswith("_std"))
            best_row = max(rows, key=lambda r: r[metric])
            phase.done(f"best {metric} {best_row[metric]:.4f}")
        grid = list(plan.grid)
        best = log_results(run_id, rows, child_ids, grid)
        entry = choose(ESTIMATORS, params["estimator"])
        chosen = {n: entry.param(n).type(best[n]) for n in grid}
        values = {**_table_defaults(entry, params), **plan.fixed, **chosen}
        return run_training(spark, values, plan.source, run_id, validated)
    finally:
        validated.data.unpersist()
