"""`main` entry point (what `mlflow run .` runs): train, then evaluate on the held-out split."""

import sys

from sparkml_template.runner import RunContext, exit_process, run_entry_point
from sparkml_template.tracking import log_evaluation_artifacts
from sparkml_template.training import check_min_accuracy, prepare_training, run_training


def body(ctx: RunContext) -> None:
    result = run_training(ctx.spark, ctx.params, ctx.prepared, ctx.run_id)
    log_evaluation_artifacts(result.report)
    check_min_accuracy(result.report, ctx.params["minAccuracy"])


if __name__ == "__main__":
    exit_process(run_entry_point("main", sys.argv[1:], prepare_training, body))
