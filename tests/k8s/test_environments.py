"""dev and prod come from one source and differ only where they must."""

from __future__ import annotations

import copy
import re

from tests.k8s.support import RenderedEnv

# kustomize's content-hash suffix of generated ConfigMaps and Secrets.
_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")
# The same suffix inside a path: lists of named items are keyed by name (flatten()).
_HASH_IN_KEY = re.compile(r"-[a-z0-9]{10}\]")

# (kind, name, path pattern) of every field allowed to differ between dev and prod.
INTENDED_DIFFERENCES = [
    # dev pins one replica; prod leaves the count to the HorizontalPodAutoscaler.
    ("Deployment", "conduit", r"spec\.replicas"),
    (
        "Deployment",
        "conduit",
        r"spec\.template\.spec\.(initContainers|containers)\[\w+\]\.resources\..*",
    ),
    # PostgreSQL: instances, synchronous standby, zone spreading, PDBs, sizes.
    (
        "Cluster",
        "conduit-db",
        r"spec\.(instances|enablePDB|postgresql\.synchronous\..*"
        r"|affinity\.(topologyKey|podAntiAffinityType)|storage\..*|resources\..*)",
    ),
    # Each environment's backups go to its own bucket (BACKUP_BUCKET) and folder.
    ("ObjectStore", "conduit-backups", r"spec\.configuration\.destinationPath"),
    # prod serves HTTPS on PROD_HOST; plain HTTP redirects there (dev: HTTP, bare address).
    ("Gateway", "conduit", r"spec\.listeners\[https\]\..*"),
    ("HTTPRoute", "conduit", r"spec\.(parentRefs\[conduit\]\.sectionName|hostnames\[0\])"),
    # dev's Gateway also admits the review apps' routes (k8s/overlays/dev/gateway.yaml).
    ("Gateway", "conduit", r"spec\.listeners\[http\]\.allowedRoutes\.namespaces\..*"),
    ("Namespace", "conduit", r"metadata\.labels\.conduit/gateway"),
    # Objects only prod has.
    ("HorizontalPodAutoscaler", "conduit", r".*"),
    ("StorageClass", "conduit-postgres-ssd", r".*"),
    ("HTTPRoute", "conduit-https-redirect", r".*"),
    ("Issuer", "letsencrypt", r".*"),
    ("Certificate", "conduit-tls", r".*"),
    ("NetworkPolicy", "acme-solver-from-gateway", r".*"),
]


def flatten(value: object, path: str = "") -> dict[str, object]:
    """Leaves by dotted path; lists of named items are keyed by name, not position."""
    if isinstance(value, dict):
        items: dict[str, object] = {}
        for key, child in value.items():
            items.update(flatten(child, f"{path}.{key}" if path else str(key)))
        return items
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and "name" in v for v in value)
    ):
        items = {}
        for child in value:
            items.update(flatten(child, f"{path}[{child['name']}]"))
        return items
    if isinstance(value, list):
        items = {}
        for index, child in enumerate(value):
            items.update(flatten(child, f"{path}[{index}]"))
        return items
    return {path: value}


def normalised(env: RenderedEnv) -> dict[tuple[str, str, str], object]:
    """Every leaf of every object except Secret data, with generated-name hashes removed."""
    leaves = {}
    for obj in env.objects:
        if obj["kind"] == "Secret":
            obj = {**obj, "data": dict.fromkeys(obj["data"], "<secret>")}
        name = _HASH_SUFFIX.sub("", obj["metadata"]["name"])
        for path, value in flatten(obj).items():
            path = _HASH_IN_KEY.sub("]", path)
            if isinstance(value, str):
                value = _HASH_SUFFIX.sub("", value)
            leaves[(obj["kind"], name, path)] = value
    return leaves


def differences(a: RenderedEnv, b: RenderedEnv) -> set[tuple[str, str, str]]:
    left, right = normalised(a), normalised(b)
    return {
        key
        for key in left.keys() | right.keys()
        if left.get(key, "<absent>") != right.get(key, "<absent>")
    }


def intended(key: tuple[str, str, str]) -> bool:
    kind, name, path = key
    return any(
        kind == k and name == n and re.fullmatch(pattern, path)
        for k, n, pattern in INTENDED_DIFFERENCES
    )


def test_dev_and_prod_differ_only_in_intended_fields(rendered_envs):
    diff = differences(rendered_envs["dev"], rendered_envs["prod"])
    assert sorted(key for key in diff if not intended(key)) == []


def test_each_intended_difference_is_real(rendered_envs):
    """The allow-list holds no stale entries: every line matches an actual difference."""
    diff = differences(rendered_envs["dev"], rendered_envs["prod"])
    for kind, name, pattern in INTENDED_DIFFERENCES:
        assert any((k, n) == (kind, name) and re.fullmatch(pattern, p) for k, n, p in diff), (
            kind,
            name,
            pattern,
        )


def test_the_comparison_notices_an_unintended_change(rendered_envs):
    prod = copy.deepcopy(rendered_envs["prod"])
    service = next(
        o for o in prod.objects if o["kind"] == "Service" and o["metadata"]["name"] == "conduit"
    )
    service["spec"]["ports"][0]["port"] = 8080
    diff = differences(rendered_envs["dev"], prod)
    assert [key for key in diff if not intended(key)] == [
        ("Service", "conduit", "spec.ports[http].port")
    ]
