"""Sending the project elsewhere: the Databricks and Kubernetes variants generated from the root
MLproject, the checks before submitting, and the job file a Databricks cluster runs."""
