"""A host slow across runs: slow in this run and in k of the last n runs on the same cluster.

One run's slowness can be a neighbour's backup job; the same host slow run after run is a
node to look at. Earlier runs are read back through MLflow's search API: the ``n`` most recent
runs of the same experiment with the same ``spark.master`` tag that logged a slowness tag
(``spark.hosts.slowness``). The lookup is one bounded query on a worker thread that is given up
after ``LOOKUP_TIMEOUT_S``; any problem means "no history", never a failed run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparkml_template.observability.hosts import parse_slowness_tag

SLOWNESS_TAG = "spark.hosts.slowness"
MASTER_TAG = "spark.master"
FACTOR_ENV = "SPARKML_SLOW_HOST_FACTOR"
MIN_RUNS_ENV = "SPARKML_SLOW_HOST_MIN_RUNS"
LAST_RUNS_ENV = "SPARKML_SLOW_HOST_LAST_RUNS"
LOOKUP_TIMEOUT_S = 10.0
MAX_LAST_RUNS = 50  # the lookup stays one small page whatever the environment says


@dataclass(frozen=True)
class SlowHostRule:
    """The one place the defaults live: slow = ``factor`` x the other hosts, in this run and in
    ``min_runs`` of the ``last_runs`` earlier runs. Environment variables override each."""

    factor: float = 1.5
    min_runs: int = 3
    last_runs: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SlowHostRule:
        env = os.environ if environ is None else environ
        default = cls()

        def read(name: str, fallback: float, kind: type) -> Any:
            try:
                value = kind(env[name])
            except (KeyError, ValueError):
                return fallback
            return value if value > 0 else fallback

        last = min(read(LAST_RUNS_ENV, default.last_runs, int), MAX_LAST_RUNS)
        return cls(
            factor=read(FACTOR_ENV, default.factor, float),
            min_runs=min(read(MIN_RUNS_ENV, default.min_runs, int), last),
            last_runs=last,
        )


def _quoted(value: str) -> str | None:
    """A value inside an MLflow filter string, or None if it cannot be quoted safely."""
    return None if "'" in value or "\\" in value else f"'{value}'"


def earlier_slowness(
    client: Any, experiment_id: str, master: str, run_id: str, last_runs: int
) -> list[dict[str, float]]:
    """Per-host slowness of the ``last_runs`` most recent other runs on the same cluster."""
    quoted = _quoted(master)
    if quoted is None or last_runs <= 0:
        return []
    runs = client.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{MASTER_TAG}` = {quoted} and tags.`{SLOWNESS_TAG}` != ''",
        max_results=last_runs + 1,  # this run may already carry the tag
        order_by=["attributes.start_time DESC"],
    )
    others = [r for r in runs if r.info.run_id != run_id][:last_runs]
    return [parse_slowness_tag(r.data.tags.get(SLOWNESS_TAG)) for r in others]


def slow_hosts(
    current: Mapping[str, float], history: Sequence[Mapping[str, float]], rule: SlowHostRule
) -> list[tuple[str, float, int]]:
    """Hosts slow now and in ``min_runs`` of ``history``: (host, slowness now, runs slow before).

    Fewer earlier runs than ``min_runs`` names nobody.
    """
    out = []
    for host, now in sorted(current.items()):
        if now < rule.factor:
            continue
        before = sum(1 for run in history if run.get(host, 0.0) >= rule.factor)
        if before >= rule.min_runs:
            out.append((host, now, before))
    return out


def slow_hosts_line(found: Sequence[tuple[str, float, int]], seen: int, rule: SlowHostRule) -> str:
    """``198.51.100.12 2.3x (>= 1.5x in 4 of the last 5 runs)``, hosts joined by "; "."""
    return "; ".join(
        f"{host} {now:.1f}x (>= {rule.factor:g}x in {before} of the last {seen} runs)"
        for host, now, before in found
    )


def lookup_with_timeout(
    client: Any,
    experiment_id: str,
    master: str,
    run_id: str,
    last_runs: int,
    timeout_s: float = LOOKUP_TIMEOUT_S,
) -> list[dict[str, float]] | None:
    """``earlier_slowness`` on a daemon thread; None if it raised or did not answer in time
    (a tracking server that is retrying would otherwise hold the end of the run)."""
    result: list[list[dict[str, float]]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            result.append(earlier_slowness(client, experiment_id, master, run_id, last_runs))
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="slow-host-history", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if errors:
        raise errors[0]
    return result[0] if result else None
