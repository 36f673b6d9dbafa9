"""Library behind the template's entry points: one module per concern.

Nothing here creates a SparkSession or touches MLflow at import time, so every module can be
imported (and tested) on its own.
"""

__version__ = "0.1.0"
