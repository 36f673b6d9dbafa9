"""What each Spark task of a run did: read from Spark's own event log (or, where it cannot be
read, the driver's REST API), turned into task, stage and executor tables, charts and metrics,
and logged to the run. Nothing here may fail a run."""
