"""The numpy form of a saved Spark ML pipeline (``fast_pipeline.load_pipeline``), shipped inside
each logged model so that serving needs neither Spark nor the project."""
