"""A loopback stand-in for the Databricks workspace that `mlflow run -b databricks` talks to.

It serves the REST endpoints MLflow's ``databricks_spark_job`` submission path calls (see
``mlflow/projects/databricks.py``), checks the bearer token on each, validates submitted JSON
against databricks-sdk's request dataclasses (unknown fields, wrong types and missing required
fields are rejected), and really executes the submitted ``spark_python_task``: the job file MLflow
uploaded runs in a fresh "cluster" directory with the environment a Databricks driver gives it
(``DATABRICKS_RUNTIME_VERSION``, workspace host and token, the cluster's Spark conf and env vars).

MLflow's job file sets ``MLFLOW_TRACKING_URI=databricks``, so the job logs to this workspace's
MLflow API: those requests are proxied to a real ``mlflow server`` on loopback.

What it does not do (a real workspace does): provision VMs (the "cluster" is one local Spark
driver, ``local[2]``, whatever node type or worker count is asked for), install libraries (it
checks each pinned PyPI library is already installed at that version in the interpreter that runs
jobs), mount DBFS (the driver paths ``/dbfs`` and ``/databricks/mlflow`` in the job file are mapped
to folders of this emulator), or enforce workspace permissions beyond the one token.

Run it by hand:  python tests/emulators/databricks.py --token T --tracking http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hmac
import http.client
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import typing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from databricks.sdk.service import jobs

# Keys MLflow adds to the backend config, which its databricks_spark_job mode then sends inside
# `new_cluster`. A real workspace ignores unknown fields there; every other unknown is an error.
MLFLOW_BACKEND_KEYS = frozenset(
    {"ENV_MANAGER", "SYNCHRONOUS", "DOCKER_ARGS", "STORAGE_DIR", "build_image", "docker_auth"}
)
SUBMIT_TOP_LEVEL = frozenset({"run_name", "idempotency_token", "timeout_seconds"})
TASK_TYPES = tuple(f.name for f in dataclasses.fields(jobs.SubmitTask) if f.name.endswith("_task"))
MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/api/2.0/mlflow-artifacts/")
DEFAULT_JOB_TIMEOUT = 1200.0
LOCAL_CORES = 2
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


class ApiError(Exception):
    """An error answer in Databricks' shape: HTTP status, error_code, message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


# --- strict validation against databricks-sdk's dataclasses ------------------------------------


def check_fields(cls: type, data: object, path: str, extra: frozenset[str] = frozenset()) -> list:
    """Every problem of ``data`` as an instance of SDK dataclass ``cls`` (empty list: valid)."""
    if not isinstance(data, dict):
        return [f"{path}: expected an object, got {type(data).__name__}"]
    hints = typing.get_type_hints(cls)
    errors = [
        f"{path}.{f.name}: required"
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in data
    ]
    for key, value in data.items():
        if key in hints:
            errors += _check_value(hints[key], value, f"{path}.{key}")
        elif key not in extra:
            errors.append(f"{path}.{key}: unknown field")
    return errors


def _check_value(tp: typing.Any, value: object, path: str) -> list:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return []
        return _check_value(next(a for a in args if a is not type(None)), value, path)
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, v in enumerate(value) for e in _check_value(args[0], v, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [e for k, v in value.items() for e in _check_value(args[1], v, f"{path}.{k}")]
    if dataclasses.is_dataclass(tp):
        return check_fields(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = {m.value for m in tp}
        return [] if value in allowed else [f"{path}: {value!r} is not one of {sorted(allowed)}"]
    expected = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}.get(tp)
    if expected is None:
        return []  # typing.Any and friends
    if (isinstance(value, bool) and tp is not bool) or not isinstance(value, expected):
        return [f"{path}: expected {tp.__name__}, got {type(value).__name__}"]
    return []


def validate_submit(body: object) -> tuple[dict, list[str]]:
    """Check a Jobs API 2.0 ``runs/submit`` body; return the task and the ignored cluster keys."""
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_REQUEST", "request body must be a JSON object")
    task = {k: v for k, v in body.items() if k not in SUBMIT_TOP_LEVEL}
    errors = []
    if not isinstance(body.get("run_name", ""), str):
        errors.append("request.run_name: expected str")
    errors += _check_value(int | None, body.get("timeout_seconds"), "request.timeout_seconds")
    cluster = task.get("new_cluster")
    ignored = sorted(MLFLOW_BACKEND_KEYS.intersection(cluster)) if isinstance(cluster, dict) else []
    if ignored:
        task["new_cluster"] = {k: v for k, v in cluster.items() if k not in MLFLOW_BACKEND_KEYS}
    errors += check_fields(jobs.SubmitTask, {**task, "task_key": "run"}, "request")
    if errors:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "; ".join(errors))
    given = [t for t in TASK_TYPES if t in task]
    if given != ["spark_python_task"]:
        raise ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            f"this emulator runs exactly one spark_python_task; got {given or 'no task'}",
        )
    if "existing_cluster_id" in task:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "this workspace has no existing clusters")
    cluster = task.get("new_cluster")
    if cluster is None:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "new_cluster is required")
    problems = []
    if not cluster.get("spark_version"):
        problems.append("spark_version is required")
    if "num_workers" not in cluster and "autoscale" not in cluster:
        problems.append("one of num_workers or autoscale is required")
    if not cluster.get("node_type_id") and not cluster.get("instance_pool_id"):
        problems.append("one of node_type_id or instance_pool_id is required")
    if problems:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "new_cluster: " + "; ".join(problems))
    return task, ignored


def runtime_version(spark_version: str) -> str:
    """``DATABRICKS_RUNTIME_VERSION`` for a runtime key: "17.3.x-scala2.13" -> "17.3"."""
    match = re.match(r"^(\d+)\.(\d+|x)", spark_version)
    if not match:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"unknown spark_version {spark_version!r}")
    return f"{match.group(1)}.{match.group(2)}"


# --- job runs ----------------------------------------------------------------------------------


@dataclass
class JobRun:
    """One submitted run and everything the workspace knows about it."""

    run_id: int
    run_name: str
    task: dict
    ignored_fields: list[str]
    cluster_dir: Path
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time: int = 0
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    reported: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    cancel_requested: bool = False
    error: str = ""

    @property
    def log_path(self) -> Path:
        return self.cluster_dir / "driver.log"

    def state(self) -> dict:
        state = {"life_cycle_state": self.life_cycle_state, "state_message": self.state_message}
        if self.result_state:
            state["result_state"] = self.result_state
        return state


class Workspace:
    """The emulated workspace: DBFS files, job runs, and where MLflow API calls go."""

    def __init__(
        self,
        root: Path,
        token: str,
        tracking: str | None = None,
        python: str = sys.executable,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
    ) -> None:
        self.root = Path(root)
        self.dbfs = self.root / "dbfs"
        self.dbfs.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.tracking = urlparse(tracking) if tracking else None
        self.python = python
        self.job_timeout = job_timeout
        self.runs: dict[int, JobRun] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[str] = []
        self.proxy_errors: list[str] = []  # MLflow API calls the tracking server refused
        self.lock = threading.Lock()
        self._ids = itertools.count(1001)
        self.url = ""

    # DBFS
    def dbfs_path(self, path: str) -> Path:
        clean = Path("/" + path.lstrip("/")).resolve()
        return self.dbfs / clean.relative_to("/")

    def get_status(self, path: str) -> dict:
        local = self.dbfs_path(path)
        if not local.exists():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on {path}")
        return {
            "path": path,
            "is_dir": local.is_dir(),
            "file_size": 0 if local.is_dir() else local.stat().st_size,
            "modification_time": int(local.stat().st_mtime * 1000),
        }

    def upload(self, path: str, data: bytes) -> None:
        local = self.dbfs_path(path)
        if local.exists():
            raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"File already exists: {path}")
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".part")
        tmp.write_bytes(data)
        tmp.rename(local)

    # Jobs
    def submit(self, body: object) -> int:
        task, ignored = validate_submit(body)
        python_file = task["spark_python_task"]["python_file"]
        if not python_file.startswith("dbfs:/") or not self.dbfs_path(python_file[5:]).is_file():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"python_file {python_file} not found")
        runtime_version(task["new_cluster"]["spark_version"])
        run_id = next(self._ids)
        run = JobRun(
            run_id=run_id,
            run_name=body.get("run_name", "Untitled"),
            task=task,
            ignored_fields=ignored,
            cluster_dir=self.root / "clusters" / str(run_id),
        )
        run.cluster_dir.mkdir(parents=True)
        timeout = body.get("timeout_seconds") or self.job_timeout
        with self.lock:
            self.runs[run_id] = run
        threading.Thread(target=self._execute, args=(run, timeout), daemon=True).start()
        return run_id

    def get_run(self, run_id: int) -> JobRun:
        with self.lock:
            run = self.runs.get(run_id)
        if run is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        return run

    def run_json(self, run: JobRun) -> dict:
        with self.lock:
            run.reported.append(f"{run.life_cycle_state}/{run.result_state or '-'}")
            out = {
                "job_id": run.run_id,
                "run_id": run.run_id,
                "number_in_job": 1,
                "run_name": run.run_name,
                "run_type": "SUBMIT_RUN",
                "run_page_url": f"{self.url}/#job/{run.run_id}/run/1",
                "state": run.state(),
                "start_time": run.start_time,
                "cluster_spec": {"new_cluster": run.task["new_cluster"]},
            }
            if run.end_time:
                out["end_time"] = run.end_time
        assert not check_fields(jobs.Run, out, "response"), check_fields(jobs.Run, out, "")
        return out

    def cancel(self, run_id: int) -> None:
        run = self.get_run(run_id)
        with self.lock:
            if run.life_cycle_state in TERMINAL:
                return
            run.cancel_requested = True
            run.life_cycle_state, run.state_message = "TERMINATING", "Run cancelled"
            process = run.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)

    def _set(self, run: JobRun, life: str, result: str | None = None, message: str = "") -> None:
        with self.lock:
            run.life_cycle_state, run.result_state, run.state_message = life, result, message
            if life in TERMINAL:
                run.end_time = int(time.time() * 1000)

    def _execute(self, run: JobRun, timeout: float) -> None:
        try:
            missing = self._missing_libraries(run.task.get("libraries") or [])
            if missing:
                message = f"Library installation failed: {missing}"
                self._set(run, "INTERNAL_ERROR", "FAILED", message)
                return
            self._set(run, "RUNNING", None, "In run")
            code = self._run_driver(run, timeout)
        except Exception as exc:  # the emulator's own failure: say so in the run
            self._set(run, "INTERNAL_ERROR", "FAILED", f"emulator error: {exc!r}")
            return
        if run.cancel_requested:
            self._set(run, "TERMINATED", "CANCELED", "Run cancelled")
        elif code is None:
            self._set(run, "TERMINATED", "TIMEDOUT", f"Run timed out after {timeout:.0f} s")
        elif code == 0:
            self._set(run, "TERMINATED", "SUCCESS", "")
        else:
            run.error = _last_error_line(run.log_path)
            self._set(run, "TERMINATED", "FAILED", run.error or f"exit code {code}")

    def _missing_libraries(self, libraries: list[dict]) -> str:
        """Pinned PyPI libraries the job interpreter lacks (a workspace would install them)."""
        script = (
            "import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for name in json.loads(sys.argv[1]):\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: out[name] = None\n"
            "print(json.dumps(out))\n"
        )
        wanted = {}
        for lib in libraries:
            spec = (lib.get("pypi") or {}).get("package", "")
            name, _, version = spec.partition("==")
            if name:
                wanted[name.strip()] = version.strip()
        if not wanted:
            return ""
        found = json.loads(
            subprocess.run(
                [self.python, "-c", script, json.dumps(sorted(wanted))],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
        bad = [f"{n}=={v} (have {found[n]})" for n, v in wanted.items() if v and found[n] != v]
        bad += [n for n, v in wanted.items() if found[n] is None and not v]
        return ", ".join(bad)

    def _run_driver(self, run: JobRun, timeout: float) -> int | None:
        task = run.task["spark_python_task"]
        cluster = run.task["new_cluster"]
        source = self.dbfs_path(task["python_file"][5:]).read_text()
        # The driver's DBFS FUSE mount and MLflow's local folder, mapped into this cluster's dir.
        driver_root = run.cluster_dir / "databricks" / "mlflow"
        job_code = re.sub(r"(?<![\w./-])/dbfs/", f"{self.dbfs}/", source)
        job_code = re.sub(r"(?<![\w./-])/databricks/mlflow(?=[/\s'\"])", str(driver_root), job_code)
        job_file = run.cluster_dir / Path(task["python_file"]).name
        job_file.write_text(job_code)
        env = self._driver_env(run, cluster)
        with open(run.log_path, "wb") as log:
            process = subprocess.Popen(
                [self.python, str(job_file), *(task.get("parameters") or [])],
                cwd=run.cluster_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with self.lock:
                run.process = process
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return None

    def _driver_env(self, run: JobRun, cluster: dict) -> dict[str, str]:
        """What a Databricks driver gives a spark_python_task, and nothing of this process."""
        bin_dir = run.cluster_dir / "bin"
        bin_dir.mkdir()
        if shutil.which("rsync") is None:  # Databricks images have rsync; MLflow's prologue uses it
            shim = bin_dir / "rsync"
            shim.write_text(
                "#!/bin/sh\n# rsync -a -v --ignore-existing SRC DESTDIR, as a driver image has it\n"
                "for a; do src=$dest; dest=$a; done\n"
                'target="$dest/$(basename "$src")"\n'
                '[ -e "$target" ] || cp -p "$src" "$target"\n'
            )
            shim.chmod(0o755)
        conf = {
            **(cluster.get("spark_conf") or {}),
            "spark.master": f"local[{LOCAL_CORES}]",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
        }
        submit_args = " ".join(f"--conf {shlex.quote(f'{k}={v}')}" for k, v in conf.items())
        env = {
            "PATH": os.pathsep.join(
                [str(bin_dir), str(Path(self.python).parent), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            "HOME": str(run.cluster_dir),
            "LANG": "C.UTF-8",
            "TMPDIR": str(run.cluster_dir),
            "PYTHONUNBUFFERED": "1",
            "PYSPARK_PYTHON": self.python,
            "PYSPARK_SUBMIT_ARGS": f"{submit_args} pyspark-shell",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "DATABRICKS_RUNTIME_VERSION": runtime_version(cluster["spark_version"]),
            "DATABRICKS_HOST": self.url,
            "DATABRICKS_TOKEN": self.token,
            "MLFLOW_TRACKING_URI": "databricks",  # a Databricks driver logs to its workspace
        }
        if os.environ.get("JAVA_HOME"):
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        env.update(cluster.get("spark_env_vars") or {})
        return env

    def stop_jobs(self) -> None:
        """Kill every job process still running (by its process group)."""
        with self.lock:
            processes = [r.process for r in self.runs.values() if r.process is not None]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _last_error_line(log: Path) -> str:
    """The last line of a failed job's log that looks like an error."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "exception" in line.lower():
            return line[:500]
    return lines[-1][:500] if lines else ""


# --- HTTP --------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the workspace; answers errors the way Databricks does."""

    workspace: Workspace
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet; requests are recorded
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, obj: object) -> None:
        self._send(status, json.dumps(obj).encode())

    def _handle(self, method: str) -> None:
        ws = self.workspace
        url = urlparse(self.path)
        body = self._body()
        status = 200
        try:
            if url.path == "/.well-known/databricks-config" and method == "GET":
                self._json(200, {"oidc_endpoint": f"{ws.url}/oidc", "workspace_id": "1001"})
                return
            self._authorize()
            if url.path.startswith(MLFLOW_PREFIXES):
                status = self._proxy(method, body)
                return
            self._json(200, self._route(method, url.path, url.query, body))
        except ApiError as exc:
            status = exc.status
            self._json(exc.status, {"error_code": exc.error_code, "message": exc.message})
        finally:
            with ws.lock:
                ws.requests.append((method, url.path, status))

    def _authorize(self) -> None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.workspace.token}".encode()):
            raise ApiError(403, "PERMISSION_DENIED", "Invalid access token.")

    def _route(self, method: str, path: str, query: str, body: bytes) -> dict:
        ws = self.workspace
        args = {k: v[-1] for k, v in parse_qs(query).items()}
        if method == "POST" and path.startswith("/dbfs/"):
            ws.upload(path[len("/dbfs") :], body)
            return {}
        if body and not path.startswith("/dbfs/"):
            try:
                parsed = json.loads(body)
            except ValueError:
                raise ApiError(400, "MALFORMED_REQUEST", "body is not JSON") from None
            if isinstance(parsed, dict) and method == "GET":
                args.update(parsed)  # MLflow sends get-status's path as a JSON body on a GET
            elif method == "POST":
                args = parsed
        if (method, path) == ("GET", "/api/2.0/dbfs/get-status"):
            return ws.get_status(_required(args, "path"))
        if (method, path) == ("POST", "/api/2.0/jobs/runs/submit"):
            return {"run_id": ws.submit(args)}
        if (method, path) == ("GET", "/api/2.0/jobs/runs/get"):
            return ws.run_json(ws.get_run(_run_id(args)))
        if (method, path) == ("GET", "/api/2.0/jobs/runs/get-output"):
            run = ws.get_run(_run_id(args))
            log = run.log_path.read_text(errors="replace") if run.log_path.exists() else ""
            out = {"metadata": ws.run_json(run), "logs": log[-20000:]}
            if run.result_state == "FAILED":
                out["error"] = run.state_message
            return out
        if (method, path) == ("POST", "/api/2.0/jobs/runs/cancel"):
            ws.cancel(_run_id(args))
            return {}
        with ws.lock:
            ws.unhandled.append(f"{method} {path}")
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _proxy(self, method: str, body: bytes) -> int:
        """Forward an MLflow REST call to the real tracking server behind this workspace."""
        target = self.workspace.tracking
        if target is None:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", "this workspace has no tracking server")
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        try:
            conn.request(method, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except OSError as exc:
            raise ApiError(503, "TEMPORARILY_UNAVAILABLE", f"tracking server: {exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            with self.workspace.lock:
                self.workspace.proxy_errors.append(f"{method} {self.path}: {payload[:300]!r}")
        self._send(response.status, payload, response.getheader("Content-Type", "text/plain"))
        return response.status


def _required(args: dict, name: str) -> str:
    if not args.get(name):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {name}")
    return str(args[name])


def _run_id(args: dict) -> int:
    try:
        return int(_required(args, "run_id"))
    except ValueError:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "run_id must be an integer") from None


class Emulator:
    """The workspace served on 127.0.0.1 from a background thread; ``stop()`` ends it and jobs."""

    def __init__(self, root: Path, token: str, tracking: str | None = None, port: int = 0) -> None:
        self.workspace = Workspace(root, token, tracking)
        handler = type("BoundHandler", (Handler,), {"workspace": self.workspace})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.workspace.url = self.url
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Emulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.workspace.stop_jobs()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True, help="the bearer token clients must send")
    parser.add_argument("--tracking", help="URL of the mlflow server behind /api/*/mlflow")
    parser.add_argument("--root", default="databricks-emulator", help="DBFS and cluster folders")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    emulator = Emulator(Path(args.root).resolve(), args.token, args.tracking, args.port).start()
    print(f"Databricks emulator on {emulator.url} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
