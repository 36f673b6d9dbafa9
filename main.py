"""`main` entry point (what `mlflow run .` runs): train, then evaluate on the held-out split."""

import sys

from sparkml_template.contract.dataset import DataSource
from sparkml_template.workflows.main import prepare_main, run_main
from sparkml_template.workflows.runner import RunContext, exit_process, run_entry_point


def body(ctx: RunContext[DataSource]) -> None:
    run_main(ctx.spark, ctx.params, ctx.prepared, ctx.run_id)


if __name__ == "__main__":
    exit_process(run_entry_point("main", sys.argv[1:], prepare_main, body))
