"""Helpers for the manifest tests: sample render values, rendered objects, selectors."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from conduit_deploy.render import Rendered, RenderValues

REPO_ROOT = Path(__file__).resolve().parents[2]


K8S = REPO_ROOT / "k8s"


ENVIRONMENTS = ("dev", "prod")


SAMPLE_VERSION = "1.4.0-rc.2"


SAMPLE_IMAGE = f"registry.gitlab.com/conduit/conduit:{SAMPLE_VERSION}"


SAMPLE_PROD_HOST = "conduit.example.org"
# KOPS_API_ACCESS_CIDRS: a runner's and an office's (documentation ranges, RFC 5737/3849).
SAMPLE_API_ACCESS_CIDRS = ("203.0.113.0/24", "2001:db8::/32")


def sample_values(environment: str = "dev", **overrides: str) -> RenderValues:
    values = RenderValues(
        environment=environment,
        image=SAMPLE_IMAGE,
        version=SAMPLE_VERSION,
        cluster_name=f"conduit-{environment}.k8s.local",
        kops_state_store="gs://conduit-kops-state",
        gcp_project="conduit-sample-42",
        db_user="conduit",
        db_password="pw-" + secrets.token_urlsafe(24),
        conduit_secret="cs-" + secrets.token_urlsafe(40),
        backup_bucket=f"conduit-{environment}-backups",
        backup_key=json.dumps(
            {
                "type": "service_account",
                "project_id": "conduit-sample-42",
                "client_email": "conduit-backup@conduit-sample-42.iam.gserviceaccount.com",
                "private_key": "bk-" + secrets.token_urlsafe(40),
            }
        ),
        registry_user="conduit-ci",
        registry_password="rp-" + secrets.token_urlsafe(24),
        api_access_cidrs=SAMPLE_API_ACCESS_CIDRS,
        public_host=SAMPLE_PROD_HOST if environment == "prod" else None,
    )
    return replace(values, **overrides)


@dataclass
class RenderedEnv:
    environment: str
    values: RenderValues
    rendered: Rendered
    objects: list[dict]  # every Kubernetes object of every stage, in apply order
    kops: list[dict]

    def find(self, kind: str, name: str | None = None) -> list[dict]:
        return [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_templates(env: RenderedEnv) -> list[tuple[dict, dict]]:
    """(workload, pod template) for every Deployment and StatefulSet."""
    return [
        (w, w["spec"]["template"])
        for w in env.objects
        if w["kind"] in ("Deployment", "StatefulSet")
    ]


def all_containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def labels_match(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels / matchExpressions, or a plain map) against labels."""
    structured = "matchLabels" in selector or "matchExpressions" in selector
    match_labels = selector.get("matchLabels", {}) if structured else selector
    for key, value in match_labels.items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = (
            expression["key"],
            expression["operator"],
            expression.get("values", []),
        )
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
