"""A loopback stand-in for the Kubernetes API server that `mlflow run -b kubernetes` talks to,
with a one-node "kubelet" that runs each Job's pod on the real container engine.

It serves, over HTTPS with a bearer token (a kube-config is written for it), the calls MLflow's
kubernetes backend and ``kubectl get/logs`` make (see ``mlflow/projects/kubernetes.py``): Jobs
(create, read, read status, list, delete) in ``batch/v1`` and Pods (list by label, read, log) in
``v1``. A created Job is validated against the Kubernetes 1.33 schema (kubernetes-validate,
strict: unknown fields are refused, as ``kubectl --validate=strict`` does) and gets the fields the
API server sets (uid, resourceVersion, creationTimestamp, selector, pod template labels). Its
controller makes one Pod per attempt (``backoffLimit`` + 1 at most), which the node
(tests/emulators/kubelet.py) runs with ``docker run``; ``activeDeadlineSeconds`` kills it. The
Job's status then carries what Kubernetes 1.33 reports: ``startTime``, ``active``,
``succeeded``/``failed``, ``completionTime`` and the ``SuccessCriteriaMet``/``Complete`` or
``FailureTarget``/``Failed`` conditions with their reasons and messages.

What it does not do (a cluster does): schedule across nodes (one node, the host: a pod whose CPU or
memory requests exceed the host's stays Pending, Unschedulable), a pod network (pods use the
host's network, so they reach services on 127.0.0.1), other volume types, probes, watches,
``ttlSecondsAfterFinished`` clean-up, admission control, or RBAC beyond the one token.

Run it by hand:  python tests/emulators/kube_api.py --token T --kubeconfig /tmp/kubeconfig
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import re
import secrets
import ssl
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import yaml

try:
    from emulators.kubelet import Kubelet, now
except ImportError:  # run by hand: python tests/emulators/kube_api.py
    from kubelet import Kubelet, now

K8S_VERSION = "1.33"
CONTEXT = "emulated"
JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?(/status)?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
# (condition types, reason, message) of a finished Job, as Kubernetes 1.33's controller sets them.
COMPLETE = (("SuccessCriteriaMet", "Complete"), "CompletionsReached",
            "Reached expected number of succeeded pods")  # fmt: skip
BACKOFF = (("FailureTarget", "Failed"), "BackoffLimitExceeded",
           "Job has reached the specified backoff limit")  # fmt: skip
DEADLINE = (("FailureTarget", "Failed"), "DeadlineExceeded",
            "Job was active longer than specified deadline")  # fmt: skip


class ApiError(Exception):
    """An error answer as the API server gives it: a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}  # fmt: skip


def self_signed(root: Path) -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1 (an API server speaks only TLS), and its key."""
    cert, key = root / "apiserver.crt", root / "apiserver.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver", "-keyout", str(key),
         "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class Cluster:
    """The objects (namespaces, secrets, Jobs, Pods), the Job controller and the one node."""

    def __init__(self, root: Path, docker_env: dict[str, str], namespaces=("default", "mlflow")):
        self.root = root
        self.namespaces = set(namespaces)
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.jobs: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.lock = threading.RLock()
        self.version = 1
        self.kubelet = Kubelet(root, docker_env, self.secrets)

    def _bump(self, obj: dict) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    # --- Jobs ---------------------------------------------------------------------------------

    def create_job(self, namespace: str, body: dict) -> dict:
        """Validate, store and start a Job, with the fields the API server fills in."""
        if namespace not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        try:
            kubernetes_validate.validate(body, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            raise ApiError(422, "Invalid", f"Job is invalid: {where}: {exc.message}") from None
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        if body.get("kind") != "Job" or not name:
            raise ApiError(400, "BadRequest", "a Job with metadata.name is required")
        if meta.get("namespace", namespace) != namespace:
            message = "the namespace of the provided object does not match the namespace sent"
            raise ApiError(400, "BadRequest", message)
        with self.lock:
            if (namespace, name) in self.jobs:
                raise ApiError(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            uid = str(uuid.uuid4())
            meta.update(namespace=namespace, uid=uid, creationTimestamp=now(), generation=1)
            labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                      "batch.kubernetes.io/job-name": name, "job-name": name}  # fmt: skip
            spec = body["spec"]
            for key, default in (("completions", 1), ("parallelism", 1), ("backoffLimit", 6)):
                spec.setdefault(key, default)
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            template_meta = spec["template"].setdefault("metadata", {})
            template_meta["labels"] = {**template_meta.get("labels", {}), **labels}
            body["status"] = {}
            self._bump(body)
            self.jobs[(namespace, name)] = body
        threading.Thread(target=self._control, args=(namespace, name), daemon=True).start()
        return body

    def job(self, namespace: str, name: str) -> dict:
        """A copy of the Job as stored (what a GET answers)."""
        with self.lock:
            if (namespace, name) not in self.jobs:
                raise ApiError(404, "NotFound", f'jobs.batch "{name}" not found')
            return json.loads(json.dumps(self.jobs[(namespace, name)]))

    def delete_job(self, namespace: str, name: str) -> dict:
        """Delete the Job and (propagation: background) its pods, killing their containers."""
        job = self.job(namespace, name)
        with self.lock:
            del self.jobs[(namespace, name)]
            mine = [k for k, p in self.pods.items() if p["metadata"]["labels"]["job-name"] == name]
            for key in mine:
                self.pods.pop(key)
        for _, pod_name in mine:
            self.kubelet.remove(pod_name)
        return job

    def pod_log(self, namespace: str, name: str) -> str:
        with self.lock:
            if (namespace, name) not in self.pods:
                raise ApiError(404, "NotFound", f'pods "{name}" not found')
        return self.kubelet.log(namespace, name)

    def _set_job(self, namespace: str, name: str, **status) -> None:
        with self.lock:
            job = self.jobs.get((namespace, name))
            if job is not None:
                job["status"].update(status)
                self._bump(job)

    def _control(self, namespace: str, name: str) -> None:
        """The Job controller: one pod after another until one succeeds, or the backoff limit or
        the deadline is reached."""
        job = self.job(namespace, name)
        spec = job["spec"]
        started = time.monotonic()
        deadline = spec.get("activeDeadlineSeconds")
        self._set_job(namespace, name, startTime=now(), active=1, ready=0, terminating=0)
        failed = 0
        while True:
            left = None if deadline is None else max(0.0, deadline - (time.monotonic() - started))
            phase = self._run_pod(namespace, job, left)
            if (namespace, name) not in self.jobs:  # deleted meanwhile
                return
            if phase == "Succeeded":
                self._finish(namespace, name, COMPLETE, succeeded=1, failed=failed)
                return
            failed += 1
            if phase == "DeadlineExceeded" or failed > spec["backoffLimit"]:
                end = DEADLINE if phase == "DeadlineExceeded" else BACKOFF
                self._finish(namespace, name, end, failed=failed)
                return
            self._set_job(namespace, name, failed=failed)

    def _finish(self, namespace: str, name: str, end: tuple, **counts) -> None:
        (first, last), reason, message = end
        stamp = now()
        conditions = [
            {"type": kind, "status": "True", "reason": reason, "message": message,
             "lastProbeTime": stamp, "lastTransitionTime": stamp}
            for kind in (first, last)
        ]  # fmt: skip
        extra = {"completionTime": stamp} if last == "Complete" else {}
        self._set_job(namespace, name, active=0, ready=0, conditions=conditions, **counts, **extra)

    # --- Pods: made by the controller, run by the node -----------------------------------------

    def _run_pod(self, namespace: str, job: dict, left: float | None) -> str:
        """Make the Job's next pod and have the node run it; its phase (or DeadlineExceeded)."""
        template, meta = job["spec"]["template"], job["metadata"]
        pod_name = f"{meta['name'][:57]}-{secrets.token_hex(3)[:5]}"
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                **json.loads(json.dumps(template["metadata"])),
                "name": pod_name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now(),
                "ownerReferences": [{**owner, "controller": True}],
            },
            "spec": json.loads(json.dumps(template["spec"])),
            "status": {"phase": "Pending"},
        }
        with self.lock:
            self._bump(pod)
            self.pods[(namespace, pod_name)] = pod
        reason = self.kubelet.unschedulable(pod["spec"]["containers"][0])
        if reason:
            condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
            pod["status"]["conditions"] = [{**condition, "message": reason}]
            time.sleep(left if left is not None else 1e9)
            return "DeadlineExceeded"
        return self.kubelet.run(pod, left)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # the emulator's log, not stderr
        with open(self.server.cluster.root / "requests.log", "a") as log:
            log.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    def _answer(self, code: int, body: object, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            body = json.loads(raw) if raw else None
            code, answer = self._route(url.path, parse_qs(url.query), body)
            if isinstance(answer, str):
                self._answer(code, answer, "text/plain")
            else:
                self._answer(code, answer)
        except ApiError as err:
            self._answer(err.code, err.status())
        except (ValueError, KeyError, TypeError) as err:
            self._answer(400, ApiError(400, "BadRequest", str(err)).status())

    do_GET = do_POST = do_DELETE = _handle

    def _route(self, path: str, query: dict, body: dict | None) -> tuple[int, object]:
        cluster, method = self.server.cluster, self.command
        if path == "/version" and method == "GET":
            major, minor = K8S_VERSION.split(".")
            return 200, {"major": major, "minor": minor, "gitVersion": f"v{K8S_VERSION}.0"}
        jobs, pods = JOBS.match(path), PODS.match(path)
        if jobs:
            namespace, name, _status = jobs.groups()
            if method == "POST" and not name:
                return 201, cluster.create_job(namespace, body or {})
            if method == "GET" and name:
                return 200, cluster.job(namespace, name)
            if method == "GET":
                with cluster.lock:
                    items = [j for (ns, _), j in cluster.jobs.items() if ns == namespace]
                return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                             "items": items}  # fmt: skip
            if method == "DELETE" and name:
                cluster.delete_job(namespace, name)
                details = {"name": name, "group": "batch", "kind": "jobs"}
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                             "details": details}  # fmt: skip
        if pods and method == "GET":
            namespace, name, log = pods.groups()
            if name and log:
                return 200, cluster.pod_log(namespace, name)
            if name:
                with cluster.lock:
                    if (namespace, name) not in cluster.pods:
                        raise ApiError(404, "NotFound", f'pods "{name}" not found')
                    return 200, cluster.pods[(namespace, name)]
            wanted = dict(
                p.split("=", 1) for p in query.get("labelSelector", [""])[0].split(",") if "=" in p
            )
            with cluster.lock:
                items = [
                    p
                    for (ns, _), p in cluster.pods.items()
                    if ns == namespace and wanted.items() <= p["metadata"]["labels"].items()
                ]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        message = f"the server could not find the requested resource ({method} {path})"
        raise ApiError(404, "NotFound", message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, cluster: Cluster, token: str) -> None:
        super().__init__(address, _Handler)
        self.cluster, self.token = cluster, token


class Emulator:
    """The API server on a free loopback port (HTTPS), its cluster, and a kube-config for it."""

    def __init__(self, root: Path, token: str, docker_env: dict[str, str] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.token = root, token
        self.cluster = Cluster(root, dict(docker_env or os.environ))
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Emulator:
        cert, key = self_signed(self.root)
        self._server = _Server(("127.0.0.1", 0), self.cluster, self.token)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.cert = cert
        return self

    def kubeconfig(self, path: Path, context: str = CONTEXT, token: str | None = None) -> Path:
        """A kube-config with this server, its CA and the bearer token, as ``kubectl`` reads it."""
        ca = base64.b64encode(self.cert.read_bytes()).decode()
        cluster = {"server": self.url, "certificate-authority-data": ca}
        where = {"cluster": context, "user": context, "namespace": "default"}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": where}],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def stop(self) -> None:
        """Stop serving and remove every pod container still there."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for namespace, name in list(self.cluster.jobs):
            self.cluster.delete_job(namespace, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=Path("kube-emulator"))
    args = parser.parse_args()
    emulator = Emulator(args.root.resolve(), args.token).start()
    emulator.kubeconfig(args.kubeconfig)
    print(f"serving on {emulator.url}; KUBECONFIG={args.kubeconfig}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
