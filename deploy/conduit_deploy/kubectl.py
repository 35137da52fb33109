"""How the deploy tool applies objects: one field manager, server-side."""

from __future__ import annotations

from pathlib import Path

# Server-side apply under this manager: the API server tracks who owns which field
# (managedFields) and writes no kubectl.kubernetes.io/last-applied-configuration
# annotation, which client-side apply fills with the whole object, Secret data included.
FIELD_MANAGER = "conduit-deploy"


def apply_command(source: Path | str, *, take_over: bool = False) -> list[str]:
    """take_over: fields another manager changed since (a `kubectl rollout undo`, a
    `kubectl scale`) become ours again instead of failing the apply with a conflict."""
    return [
        "kubectl",
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        *(["--force-conflicts"] if take_over else []),
        "--filename",
        str(source),
    ]


def rollout_status_command(kind: str, name: str, namespace: str, timeout: float) -> list[str]:
    return [
        "kubectl",
        "rollout",
        "status",
        f"{kind}/{name}",
        "--namespace",
        namespace,
        f"--timeout={timeout:g}s",
    ]


def delete_command(
    *targets: str, namespace: str | None = None, timeout: float | None = None, wait: bool = False
) -> list[str]:
    """Delete what may already be gone. wait: return once it and what it owns are gone
    (kubectl's default, said out loud where the caller relies on it)."""
    return [
        "kubectl",
        "delete",
        *targets,
        *(["--namespace", namespace] if namespace else []),
        "--ignore-not-found",
        *(["--wait=true"] if wait else []),
        *([f"--timeout={timeout:g}s"] if timeout is not None else []),
    ]
