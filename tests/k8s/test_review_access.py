"""k8s/review-access: the review jobs' identity may do what a review deploy does inside
a review namespace, and nothing in dev or elsewhere (RBAC as kubernetes.io/docs/
reference/access-authn-authz/rbac describes it: a RoleBinding to a ClusterRole grants its
rules in the binding's namespace only; `bind` with resourceNames limits which roles may
be granted)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conduit_deploy import review
from conduit_deploy.runner import Runner, find_program

from tests.k8s.support import K8S, load_all, sample_values
from tests.k8s.test_schemas import schema_errors

KUBERNETES_VERSION = "1.35.5"


@pytest.fixture(scope="module")
def access() -> list[dict]:
    built = subprocess.run(
        [find_program("kubectl"), "kustomize", str(K8S / "review-access")],
        capture_output=True,
        text=True,
        check=True,
    )
    return [o for o in yaml.safe_load_all(built.stdout) if o]


def one(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def allows(rules: list[dict], group: str, resource: str, verb: str, name: str = "") -> bool:
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        and (not rule.get("resourceNames") or name in rule["resourceNames"])
        for rule in rules
    )


def plural(kind: str) -> str:
    """The resource name of a kind, as the API server's default plural (lower case,
    -y to -ies, -s to -ses, else -s)."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def test_the_objects_are_valid_for_the_cluster_version(access):
    assert schema_errors(access, KUBERNETES_VERSION) == []


def test_the_service_account_is_the_identity_the_tool_insists_on(access):
    [account] = [o for o in access if o["kind"] == "ServiceAccount"]
    name = f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    assert name == review.REVIEW_IDENTITY
    policy = one(access, "ValidatingAdmissionPolicy", "conduit-review-namespaces")
    assert f"'{review.REVIEW_IDENTITY}'" in policy["spec"]["matchConditions"][0]["expression"]
    # What the validations allow and refuse: tests/k8s/test_review_admission.py.
    binding = one(access, "ValidatingAdmissionPolicyBinding", "conduit-review-namespaces")
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_nothing_is_granted_with_wildcards(access):
    for role in (o for o in access if o["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], role["metadata"]["name"]


def test_cluster_wide_it_may_only_handle_namespaces_and_bind_the_app_role(access):
    rules = one(access, "ClusterRole", "conduit-review-namespaces")["rules"]
    assert allows(rules, "", "namespaces", "delete")
    assert allows(rules, "rbac.authorization.k8s.io", "clusterroles", "bind", "conduit-review-app")
    assert not allows(rules, "rbac.authorization.k8s.io", "clusterroles", "bind", "cluster-admin")
    assert not allows(rules, "apps", "deployments", "create")
    assert not allows(rules, "", "secrets", "get")
    assert not allows(rules, "rbac.authorization.k8s.io", "clusterrolebindings", "create")


def test_in_dev_it_may_only_read_the_gateways_address(access):
    dev = [o for o in access if o["metadata"].get("namespace") == "conduit"]
    [role] = [o for o in dev if o["kind"] == "Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["gateways"],
            "verbs": ["get"],
            "resourceNames": ["conduit"],
        }
    ]


def test_the_app_role_covers_every_kind_a_review_deploy_applies(access, tmp_path):
    created = datetime(2026, 12, 5, tzinfo=UTC)
    app = review.ReviewApp("feature", "1")
    rendered = review.render_review(
        app,
        sample_values("dev"),
        review.namespace_labels(app, created, created + timedelta(days=3)),
        tmp_path,
        Runner(),
    )
    rules = one(access, "ClusterRole", review.APP_CLUSTER_ROLE)["rules"]
    applied = [o for _, path in rendered.stages for o in load_all(path)]
    namespaced = [o for o in applied if o["kind"] not in ("Namespace", "RoleBinding")]
    assert namespaced
    for obj in namespaced:
        group = obj["apiVersion"].rpartition("/")[0]
        resource = plural(obj["kind"])
        assert allows(rules, group, resource, "patch"), obj["kind"]
    # ... and nothing a namespace's owner could use to leave it.
    assert not allows(rules, "rbac.authorization.k8s.io", "rolebindings", "create")
    assert not allows(rules, "rbac.authorization.k8s.io", "roles", "create")
    assert not allows(rules, "", "namespaces", "delete")
    assert not allows(rules, "", "pods/exec", "create")
