"""`train` entry point: fit the pipeline, log params, metrics, lineage and the model."""

import sys

from sparkml_template.contract.dataset import DataSource
from sparkml_template.workflows.runner import RunContext, exit_process, run_entry_point
from sparkml_template.workflows.train import prepare_training, run_training


def body(ctx: RunContext[DataSource]) -> None:
    run_training(ctx.spark, ctx.params, ctx.prepared, ctx.run_id)


if __name__ == "__main__":
    exit_process(run_entry_point("train", sys.argv[1:], prepare_training, body))
