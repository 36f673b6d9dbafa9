"""Spark job tags, on classic Spark and over Spark Connect alike.

The run's task capture, the environment probe and tune's search each tag the jobs their thread
starts, and the last two cancel their own jobs by tag. The two APIs differ (``SparkContext``'s
``addJobTag``/``cancelJobsWithTag`` here, the session's ``addTag``/``interruptTag`` over
Connect, where there is no ``SparkContext``); this is the one place that tells them apart.
Tags are thread-local in both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkml_template.runtime.session import is_connect_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def add_job_tag(spark: SparkSession, tag: str) -> None:
    """Tag every job this thread starts from now on."""
    if is_connect_session(spark):
        spark.addTag(tag)  # the server tags the jobs it runs for us
    else:
        spark.sparkContext.addJobTag(tag)


def remove_job_tag(spark: SparkSession, tag: str) -> None:
    if is_connect_session(spark):
        spark.removeTag(tag)
    else:
        spark.sparkContext.removeJobTag(tag)


def clear_job_tags(spark: SparkSession) -> None:
    """Drop every tag this thread carries (a job that must not count as another's work)."""
    if is_connect_session(spark):
        spark.clearTags()
    else:
        spark.sparkContext.clearJobTags()


def cancel_jobs_with_tag(spark: SparkSession, tag: str) -> None:
    """Cancel the running jobs that carry ``tag``."""
    if is_connect_session(spark):
        spark.interruptTag(tag)
    else:
        spark.sparkContext.cancelJobsWithTag(tag)
