"""Quick checks of the remote ends a run needs, done before Spark starts.

Left to themselves, MLflow's HTTP client retries an unreachable tracking server with backoff for
about four minutes, and Spark retries an unreachable standalone master for a minute before it
gives up in a log line. One connection attempt each, with a short timeout, says the same in
seconds and in one line.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlparse

from sparkml_template.errors import UserError

PROBE_TIMEOUT_S = 5.0
DEFAULT_MASTER_PORT = 7077
DEFAULT_CONNECT_PORT = 15002


class TrackingServerUnreachableError(UserError):
    """The tracking server did not answer: nothing can be recorded there, not even the failure."""


class TrackingServerAuthError(TrackingServerUnreachableError):
    """The tracking server refused our credentials: it will not record the failure either."""


class TrackingStoreRefusedError(TrackingServerUnreachableError):
    """The tracking store would not start the run (MLflow 3 refuses a ``./mlruns`` file store
    unless ``MLFLOW_ALLOW_FILE_STORE=true``; a deleted experiment): nowhere to record it."""


def _reason(exc: BaseException) -> str:
    """The OS-level cause of a failed connection, in a few words ("connection refused")."""
    while isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def tcp_probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if ``host:port`` accepts a TCP connection within ``timeout``, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return _reason(exc)


def check_tracking_server(uri: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail in seconds if an http(s) tracking URI does not answer; other stores are not probed.

    Any HTTP answer counts, even 401 or 404 (authentication and routing are MLflow's to
    report), and so does a TLS handshake problem (the client may trust a CA we do not).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "") if uri is None else uri
    parts = urlparse(uri)
    if parts.scheme not in ("http", "https"):
        return
    # Credentials in the URI are neither needed for the probe nor fit to print.
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    uri = parts._replace(netloc=netloc, query="", fragment="").geturl().rstrip("/")
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout):
            pass
    except (urllib.error.HTTPError, ssl.SSLError):
        return
    except OSError as exc:  # URLError, timeouts while reading, resets
        if isinstance(getattr(exc, "reason", None), ssl.SSLError):
            return
        raise TrackingServerUnreachableError(
            f"MLflow tracking server {uri} is unreachable ({_reason(exc)}): start it, "
            "or point MLFLOW_TRACKING_URI at a running one"
        ) from None
    check_tracking_credentials(uri, timeout)


def _auth_header(env: Mapping[str, str]) -> dict[str, str]:
    """The Authorization header MLflow's client would send, from the same variables."""
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user or password:
        pair = f"{user or ''}:{password or ''}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
    if env.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
    return {}


def check_tracking_credentials(
    uri: str, timeout: float = PROBE_TIMEOUT_S, env: Mapping[str, str] | None = None
) -> None:
    """Fail in seconds, before Spark starts, when the server refuses our credentials.

    One read-only request (search one experiment) with the credentials MLflow would use; only
    401 and 403 count: any other answer is MLflow's to report. The message never holds them.
    """
    env = os.environ if env is None else env
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", headers=_auth_header(env)
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            return
        given = env.get("MLFLOW_TRACKING_USERNAME") or env.get("MLFLOW_TRACKING_TOKEN")
        what = "refused the credentials given" if given else "needs credentials"
        raise TrackingServerAuthError(
            f"MLflow tracking server {uri} {what} (HTTP {exc.code}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on it"
        ) from None
    except OSError:  # answered /health a moment ago; a hiccup here is MLflow's to report
        return


def master_endpoints(master: str) -> list[tuple[str, int]]:
    """``(host, port)`` of each master in ``spark://h1:p1,h2:p2`` (standby masters included)."""
    endpoints = []
    for part in master.removeprefix("spark://").split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise UserError(
                f"master {master!r} is not a valid standalone master URL; "
                f"expected spark://host:port (the default port is {DEFAULT_MASTER_PORT})"
            )
        endpoints.append((host.strip("[]"), int(port)))
    return endpoints


def connect_endpoint(master: str) -> tuple[str, int]:
    """``(host, port)`` of a Spark Connect URL ``sc://host[:port][/;param=value…]``."""
    parts = urlparse(master.strip())
    try:
        port = parts.port or DEFAULT_CONNECT_PORT
    except ValueError:
        port = None
    if parts.scheme != "sc" or not parts.hostname or port is None:
        raise UserError(
            f"master {master!r} is not a valid Spark Connect URL; expected sc://host:port "
            f"(the default port is {DEFAULT_CONNECT_PORT})"
        )
    return parts.hostname, port


def check_master_reachable(master: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail in seconds unless some master of a ``spark://`` URL, or the Spark Connect server of
    an ``sc://`` URL, accepts a TCP connection."""
    if master.strip().startswith("sc://"):
        host, port = connect_endpoint(master)
        reason = tcp_probe(host, port, timeout)
        if reason is not None:
            raise UserError(
                f"Spark Connect server {host}:{port} is unreachable ({reason}): start it "
                "($SPARK_HOME/sbin/start-connect-server.sh) or fix the master parameter"
            )
        return
    if not master.startswith("spark://"):
        return  # local needs no network; YARN and Kubernetes are reached through their configs
    reasons = []
    for host, port in master_endpoints(master):
        reason = tcp_probe(host, port, timeout)
        if reason is None:
            return
        reasons.append(reason)
    raise UserError(
        f"Spark master {master} is unreachable ({', '.join(sorted(set(reasons)))}): start it "
        "(python scripts/spark_cluster.py start) or fix the master parameter"
    )
