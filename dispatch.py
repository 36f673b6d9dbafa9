"""Send the project to Databricks or Kubernetes (see docs/databricks.md, docs/kubernetes.md).

    python dispatch.py databricks --experiment-name /Users/<you>/pyspark-template [-P k=v ...]
    python dispatch.py kubernetes --image <registry>/pyspark-mlflow-template-env:<tag> [-P k=v ...]

It stages the backend's variant of the project (generated from MLproject), checks the backend
config, and submits with MLflow; ``--stage DIR`` only writes the variant and prints the
equivalent ``mlflow run`` command.
"""

import sys

from sparkml_template.deploy.dispatch import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
