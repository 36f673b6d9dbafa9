"""A tracking server with authentication (`mlflow server --app-name basic-auth`) on 127.0.0.1:
runs work with MLFLOW_TRACKING_USERNAME/PASSWORD; a wrong or missing password fails the entry
point in seconds with one line, before Spark starts; the password is nowhere in the run."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from conftest import PROJECT_ROOT, VENV_BIN, subprocess_env
from servers import free_port, mlflow_server

pytestmark = pytest.mark.cli
ADMIN = "admin"
PASSWORD = f"pw-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-server")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root}/basic_auth.db\nadmin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = subprocess_env(
        MLFLOW_AUTH_CONFIG_PATH=str(config),
        MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    cmd = [
        str(VENV_BIN / "mlflow"), "server", "--app-name", "basic-auth",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
        "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    with mlflow_server(cmd, url, root, env):
        yield url


def _admin_client(url):
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)


def _train(url: str, experiment_id: str, **credentials: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(MLFLOW_TRACKING_URI=url, MLFLOW_EXPERIMENT_ID=experiment_id)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    env.update(credentials)
    return subprocess.run(
        [sys.executable, "train.py", "--master", "local[2]"],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def experiment(auth_server):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        yield _admin_client(auth_server).create_experiment("auth")


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (
            {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": "not-the-password"},
            "refused the credentials given (HTTP 401)",
        ),
        ({}, "needs credentials (HTTP 401)"),
    ],
)
def test_bad_credentials_fail_in_one_line_before_spark_starts(
    auth_server, experiment, credentials, expected
):
    proc = _train(auth_server, experiment, **credentials)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("train: error: MLflow tracking server")
    assert expected in lines[0] and "MLFLOW_TRACKING_PASSWORD" in lines[0]
    assert "not-the-password" not in proc.stderr  # the line names variables, not values


def test_runs_work_with_credentials_and_the_password_is_nowhere_in_the_run(
    auth_server, experiment, tmp_path, monkeypatch
):
    proc = _train(
        auth_server, experiment, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=PASSWORD
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    import mlflow

    client = _admin_client(auth_server)
    (run,) = client.search_runs([experiment])
    assert run.info.status == "FINISHED"
    assert f"{auth_server}/#/experiments/{experiment}/runs/{run.info.run_id}" in proc.stdout
    texts = [str(run.data.params), str(run.data.tags)]
    local = Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, tracking_uri=auth_server, dst_path=str(tmp_path / "run")
    ))  # fmt: skip
    files = [p for p in local.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in files)
    assert any(p.suffix == ".zstd" for p in files)  # the event log copy, read decompressed
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".zstd":
            data = zstandard.decompress(data, max_output_size=1 << 30)
        texts.append(data.decode("utf-8", errors="replace"))
    assert not [t for t in texts if PASSWORD in t]
