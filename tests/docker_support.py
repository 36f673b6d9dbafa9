"""The container engine and the environment image the Kubernetes tests share, made once per test
session: a Docker daemon (the one already running, else Debian's ``dockerd`` started here with its
own data root and socket, and stopped by PID at the end), a base image
(``SPARKML_TEMPLATE_BASE_IMAGE``, ``python:3.11-slim-bookworm`` if present or pullable, else a
minimal Debian made offline by
``debootstrap`` from the apt mirror and cached as a tarball), and the project's ``Dockerfile``
built on it.

Where no engine can run (not root, no ``dockerd``), the tests that need one skip and say why;
under ``CI=true`` they fail instead: CI installs the engine (``.ci/run``: ``make docker-deps``).

Run by hand:  python tests/docker_support.py   (builds the image, prints its tag, size and time)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_IMAGE = "pyspark-mlflow-template-env:test"
PULLED_BASE = "python:3.11-slim-bookworm"
DEBIAN_RELEASE = "bookworm"
OFFLINE_BASE = f"local/debian:{DEBIAN_RELEASE}"
BASE_ENV = "SPARKML_TEMPLATE_BASE_IMAGE"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparkml-template"
# What a pip inside the build trusts: the host's CA bundle (a TLS-intercepting proxy's CA too).
CA_ENVS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
BUILD_TIMEOUT_S = 1800
PULL_TIMEOUT_S = 120


@dataclass
class Engine:
    """A Docker daemon the tests talk to through ``DOCKER_HOST``; ``pid`` only when started here."""

    host: str
    pid: int | None = None
    root: Path | None = None
    figures: dict[str, float | str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with ``DOCKER_HOST`` pointing at the engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 600, check: bool = True, **kw):
        """``docker <args>`` against this engine, output captured as text."""
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, env=self.env, **kw
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
        return done


def _answers(env: dict[str, str]) -> bool:
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=30,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0


def unavailable() -> str | None:
    """Why no engine can be had here (None: one runs, or one can be started)."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (Debian: apt-get install docker.io)"
    if _answers(dict(os.environ)):
        return None
    if shutil.which("dockerd") is None:
        return "no Docker engine runs and there is no dockerd to start (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "no Docker engine runs, and starting dockerd needs root"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with the reason; under CI, where the engine is installed, fail instead."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the container tests: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """The running engine, or a ``dockerd`` started for the session (stopped by its PID after)."""
    if _answers(dict(os.environ)):
        yield Engine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        return
    # A short root: containerd's sockets live under it and a unix socket path has 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="kd-", dir="/tmp"))
    host = f"unix://{root}/docker.sock"
    cmd = ["dockerd", "--host", host, "--data-root", f"{root}/data", "--exec-root", f"{root}/x",
           "--pidfile", f"{root}/dockerd.pid", "--storage-driver", "overlay2",
           "--exec-opt", "native.cgroupdriver=cgroupfs",
           # No docker0 bridge, no iptables rules on a shared host: containers use the host network.
           "--bridge", "none", "--iptables=false", "--ip-masq=false"]  # fmt: skip
    with open(root / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = Engine(host, proc.pid, root)
    try:
        deadline = time.monotonic() + 60
        while not _answers(started.env):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd did not start:\n{tail}")
            time.sleep(0.5)
        yield started
    finally:
        _stop(proc)
        _unmount_under(root)
        subprocess.run(["rm", "-rf", str(root)], check=False)  # ~2 GB of image layers


def _unmount_under(root: Path) -> None:
    """Unmount what the daemon left mounted under its root (its netns bind mount, a container
    killed mid-run), deepest first, so the folder can be removed."""
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the daemon by PID (it stops its containers and containerd), SIGKILL if it hangs."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def debian_mirror() -> str:
    """The Debian mirror apt uses here (sources.list or deb822 .sources), else deb.debian.org."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        with contextlib.suppress(OSError):
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for match in re.finditer(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M):
            if not match.group(1).rstrip("/").endswith("-security"):
                return match.group(1)
    return "http://deb.debian.org/debian"


def offline_base(eng: Engine) -> str:
    """``local/debian:bookworm``: a minbase Debian root made by debootstrap, cached as a tarball
    under ~/.cache (keyed on the release), imported into the engine."""
    if eng.docker("image", "inspect", OFFLINE_BASE, check=False).returncode == 0:
        return OFFLINE_BASE
    tarball = CACHE / f"debian-{DEBIAN_RELEASE}-minbase.tar"
    if not tarball.is_file():
        if shutil.which("debootstrap") is None:
            raise RuntimeError(
                "no base image and no debootstrap to make one (apt-get install debootstrap)"
            )
        rootfs = Path(tempfile.mkdtemp(prefix="debootstrap-"))
        try:
            subprocess.run(
                ["debootstrap", "--variant=minbase", DEBIAN_RELEASE, str(rootfs), debian_mirror()],
                check=True, capture_output=True, timeout=900,
            )  # fmt: skip
            tarball.parent.mkdir(parents=True, exist_ok=True)
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.replace(tarball)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    with open(tarball, "rb") as data:
        eng.docker("import", "-", OFFLINE_BASE, stdin=data)
    return OFFLINE_BASE


def base_image(eng: Engine) -> str:
    """The image the Dockerfile is built FROM: the one asked for, the default if it can be had,
    else a Debian made offline."""
    asked = os.environ.get(BASE_ENV)
    if asked:
        return asked
    if eng.docker("image", "inspect", PULLED_BASE, check=False).returncode == 0:
        return PULLED_BASE
    with contextlib.suppress(subprocess.TimeoutExpired):
        if eng.docker("pull", PULLED_BASE, check=False, timeout=PULL_TIMEOUT_S).returncode == 0:
            return PULLED_BASE
    return offline_base(eng)


def host_ca_bundle() -> Path | None:
    """The CA bundle pip on this host trusts (for a proxy that re-signs TLS), if it names one."""
    for name in CA_ENVS:
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return None


def build_env_image(eng: Engine, tag: str = ENV_IMAGE, log: Path | None = None) -> str:
    """Build the project's Dockerfile on the base; the host CA goes into the ``deps`` stage only.

    The context is a fresh folder (Dockerfile, requirements.txt, pip-ca.crt), so the
    repository's .dockerignore and working files play no part.
    """
    base = base_image(eng)
    with tempfile.TemporaryDirectory(prefix="env-image-") as ctx:
        for name in ("Dockerfile", "requirements.txt"):
            shutil.copy2(PROJECT_ROOT / name, Path(ctx) / name)
        ca = host_ca_bundle()
        if ca is not None:
            shutil.copy2(ca, Path(ctx) / "pip-ca.crt")
        started = time.monotonic()
        build = eng.docker(
            "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, ctx,
            timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
    if log is not None:
        log.write_text(build.stdout + build.stderr)
    if build.returncode != 0:
        raise RuntimeError(f"docker build of the Dockerfile failed:\n{build.stderr[-3000:]}")
    size = int(eng.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    eng.figures.update(base=base, build_s=round(seconds, 1), size_mb=round(size / 1e6))
    return tag


def project_copy(dest: Path) -> Path:
    """The project as a user's checkout holds it (MLproject, conda.yaml, entry scripts, the
    package, the shipped data), without the venv, stores or caches: what gets mounted read-only."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    dest.mkdir(parents=True, exist_ok=True)
    for path in PROJECT_ROOT.iterdir():
        if path.suffix == ".py" or path.name in ("MLproject", "conda.yaml", "requirements.txt"):
            shutil.copy2(path, dest / path.name)
    for folder in ("sparkml_template", "data"):
        shutil.copytree(PROJECT_ROOT / folder, dest / folder, ignore=ignore)
    return dest


@dataclass
class Images:
    """What the session fixture hands out: the engine and the environment image's tag."""

    engine: Engine
    env_image: str


@pytest.fixture(scope="session", name="images")
def images_fixture(tmp_path_factory) -> Iterator[Images]:
    """The engine and the environment image, made once per session for every test that needs
    them (skipped with the reason where no engine can run; a failure under CI)."""
    reason = unavailable()
    if reason:
        skip_or_fail(reason)
    with engine() as eng:
        log = tmp_path_factory.mktemp("env-image") / "build.log"
        yield Images(eng, build_env_image(eng, log=log))


if __name__ == "__main__":
    with engine() as eng:
        tag = build_env_image(eng)
        print(tag, json.dumps(eng.figures))
