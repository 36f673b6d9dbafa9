"""`promote` entry point: move @champion to the candidate only if it beats the champion."""

import sys

from sparkml_template.contract.dataset import DataSource
from sparkml_template.workflows.promote import prepare_promotion, run_promotion
from sparkml_template.workflows.runner import RunContext, exit_process, run_entry_point


def body(ctx: RunContext[DataSource]) -> None:
    run_promotion(ctx.spark, ctx.params, ctx.prepared, ctx.run_id)


if __name__ == "__main__":
    exit_process(run_entry_point("promote", sys.argv[1:], prepare_promotion, body))
