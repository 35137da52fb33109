"""The Cluster stage: make the kops cluster match the rendered spec, then wait for it.

Steps: `kops replace --force` (creates the Cluster and InstanceGroups when missing),
`kops update cluster --yes` (creates or changes the cloud resources), export an admin
kubeconfig, poll `kops validate cluster` with a bounded timeout, then
`kops rolling-update cluster --yes`.

Why always the rolling update: `kops update` changes instance templates, but running
machines keep their old spec (machine type, image, Kubernetes version) until they are
replaced. `rolling-update` replaces only the instance groups that kops marks
NeedsUpdate, one node at a time with drain and validation, and does nothing when none
are, so running it every time keeps the cluster equal to the repository at no cost
when nothing changed. `--no-rolling-update` skips it (e.g. to roll at a quieter time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .cloud import CloudSession, export_kubeconfig
from .runner import Result, Runner, log, tail
from .waiting import Clock, poll


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


def wait_until_valid(
    session: CloudSession, runner: Runner, options: ClusterOptions, clock: Clock | None = None
) -> None:
    command = validate_command(session.cluster_name)
    if runner.dry_run:
        runner.note(
            f"repeated every {options.validate_interval:g}s until it passes, "
            f"for at most {options.validate_timeout:g}s:"
        )
        runner.run(command)
        return

    def attempt() -> tuple[bool | None, str]:
        result = runner.run(command, capture=True, check=False)
        return (True if result.ok else None), summarise_validation(result)

    poll(
        attempt,
        what=f"validate {session.cluster_name}",
        timeout=options.validate_timeout,
        interval=options.validate_interval,
        clock=clock,
    )


def run_cluster(
    environment: str,
    kops_file: Path,
    session: CloudSession,
    runner: Runner,
    options: ClusterOptions,
    clock: Clock | None = None,
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
    wait_until_valid(session, runner, options, clock)
    if options.rolling_update:
        log(f"==> cluster: rolling nodes whose spec changed (none: nothing to do) on {name}")
        runner.run(rolling_update_command(name))
    else:
        log("==> cluster: rolling update skipped (--no-rolling-update)")
    if not runner.dry_run:
        log(f"==> cluster: {name} is ready for {environment}")
