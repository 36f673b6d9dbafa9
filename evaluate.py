"""`evaluate` entry point: score a logged model on labelled data; exit 3 below minAccuracy."""

import sys

from sparkml_template.contract.dataset import DataSource
from sparkml_template.workflows.evaluate import prepare_evaluation, run_evaluation
from sparkml_template.workflows.runner import RunContext, exit_process, run_entry_point


def body(ctx: RunContext[DataSource]) -> None:
    run_evaluation(ctx.spark, ctx.params, ctx.prepared, ctx.run_id, ctx.experiment_id)


if __name__ == "__main__":
    exit_process(run_entry_point("evaluate", sys.argv[1:], prepare_evaluation, body))
