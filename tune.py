"""`tune` entry point: grid search (nested child runs), then log and register the best model."""

import sys

from sparkml_template.workflows.runner import RunContext, exit_process, run_entry_point
from sparkml_template.workflows.tune import TuningPlan, prepare_tuning, run_tuning


def body(ctx: RunContext[TuningPlan]) -> None:
    run_tuning(ctx.spark, ctx.params, ctx.prepared, ctx.run_id)


if __name__ == "__main__":
    exit_process(run_entry_point("tune", sys.argv[1:], prepare_tuning, body))
