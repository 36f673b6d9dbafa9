"""The one node of the emulated Kubernetes cluster (tests/emulators/kube_api.py): it runs a Pod's
container on the real container engine, as a kubelet asks its runtime to.

A pod spec becomes one ``docker run``: the image (pulled from its registry if absent),
``command``/``args``, ``env`` and ``envFrom`` secrets, CPU and memory limits, the pod's and the
container's security context (runAsUser/Group, fsGroup, runAsNonRoot checked against the image's
user, readOnlyRootFilesystem, allowPrivilegeEscalation, capabilities) and ``emptyDir`` volumes (a
fresh folder on the node owned by the fsGroup, or tmpfs for ``medium: Memory``). The pod uses the
host's network: there is no pod network, so it reaches services on the host's 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

NODE = "emulated-node"
_QUANTITY = re.compile(r"^([0-9.]+)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_FACTORS = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "Ki": 2**10,
    "M": 1e6,
    "Mi": 2**20,
    "G": 1e9,
    "Gi": 2**30,
    "T": 1e12,
    "Ti": 2**40,
}


class PodError(Exception):
    """A container the kubelet cannot create: the waiting reason Kubernetes would show."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def now() -> str:
    """A timestamp as the API server writes one (RFC 3339, UTC, seconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity(text: object) -> float:
    """A Kubernetes resource quantity (``500m``, ``2``, ``4Gi``) as a number."""
    match = _QUANTITY.match(str(text))
    if not match:
        raise ValueError(f"unsupported quantity {text!r}")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def container_status(container: dict, state: dict, ready: bool = False) -> dict:
    """A ``containerStatuses`` entry in the given state (waiting, running or terminated)."""
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": container["image"],
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    }


class Kubelet:
    """Runs pods with the ``docker`` CLI against ``docker_env``'s engine; keeps their logs."""

    def __init__(self, root: Path, docker_env: dict[str, str], secrets: dict) -> None:
        self.root, self.docker_env, self.secrets = root, docker_env, secrets
        self.cpus = float(os.cpu_count() or 1)
        self.memory = float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))

    def _docker(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, env=self.docker_env, timeout=timeout
        )

    def unschedulable(self, container: dict) -> str | None:
        """The scheduler's message when the requests do not fit this one node."""
        requests = container.get("resources", {}).get("requests", {})
        short = [
            k
            for k, have in (("cpu", self.cpus), ("memory", self.memory))
            if k in requests and quantity(requests[k]) > have
        ]
        return f"0/1 nodes are available: 1 Insufficient {', '.join(short)}." if short else None

    def run(self, pod: dict, deadline_s: float | None) -> str:
        """Run the pod to its end, updating ``pod["status"]`` as it goes; its final phase, or
        ``DeadlineExceeded`` when it was killed at the deadline."""
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        container = pod["spec"]["containers"][0]
        pod["spec"]["nodeName"] = NODE
        try:
            started = self._docker(*self.docker_run(pod)[1:])
            if started.returncode != 0:
                raise PodError("RunContainerError", started.stderr.strip())
        except PodError as exc:
            waiting = {"waiting": {"reason": exc.reason, "message": exc.message}}
            status = [container_status(container, waiting)]
            pod["status"].update(phase="Failed", message=exc.message, containerStatuses=status)
            return "Failed"
        start = now()
        running = container_status(container, {"running": {"startedAt": start}}, ready=True)
        pod["status"].update(phase="Running", startTime=start, containerStatuses=[running])
        cid = f"k8s_{name}"
        expired = False
        try:
            code = int(self._docker("wait", cid, timeout=deadline_s).stdout.strip() or 137)
        except subprocess.TimeoutExpired:
            self._docker("kill", cid)
            code, expired = 137, True
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, env=self.docker_env)
        (self.root / f"{namespace}_{name}.log").write_bytes(logs.stdout + logs.stderr)
        self._docker("rm", "-f", cid)
        reason = "Completed" if code == 0 else ("OOMKilled" if code == 137 else "Error")
        terminated = {"exitCode": code, "reason": reason, "startedAt": start, "finishedAt": now()}
        phase = "Succeeded" if code == 0 else "Failed"
        status = [container_status(container, {"terminated": terminated})]
        pod["status"].update(phase=phase, containerStatuses=status)
        return "DeadlineExceeded" if expired else phase

    def remove(self, pod_name: str) -> None:
        """Kill and remove a pod's container (its Job was deleted)."""
        self._docker("rm", "-f", f"k8s_{pod_name}")

    def log(self, namespace: str, name: str) -> str:
        """What ``kubectl logs`` shows: the container's stdout and stderr."""
        path = self.root / f"{namespace}_{name}.log"
        if path.is_file():
            return path.read_text(errors="replace")
        logs = self._docker("logs", f"k8s_{name}")
        return logs.stdout + logs.stderr

    def docker_run(self, pod: dict) -> list[str]:
        """The pod spec as one ``docker run -d`` (what the kubelet asks the runtime for)."""
        spec, name = pod["spec"], pod["metadata"]["name"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise PodError("CreateContainerConfigError", "the emulated kubelet runs one container")
        c = spec["containers"][0]
        image = c["image"]
        if self._docker("image", "inspect", image).returncode != 0:
            pulled = self._docker("pull", image)
            if pulled.returncode != 0:
                raise PodError("ErrImagePull", (pulled.stderr.strip().splitlines() or ["?"])[-1])
        cmd = ["docker", "run", "-d", "--name", f"k8s_{name}", "--network", "host"]
        cmd += ["--hostname", name, "--label", f"io.kubernetes.pod.name={name}"]
        cmd += self._security(spec.get("securityContext", {}), c.get("securityContext", {}), image)
        limits = c.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            cmd += ["--cpus", f"{quantity(limits['cpu']):g}"]
        if "memory" in limits:
            cmd += ["--memory", str(int(quantity(limits["memory"])))]
        cmd += self._env(c, pod["metadata"]["namespace"])
        cmd += self._volumes(spec, c, name)
        if c.get("workingDir"):
            cmd += ["--workdir", c["workingDir"]]
        command = c.get("command")
        if command:
            cmd += ["--entrypoint", command[0]]
        return [*cmd, image, *(command or [])[1:], *c.get("args", [])]

    def _env(self, c: dict, namespace: str) -> list[str]:
        out = []
        for source in c.get("envFrom", []):
            ref = source.get("secretRef") or {}
            data = self.secrets.get((namespace, ref.get("name", "")))
            if data is None and not ref.get("optional"):
                message = f'secret "{ref.get("name")}" not found'
                raise PodError("CreateContainerConfigError", message)
            out += [f"--env={k}={v}" for k, v in (data or {}).items()]
        for var in c.get("env", []):
            if "valueFrom" in var:
                raise PodError("CreateContainerConfigError", "valueFrom is not emulated")
            out.append(f"--env={var['name']}={var.get('value', '')}")
        return out

    def _security(self, pod_sc: dict, c_sc: dict, image: str) -> list[str]:
        sc = {**pod_sc, **c_sc}
        out = []
        if "runAsUser" in sc:
            group = f":{sc['runAsGroup']}" if "runAsGroup" in sc else ""
            out += ["--user", f"{sc['runAsUser']}{group}"]
        if sc.get("runAsNonRoot"):
            user = sc.get("runAsUser")
            if user is None:
                found = self._docker("image", "inspect", "--format", "{{.Config.User}}", image)
                user = found.stdout.strip().split(":")[0] or "0"
            if str(user) in ("0", "root"):
                message = "container has runAsNonRoot and image will run as root"
                raise PodError("CreateContainerConfigError", message)
            if not str(user).isdigit():
                message = "container has runAsNonRoot and image has non-numeric user, cannot verify"
                raise PodError("CreateContainerConfigError", message)
        for gid in ([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []) + pod_sc.get(
            "supplementalGroups", []
        ):
            out += ["--group-add", str(gid)]
        if sc.get("readOnlyRootFilesystem"):
            out.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            out += ["--security-opt", "no-new-privileges"]
        caps = sc.get("capabilities", {})
        out += [f"--cap-drop={cap}" for cap in caps.get("drop", [])]
        out += [f"--cap-add={cap}" for cap in caps.get("add", [])]
        return out

    def _volumes(self, spec: dict, c: dict, pod_name: str) -> list[str]:
        """``emptyDir`` volumes: a fresh folder on the node (group fsGroup, setgid), or tmpfs."""
        out = []
        fs_group = spec.get("securityContext", {}).get("fsGroup")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in c.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None or "emptyDir" not in volume:
                message = f"volume {mount['name']}: only emptyDir is emulated"
                raise PodError("CreateContainerConfigError", message)
            target = mount["mountPath"]
            if volume["emptyDir"].get("medium") == "Memory":
                out += ["--mount", f"type=tmpfs,destination={target}"]
                continue
            folder = self.root / "pods" / pod_name / "volumes" / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            try:  # the volume's group is fsGroup, as the kubelet makes it (needs root here)
                if fs_group is None:
                    raise PermissionError
                os.chown(folder, 0, int(fs_group))
                folder.chmod(0o2775)
            except PermissionError:
                folder.chmod(0o777)
            ro = ",readonly" if mount.get("readOnly") else ""
            out += ["--mount", f"type=bind,source={folder},destination={target}{ro}"]
        return out
