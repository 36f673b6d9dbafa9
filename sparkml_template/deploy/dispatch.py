"""Sending the project to Databricks or Kubernetes: stage the variant, check the config, submit.

The checks here run before anything is submitted and turn the usual mistakes (a malformed
backend config, no Databricks credentials, an ``existing_cluster_id``, a tracking store a
cluster cannot reach) into one line each. Submission itself is MLflow's own
``mlflow.projects.run`` (what ``mlflow run`` calls); if it fails after MLflow created the run,
that run is ended FAILED here, so none is left RUNNING.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sparkml_template import PROJECT_ROOT
from sparkml_template.deploy.variants import DEFAULT_IMAGE, stage_variant
from sparkml_template.errors import UserError
from sparkml_template.runtime.preflight import PROBE_TIMEOUT_S, tcp_probe

DATABRICKS_CONFIG = PROJECT_ROOT / "databricks" / "cluster-spec.json"
KUBERNETES_CONFIG = PROJECT_ROOT / "kubernetes" / "kubernetes_config.json"


@dataclass
class Submission:
    """What to run where; ``params`` are ``-P`` pairs, passed on to MLflow as they are."""

    backend: str
    backend_config: Path
    entry_point: str = "main"
    params: dict[str, str] | None = None
    experiment_name: str | None = None
    experiment_id: str | None = None
    image: str = DEFAULT_IMAGE


def load_backend_config(path: Path) -> dict[str, Any]:
    """The backend config JSON file as a dict, or one line saying what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read backend config {path}: {exc.strerror}") from None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise UserError(f"backend config {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(f"backend config {path} must be a JSON object, got {type(config).__name__}")
    return config


def check_databricks_spec(spec: dict[str, Any], path: Path) -> None:
    """The spec must describe a new cluster, as MLflow's databricks_spark_job mode sends it."""
    if "existing_cluster_id" in spec:
        raise UserError(
            f"{path} names existing_cluster_id, but MLflow runs projects on Databricks only on a "
            "new cluster: give a new-cluster spec (see databricks/cluster-spec.json)"
        )
    if "new_cluster" in spec:
        raise UserError(
            f"{path} wraps the cluster in new_cluster: MLflow sends this whole file as the "
            "job's new_cluster, so give the cluster spec itself (see databricks/cluster-spec.json)"
        )
    if not isinstance(spec.get("spark_version"), str) or not spec["spark_version"]:
        raise UserError(f"{path} has no spark_version (a runtime key such as 17.3.x-scala2.13)")


def _profile_of(tracking_uri: str, env: dict[str, str]) -> str:
    """The ~/.databrickscfg profile a ``databricks://profile`` tracking URI names."""
    parsed = urlparse(tracking_uri)
    name = parsed.netloc.split(":")[0] if parsed.scheme == "databricks" else ""
    return name or env.get("DATABRICKS_CONFIG_PROFILE") or "DEFAULT"


def databricks_host(tracking_uri: str, env: dict[str, str] | None = None) -> str:
    """The workspace host MLflow will use, found without any network call.

    Same order as the Databricks SDK: ``DATABRICKS_HOST`` with a token or OAuth client in the
    environment, else the profile in ``~/.databrickscfg`` (or ``DATABRICKS_CONFIG_FILE``).
    """
    env = os.environ if env is None else env
    host = env.get("DATABRICKS_HOST", "")
    has_secret = env.get("DATABRICKS_TOKEN") or (
        env.get("DATABRICKS_CLIENT_ID") and env.get("DATABRICKS_CLIENT_SECRET")
    )
    explicit_profile = urlparse(tracking_uri).netloc or env.get("DATABRICKS_CONFIG_PROFILE")
    if host and has_secret and not explicit_profile:
        return host
    if host and not has_secret and not explicit_profile:
        raise UserError(
            "DATABRICKS_HOST is set but DATABRICKS_TOKEN is not: set a personal access token "
            "(or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET)"
        )
    cfg_path = Path(env.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg")
    profile = _profile_of(tracking_uri, env)
    parser = configparser.ConfigParser()
    try:
        parser.read(cfg_path, encoding="utf-8")
    except configparser.Error as exc:
        raise UserError(f"cannot parse {cfg_path}: {exc.message.splitlines()[0]}") from None
    section = parser[profile] if parser.has_section(profile) or profile == "DEFAULT" else None
    if section is None or not section.get("host"):
        raise UserError(
            "no Databricks host and token: set DATABRICKS_HOST and DATABRICKS_TOKEN, or add a "
            f"[{profile}] profile with host and token to {cfg_path}"
        )
    if not (section.get("token") or section.get("client_secret") or section.get("auth_type")):
        raise UserError(f"profile [{profile}] in {cfg_path} has a host but no token")
    return section["host"]


def check_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail in seconds, not after the SDK's minutes of retries, when a host does not answer."""
    parsed = urlparse(url if "://" in url else f"https://{url}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    reason = tcp_probe(parsed.hostname or "", port, timeout)
    if reason is not None:
        raise UserError(f"cannot reach {parsed.hostname}:{port} ({reason})")


def databricks_tracking_uri(env: dict[str, str] | None = None) -> str:
    """``databricks`` (or the ``databricks://profile`` the user set).

    MLflow's job file sets ``MLFLOW_TRACKING_URI=databricks`` on the cluster, so the run must
    be created in the same workspace's tracking server, never in a local or other store.
    """
    env = os.environ if env is None else env
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return "databricks"
    if uri == "databricks" or uri.startswith("databricks://"):
        return uri
    raise UserError(
        f"MLFLOW_TRACKING_URI={uri}, but a Databricks job logs to its workspace's tracking "
        "server: unset it, or set it to databricks or databricks://<profile>"
    )


def check_kubernetes_config(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """MLflow's required keys, with the Job template path made absolute (tried from the
    working directory, then the project root)."""
    missing = [k for k in ("repository-uri", "kube-job-template-path") if not config.get(k)]
    if missing:
        wanted = ", ".join(missing)
        raise UserError(f"{path} lacks {wanted} (see kubernetes/kubernetes_config.json)")
    template = Path(config["kube-job-template-path"])
    found = next((p for p in (template, PROJECT_ROOT / template) if p.is_file()), None)
    if found is None:
        raise UserError(f"{path}: Job template {template} not found")
    return {**config, "kube-job-template-path": str(found.resolve())}


def kubernetes_tracking_uri(env: dict[str, str] | None = None) -> str:
    """The tracking URI the Job's pod gets: it must be a server the pod can reach."""
    env = os.environ if env is None else env
    uri = env.get("KUBE_MLFLOW_TRACKING_URI") or env.get("MLFLOW_TRACKING_URI") or ""
    if urlparse(uri).scheme not in ("http", "https", "databricks"):
        raise UserError(
            f"tracking URI {uri or '(unset)'} is local to this machine; a Kubernetes pod needs "
            "a tracking server: set MLFLOW_TRACKING_URI (or KUBE_MLFLOW_TRACKING_URI) to http(s)://"
        )
    return uri


def prepare(sub: Submission, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """Check everything that can be checked before submitting; return the config and the
    client's tracking URI."""
    config = load_backend_config(sub.backend_config)
    if sub.backend == "databricks":
        check_databricks_spec(config, sub.backend_config)
        tracking_uri = databricks_tracking_uri(env)
        check_reachable(databricks_host(tracking_uri, env))
        if not (sub.experiment_name or sub.experiment_id or _experiment_from_env(env)):
            raise UserError(
                "give --experiment-name (a workspace path such as /Users/<you>/pyspark-template) "
                "or --experiment-id: Databricks has no default experiment for jobs"
            )
        return config, tracking_uri
    if sub.backend == "kubernetes":
        kubernetes_tracking_uri(env)  # what the pod gets; the run is created from here:
        client_uri = (os.environ if env is None else env).get("MLFLOW_TRACKING_URI", "")
        return check_kubernetes_config(config, sub.backend_config), client_uri
    raise UserError(f"unknown backend {sub.backend!r}; use databricks or kubernetes")


def _experiment_from_env(env: dict[str, str] | None) -> str | None:
    env = os.environ if env is None else env
    return env.get("MLFLOW_EXPERIMENT_NAME") or env.get("MLFLOW_EXPERIMENT_ID")


def mlflow_run_command(sub: Submission, staged: Path, config_path: Path) -> str:
    """The equivalent ``mlflow run`` command line (printed by ``--stage``)."""
    cmd = ["mlflow", "run", str(staged), "-b", sub.backend, "--backend-config", str(config_path)]
    if sub.backend == "kubernetes":
        cmd.append("--build-image")  # else MLflow pushes and runs the env image, without the code
    cmd += ["-e", sub.entry_point]
    for key, value in (sub.params or {}).items():
        cmd += ["-P", f"{key}={value}"]
    if sub.experiment_name:
        cmd += ["--experiment-name", sub.experiment_name]
    if sub.experiment_id:
        cmd += ["--experiment-id", sub.experiment_id]
    return shlex.join(cmd)


def stage(sub: Submission, dest: Path) -> tuple[Path, Path]:
    """Write the variant project and its checked backend config under ``dest``."""
    config, _ = prepare(sub)
    staged = stage_variant(sub.backend, dest / "project", image=sub.image)
    config_path = dest / f"{sub.backend}-backend-config.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return staged, config_path


def submit(sub: Submission) -> str:
    """Stage, check and submit; wait for the run; return its MLflow run ID.

    A run that fails after MLflow created it is ended FAILED with the reason in a tag.
    """
    config, tracking_uri = prepare(sub)
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix=f"sparkml-template-{sub.backend}-") as tmp:
        staged = stage_variant(sub.backend, Path(tmp) / "project", image=sub.image)
        started = int(time.time() * 1000)
        try:
            submitted = mlflow.projects.run(
                uri=str(staged),
                entry_point=sub.entry_point,
                parameters=sub.params or {},
                experiment_name=sub.experiment_name,
                experiment_id=sub.experiment_id,
                backend=sub.backend,
                backend_config=config,
                synchronous=True,
                # Kubernetes: the project image, FROM the env image with the code; without it MLflow
                # pushes the env image itself and the pod has no code to run.
                build_image=sub.backend == "kubernetes",
            )
        except MlflowException as exc:
            message = _first_line(exc.message)
            run_id = _fail_orphaned_run(sub, str(staged), started, message)
            reason = _job_error(run_id) if run_id else None
            where = f" (MLflow run {run_id})" if run_id else ""
            raise UserError(f"{sub.backend} run failed{where}: {reason or message}") from None
    return submitted.run_id


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else "unknown error"


def _fail_orphaned_run(sub: Submission, source: str, started: int, message: str) -> str | None:
    """End FAILED the run MLflow created for this submission, if it is still RUNNING."""
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime.tracking import end_run_failed

    try:
        client = MlflowClient()
        experiment_id = sub.experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
        name = sub.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if not experiment_id and name:
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else None
        runs = client.search_runs(
            [experiment_id or "0"],
            filter_string=f"tags.`mlflow.source.name` = '{source}'",
        )
        mine = [r for r in runs if r.info.start_time >= started - 1000]
        if not mine:
            return None
        run = mine[0]
        if run.info.status == "RUNNING":
            end_run_failed(run.info.run_id, message)
        return run.info.run_id
    except Exception:  # the tracking server itself may be what failed
        return None


def _job_error(run_id: str) -> str | None:
    """The one-line error the job recorded on its run, if it got that far."""
    from mlflow.tracking import MlflowClient

    from sparkml_template.runtime.tracking import ERROR_TAG

    try:
        return MlflowClient().get_run(run_id).data.tags.get(ERROR_TAG)
    except Exception:
        return None


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UserError(f"-P takes key=value, got {pair!r}")
        params[key] = value
    return params


def main(argv: list[str]) -> int:
    """``python dispatch.py <backend> ...``: exit 0 when the run finished, 2 on a user error."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="dispatch.py", description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["databricks", "kubernetes"])
    parser.add_argument("--backend-config", type=Path, help="cluster spec / kubernetes config")
    parser.add_argument("-e", "--entry-point", default="main")
    parser.add_argument("-P", "--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--experiment-name")
    parser.add_argument("--experiment-id")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="Kubernetes: the env image")
    parser.add_argument("--stage", type=Path, metavar="DIR", help="only write the variant to DIR")
    args = parser.parse_args(argv)
    default_config = DATABRICKS_CONFIG if args.backend == "databricks" else KUBERNETES_CONFIG
    try:
        sub = Submission(
            backend=args.backend,
            backend_config=args.backend_config or default_config,
            entry_point=args.entry_point,
            params=_parse_params(args.param),
            experiment_name=args.experiment_name,
            experiment_id=args.experiment_id,
            image=args.image,
        )
        if args.stage:
            staged, config_path = stage(sub, args.stage.resolve())
            print(mlflow_run_command(sub, staged, config_path))
            return 0
        run_id = submit(sub)
    except UserError as exc:
        print(f"dispatch: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    print(f"dispatch: {args.backend} run {run_id} finished")
    return 0
