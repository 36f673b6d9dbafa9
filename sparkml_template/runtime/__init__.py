"""What every entry point stands on: its parameters (read from MLproject and range-checked),
Java and the SparkSession, the driver JVM's class-data archive, quick probes of remote ends,
and what a run records in MLflow."""
