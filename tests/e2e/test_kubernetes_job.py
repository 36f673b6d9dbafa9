"""Kubernetes for real, as far as one machine goes: the environment image built from the
``Dockerfile`` (once per session, tests/docker_support.py) runs the project as a pod would; MLflow's
``docker_env`` runs it locally; and ``mlflow run -b kubernetes`` builds the project image, pushes
it to a real registry on 127.0.0.1 (Debian's ``docker-registry``) and creates the Job through the
real Kubernetes client against the loopback API server of tests/emulators/kube_api.py, whose node
runs the Job's pod spec on the same engine. Every run logs to a real ``mlflow server`` on the host.

Where no container engine can run, these tests skip with the reason (under CI they fail)."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, VENV_BIN, subprocess_env
from docker_support import Images, images_fixture, project_copy, skip_or_fail  # noqa: F401
from emulators.kube_api import CONTEXT, Emulator
from servers import free_port, mlflow_server, stop_group

from sparkml_template.deploy.variants import stage_variant

TOKEN = "kube-test-token"
TEMPLATE = PROJECT_ROOT / "kubernetes" / "job-template.yaml"
RUN_TIMEOUT_S = 900
pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]


@dataclass
class Server:
    url: str
    root: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """A tracking server on the host with proxied artifacts: the container logs over HTTP only."""
    root = tmp_path_factory.mktemp("k8s-mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]  # fmt: skip
    env = subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with mlflow_server(cmd, url, root, env):
        yield Server(url, root)


def _experiment(server: Server, name: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.url).create_experiment(name)


def _runs(server: Server, experiment_id: str) -> list:
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.url).search_runs([experiment_id])


def _assert_logged_main(server: Server, run) -> None:
    """The run finished, with its model and the task metrics read from Spark's event log."""
    import mlflow

    assert run.info.status == "FINISHED", run.data.tags.get("sparkml_template.error")
    assert run.data.tags["spark.task_metrics.source"] == "event_log"
    assert 0.8 < run.data.metrics["accuracy"] <= 1.0
    mlflow.set_tracking_uri(server.url)
    try:
        models = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'",
            output_format="list",
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert [m.name for m in models] == ["model"]


def _tail(done: subprocess.CompletedProcess) -> str:
    return (done.stdout[-1500:] + "\n" + done.stderr[-3000:]).strip()


# --- the emulated API server's own contract (no engine needed) -------------------------------


@pytest.fixture
def api(tmp_path):
    emulator = Emulator(tmp_path / "api", TOKEN).start()
    yield emulator
    emulator.stop()


def _job(**change) -> dict:
    job = yaml.safe_load(TEMPLATE.read_text())
    job["metadata"]["name"] = "t-1"
    job["spec"]["template"]["spec"]["containers"][0].update(name="t", image="x", command=["true"])
    job["spec"].update(change)
    return job


def _batch_api(kubeconfig: Path):
    """The real Kubernetes client, configured from a kube-config."""
    import kubernetes

    client = kubernetes.config.new_client_from_config(str(kubeconfig), context=CONTEXT)
    return kubernetes.client.BatchV1Api(client)


def _post(api: Emulator, path: str, body: dict) -> tuple[int, dict]:
    """POST over TLS (trusting the emulator's certificate only) with the token."""
    context = ssl.create_default_context(cafile=str(api.cert))
    request = urllib.request.Request(
        api.url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_api_server_refuses_a_wrong_token_and_an_invalid_job(api, tmp_path):
    from kubernetes.client.exceptions import ApiException

    wrong = api.kubeconfig(tmp_path / "wrong", token="wrong")
    with pytest.raises(ApiException) as denied:
        _batch_api(wrong).list_namespaced_job("mlflow")
    assert denied.value.status == 401
    batch = _batch_api(api.kubeconfig(tmp_path / "kubeconfig"))
    # An unknown field (a typo) passes the client; the server refuses it, as strict validation does.
    status, answer = _post(api, "/apis/batch/v1/namespaces/mlflow/jobs", _job(backofLimit=0))
    assert (status, answer["reason"]) == (422, "Invalid") and "backofLimit" in answer["message"]
    with pytest.raises(ApiException) as missing:
        batch.create_namespaced_job("nowhere", _job())
    assert missing.value.status == 404
    assert batch.list_namespaced_job("mlflow").items == []


# --- the environment image -------------------------------------------------------------------


def test_the_image_runs_main_as_a_pod_would(images: Images, server, tmp_path):
    """uid 1000, the code read-only, the root filesystem read-only (only /tmp writable), the
    host's tracking server: `mlflow run` of `main`, as the image's Job would run it."""
    code = project_copy(tmp_path / "code")
    experiment_id = _experiment(server, "image")
    done = images.engine.docker(
        "run", "--rm", "--network", "host", "--user", "1000", "--read-only",
        "--tmpfs", "/tmp:rw,exec,mode=1777",
        "-v", f"{code}:/mlflow/projects/code:ro",
        "-e", f"MLFLOW_TRACKING_URI={server.url}", "-e", f"MLFLOW_EXPERIMENT_ID={experiment_id}",
        images.env_image,
        "mlflow", "run", ".", "--env-manager", "local", "-e", "main", "-P", "maxIter=10",
        timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, _tail(done)
    (run,) = _runs(server, experiment_id)
    _assert_logged_main(server, run)
    assert run.data.tags["java.version"].startswith("17")
    assert run.data.tags["python.version"].startswith("3.11.")
    assert not any(code.rglob("spark-warehouse")) and not any(code.rglob("mlruns"))


def test_the_image_keeps_the_host_ca_out(images: Images):
    """The CA bundle given to pip during the build is in neither the image nor its history."""
    done = images.engine.docker(
        "run", "--rm", "--entrypoint", "sh", images.env_image, "-c",
        "find / -xdev -name pip-ca.crt | wc -l; id -u; java -version 2>&1 | head -1",
    )  # fmt: skip
    found, uid, java = done.stdout.strip().splitlines()
    assert (found, uid) == ("0", "1000") and 'version "17' in java, done.stdout
    history = images.engine.docker("history", "--no-trunc", images.env_image).stdout
    assert "pip-ca.crt" not in history  # the deps stage's layers are not part of the image


# --- MLflow's docker_env ---------------------------------------------------------------------


def test_docker_env_builds_the_project_image_and_runs_it(images: Images, server, tmp_path):
    """`mlflow run --build-image` of the Kubernetes variant: MLflow builds the project image FROM
    the environment image and runs it: the container a Job would run."""
    staged = stage_variant("kubernetes", tmp_path / "project", image=images.env_image)
    experiment_id = _experiment(server, "docker-env")
    env = subprocess_env(MLFLOW_TRACKING_URI=server.url, DOCKER_HOST=images.engine.host)
    done = subprocess.run(
        [str(VENV_BIN / "mlflow"), "run", str(staged), "--build-image", "-A", "network=host",
         "--experiment-id", experiment_id, "-e", "main", "-P", "maxIter=10"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, _tail(done)
    (run,) = _runs(server, experiment_id)
    _assert_logged_main(server, run)
    assert run.data.tags["mlflow.project.env"] == "docker"
    image = run.data.tags["mlflow.docker.image.uri"]
    parents = images.engine.docker("history", "-q", image).stdout.split()
    env_id = images.engine.docker("image", "inspect", "-f", "{{.Id}}", images.env_image).stdout
    assert env_id.strip().split(":")[1][:12] in parents  # built FROM the environment image


# --- mlflow run -b kubernetes ----------------------------------------------------------------


@dataclass
class Cluster:
    emulator: Emulator
    kubeconfig: Path
    registry: str
    env: dict[str, str]


@contextlib.contextmanager
def registry(root: Path, readonly: bool = False) -> Iterator[str]:
    """Debian's docker-registry (the CNCF distribution registry) on a free loopback port; the
    engine trusts 127.0.0.0/8 registries over plain HTTP. ``readonly`` refuses every push."""
    if shutil.which("docker-registry") is None:
        skip_or_fail("no docker-registry (apt-get install docker-registry)")
    root.mkdir(parents=True)
    port = free_port()
    config = {
        "version": 0.1,
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "maintenance": {"readonly": {"enabled": readonly}},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(root / "config.yml")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}/v2/"):
            assert proc.poll() is None, (root / "registry.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "docker-registry did not answer /v2/"
            time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(proc)
        shutil.rmtree(root / "data", ignore_errors=True)  # ~2 GB of pushed layers


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(images: Images, server, tmp_path_factory) -> Iterator[Cluster]:
    """A registry, the emulated API server and its kube-config, and the environment a submitter
    has (KUBECONFIG, DOCKER_HOST, the tracking server from here and from the pods)."""
    root = tmp_path_factory.mktemp("k8s-cluster")
    with registry(root / "registry") as address:
        emulator = Emulator(root / "api", TOKEN, images.engine.env).start()
        kubeconfig = emulator.kubeconfig(root / "kubeconfig")
        env = subprocess_env(
            KUBECONFIG=str(kubeconfig),
            DOCKER_HOST=images.engine.host,
            MLFLOW_TRACKING_URI=server.url,
            KUBE_MLFLOW_TRACKING_URI=server.url,  # the pods use the host's network
        )
        try:
            yield Cluster(emulator, kubeconfig, address, env)
        finally:
            emulator.stop()


def _backend_config(path: Path, registry_address: str) -> Path:
    """The project's kubernetes_config.json, pointed at the emulated cluster and the registry."""
    config = json.loads((PROJECT_ROOT / "kubernetes" / "kubernetes_config.json").read_text())
    config.update({
        "kube-context": CONTEXT,
        "repository-uri": f"{registry_address}/pyspark-mlflow-template",
        "kube-job-template-path": str(TEMPLATE),
    })  # fmt: skip
    path.write_text(json.dumps(config))
    return path


def test_mlflow_run_b_kubernetes_end_to_end(images: Images, cluster, server, tmp_path):
    """The `mlflow run -b kubernetes` command `dispatch.py --stage` prints, run as printed."""
    experiment_id = _experiment(server, "k8s")
    _untag_project_images(images)
    config = _backend_config(tmp_path / "backend.json", cluster.registry)
    stage = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "dispatch.py"), "kubernetes", "--backend-config",
         str(config), "--image", images.env_image, "--experiment-id", experiment_id,
         "-P", "maxIter=10", "--stage", str(tmp_path / "staged")],
        capture_output=True, text=True, timeout=120, env=cluster.env, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert stage.returncode == 0, _tail(stage)
    command = shlex.split(stage.stdout.strip().splitlines()[-1])
    assert command[:2] == ["mlflow", "run"] and "--build-image" in command
    done = subprocess.run(
        [str(VENV_BIN / "mlflow"), *command[1:]],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=cluster.env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, _tail(done)
    (run,) = _runs(server, experiment_id)
    _assert_logged_main(server, run)
    assert run.data.tags["mlflow.project.backend"] == "kubernetes"
    # What MLflow's status polling saw, and what the cluster holds: one Job, complete, one pod
    # that ran the template's security context and resources with the pushed image.
    assert "Reached expected number of succeeded pods" in done.stderr
    (job,) = cluster.emulator.cluster.jobs.values()
    assert job["status"]["succeeded"] == 1
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith(f"{cluster.registry}/pyspark-mlflow-template:")
    assert "@sha256:" in container["image"]
    (pod,) = cluster.emulator.cluster.pods.values()
    assert pod["status"]["phase"] == "Succeeded"
    inspect = cluster.emulator.cluster.kubelet.docker_run(pod)
    for flag in ("--user 1000", "--cpus 2", "--memory 4294967296", "--group-add 1000"):
        assert flag in " ".join(inspect)
    tags = json.loads(_registry_get(cluster.registry, "pyspark-mlflow-template/tags/list"))
    assert container["image"].split(":")[-2].split("@")[0] in tags["tags"]


def _untag_project_images(images: Images) -> None:
    """Drop the project image's tags from earlier pushes. A rebuild of the same project is the
    same image, and MLflow pushes its first tag: that could name another test's registry."""
    listed = images.engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout
    stale = [
        t for t in listed.split() if t.split("/", 1)[-1].startswith("pyspark-mlflow-template:")
    ]
    if stale:
        images.engine.docker("image", "rm", *stale)


def _registry_get(address: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{address}/v2/{path}", timeout=10) as response:
        return response.read().decode()


def _dispatch(cluster: Cluster, config: Path, image: str, experiment_id: str, *params: str):
    """`python dispatch.py kubernetes ...`, the project's own submission command."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "dispatch.py"), "kubernetes", "--backend-config",
         str(config), "--image", image, "--experiment-id", experiment_id,
         *[a for p in params for a in ("-P", p)]],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=cluster.env, cwd=PROJECT_ROOT,
    )  # fmt: skip


def test_a_failing_pod_is_one_line_and_a_failed_run(images: Images, cluster, server, tmp_path):
    """A bad parameter: the pod exits 2, the Job fails, MLflow's polling sees it; dispatch says
    the entry point's own line, and the run is FAILED."""
    experiment_id = _experiment(server, "k8s-bad")
    config = _backend_config(tmp_path / "backend.json", cluster.registry)
    done = _dispatch(cluster, config, images.env_image, experiment_id, "regParam=-1")
    assert done.returncode == 2, _tail(done)
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("dispatch: error: kubernetes run failed"), _tail(done)
    assert "regParam must be >= 0, got -1" in lines[-1]
    (run,) = _runs(server, experiment_id)
    assert run.info.status == "FAILED"
    failed = [j for j in cluster.emulator.cluster.jobs.values() if j["status"].get("failed")]
    assert failed and failed[-1]["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"


def test_a_registry_refusing_the_push_is_one_line(images: Images, cluster, server, tmp_path):
    experiment_id = _experiment(server, "k8s-push")
    _untag_project_images(images)
    with registry(tmp_path / "readonly", readonly=True) as address:
        config = _backend_config(tmp_path / "backend.json", address)
        done = _dispatch(cluster, config, images.env_image, experiment_id, "maxIter=5")
    assert done.returncode == 2, _tail(done)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dispatch: error: kubernetes run failed"), _tail(done)
    assert "Error while pushing to docker registry" in last
    (run,) = _runs(server, experiment_id)
    assert run.info.status == "FAILED"
