"""`predict` entry point: batch-score data with a logged model, write Parquet (or a table)."""

import sys

from sparkml_template.workflows.predict import PredictPlan, prepare_predict, run_predict
from sparkml_template.workflows.runner import RunContext, exit_process, run_entry_point


def body(ctx: RunContext[PredictPlan]) -> None:
    run_predict(ctx.spark, ctx.params, ctx.prepared, ctx.run_id, ctx.experiment_id)


if __name__ == "__main__":
    exit_process(run_entry_point("predict", sys.argv[1:], prepare_predict, body))
