"""The model registry: versions with a description and lineage tags, and the two aliases.

MLflow 3 deprecates stages (None/Staging/Production/Archived) in favour of aliases, which are
movable names on versions. The template uses two: ``challenger`` (the newest registered
version, set by ``train``) and ``champion`` (the version in production, moved only by
``promote``). A URI such as ``models:/name@champion`` always means the current champion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparkml_template.errors import UserError
from sparkml_template.runtime.tracking import REGISTERED_TAG

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from sparkml_template.yours.scoring import Report

CHALLENGER = "challenger"
CHAMPION = "champion"
GIT_COMMIT_RUN_TAG = "mlflow.source.git.commit"  # set by `mlflow run` on git checkouts
DATA_DIGEST_RUN_TAG = "data.digest"  # set by training (data.content_digest)
DESCRIPTION_METRICS = (
    "accuracy",
    "f1",
    "areaUnderROC",
    "weightedPrecision",
    "weightedRecall",
    "r2",
    "rmse",
    "mae",
    "test_rows",
    "train_rows",
)
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?$")


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI and what it points at: a registry version (if any) and the training run."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None


def _client() -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _not_found(exc: Exception) -> bool:
    return (
        getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"
        or "not found" in str(exc).lower()
    )


def get_version(name: str, version: str | None = None, alias: str | None = None) -> ModelVersion:
    """One version of a registered model by number or alias; a missing one is one clear line."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _not_found(exc):
            raise UserError(f"no registered model named {name!r}") from None
        raise
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _not_found(exc) or "alias" in str(exc).lower():
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise UserError(f"registered model {name!r} has no {what}") from None
        raise


def find_champion(name: str) -> ModelVersion | None:
    """The version with the ``champion`` alias, or None if no version has it yet."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if _not_found(exc) or "alias" in str(exc).lower():
            return None
        raise


def resolve_model_uri(uri: str) -> ResolvedModel:
    """Check a model URI before loading it, so an unknown name or alias fails in one line."""
    match = _REGISTRY_URI.match(uri.strip())
    if match:
        found = get_version(match["name"], match["version"], match["alias"])
        return ResolvedModel(uri, found.name, str(found.version), found.run_id)
    if uri.startswith("models:/") and "/" in uri[len("models:/") :].strip("/"):
        raise UserError(
            f"model URI {uri!r} names a stage or a path; use models:/<name>/<version> or "
            "models:/<name>@<alias> (MLflow 3 replaces stages with aliases)"
        )
    from mlflow.models import get_model_info

    try:
        info = get_model_info(uri)
    except Exception as exc:  # MlflowException, OSError: all mean "no model there"
        text = str(exc).strip().splitlines()
        raise UserError(
            f"cannot find model {uri!r}: {text[0] if text else type(exc).__name__}"
        ) from None
    return ResolvedModel(uri, None, None, info.run_id)


def describe_run(run_id: str, metrics: dict[str, float], classes: list[str]) -> str:
    """Markdown for a version's description: the key held-out metrics of its training run."""
    rows = [
        f"| {key} | {int(metrics[key]) if key.endswith('_rows') else f'{metrics[key]:.4f}'} |"
        for key in DESCRIPTION_METRICS
        if key in metrics
    ]
    return "\n".join(
        [
            f"Trained by run `{run_id}`; held-out metrics:",
            "",
            "| metric | value |",
            "| --- | --- |",
            *rows,
            *(
                ["", f"Label classes (index order): {', '.join(f'`{c}`' for c in classes)}"]
                if classes
                else []
            ),
        ]
    )


def register_training_run(
    name: str, version: int | str, run_id: str, report: Report
) -> ModelVersion:
    """Describe and tag the version ``log_model`` just registered, and make it the challenger.

    Tags carry the lineage a reviewer checks before promoting: the git commit (present when
    ``mlflow run`` launched the training from a git checkout) and the data's content digest.
    """
    client = _client()
    run = client.get_run(run_id)
    metrics = {**report.metrics, **run.data.metrics}
    tags = {"labels": json.dumps(report.classes), "task": report.task}
    for run_tag, version_tag in (
        (GIT_COMMIT_RUN_TAG, "git.commit"),
        (DATA_DIGEST_RUN_TAG, "data.digest"),
    ):
        if run.data.tags.get(run_tag):
            tags[version_tag] = run.data.tags[run_tag]
    version = str(version)
    client.update_model_version(name, version, describe_run(run_id, metrics, report.classes))
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_tag(run_id, REGISTERED_TAG, f"{name}/{version}")
    return client.get_model_version(name, version)


def set_champion(name: str, version: str) -> None:
    """Move ``@champion`` to ``version`` (the only place the template does so)."""
    _client().set_registered_model_alias(name, CHAMPION, version)
