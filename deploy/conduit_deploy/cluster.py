"""The Cluster stage: make the kops cluster match the rendered spec, then wait for it.

deploy/README.md says what each step is for; this module decides the commands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .cloud import CloudSession, export_kubeconfig
from .console import log
from .runner import Result, Runner, tail


@dataclass(frozen=True)
class ClusterOptions:
    # A new GCE cluster takes about 10 minutes to validate; prod has three control planes.
    validate_timeout: float = 1500
    validate_interval: float = 30
    rolling_update: bool = True


def replace_command(kops_file: Path) -> list[str]:
    return ["kops", "replace", "--filename", str(kops_file), "--force"]


def update_command(cluster: str) -> list[str]:
    return ["kops", "update", "cluster", "--name", cluster, "--yes"]


def validate_command(cluster: str) -> list[str]:
    return ["kops", "validate", "cluster", "--name", cluster, "--output", "json"]


def rolling_update_command(cluster: str) -> list[str]:
    return ["kops", "rolling-update", "cluster", "--name", cluster, "--yes"]


def summarise_validation(result: Result) -> str:
    """One line from `kops validate cluster -o json`: valid, or the first failure."""
    if result.ok:
        return "cluster is valid"
    try:
        failures = json.loads(result.stdout).get("failures") or []
    except (ValueError, AttributeError):
        failures = []
    if failures:
        first = failures[0]
        what = " ".join(str(first.get(key, "")) for key in ("type", "name")).strip()
        return f"{len(failures)} failure(s); first: {what}: {first.get('message', '')}".strip()
    # Before the API server answers, kops prints an error instead of a report.
    return tail(result.stderr or result.stdout, 1) or f"exit code {result.returncode}"


def wait_until_valid(session: CloudSession, runner: Runner, options: ClusterOptions) -> None:
    def read(result: Result) -> tuple[bool | None, str]:
        return (True if result.ok else None), summarise_validation(result)

    runner.poll(
        validate_command(session.cluster_name),
        read,
        what=f"validate {session.cluster_name}",
        until="it passes",
        timeout=options.validate_timeout,
        interval=options.validate_interval,
        planned=True,
    )


def run_cluster(
    environment: str,
    kops_file: Path,
    session: CloudSession,
    runner: Runner,
    options: ClusterOptions,
) -> None:
    name = session.cluster_name
    log(f"==> cluster: applying {kops_file} to {name} ({environment})")
    runner.run(replace_command(kops_file))
    log(f"==> cluster: updating cloud resources of {name}")
    runner.run(update_command(name))
    export_kubeconfig(session, runner)
    log(
        f"==> cluster: waiting for {name} to validate "
        f"(every {options.validate_interval:g}s, at most {options.validate_timeout:g}s)"
    )
    wait_until_valid(session, runner, options)
    if options.rolling_update:
        log(f"==> cluster: rolling nodes whose spec changed (none: nothing to do) on {name}")
        runner.run(rolling_update_command(name))
    else:
        log("==> cluster: rolling update skipped (--no-rolling-update)")
    runner.outcome(f"==> cluster: {name} is ready for {environment}")
