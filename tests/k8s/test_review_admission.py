"""k8s/review-access/admission-policy.yaml, evaluated: the review identity's namespace
and RoleBinding writes are admitted inside review namespaces and refused everywhere
else, over admission requests shaped like the API server's (tests/k8s/admission.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from conduit_deploy import review
from conduit_deploy.runner import Runner

from tests.k8s.admission import CEL_STANDARD_FUNCTIONS, admission_request, admit, functions_called
from tests.k8s.support import K8S, load_all, sample_values

CREATED = datetime(2026, 12, 5, tzinfo=UTC)
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def policy() -> dict:
    [policy] = [
        o
        for o in load_all(K8S / "review-access" / "admission-policy.yaml")
        if o["kind"] == "ValidatingAdmissionPolicy"
    ]
    return policy


@pytest.fixture(scope="module")
def applied(tmp_path_factory) -> dict[str, dict]:
    """The Namespace and RoleBinding a review deploy applies, as render_review writes them."""
    app = review.ReviewApp("feature-login", "42")
    rendered = review.render_review(
        app,
        sample_values("dev"),
        review.namespace_labels(app, CREATED, CREATED + timedelta(days=3)),
        tmp_path_factory.mktemp("review"),
        Runner(),
    )
    objects = [o for _, path in rendered.stages for o in load_all(path)]
    return {o["kind"]: o for o in objects if o["kind"] in ("Namespace", "RoleBinding")}


# The dev environment's namespace, as k8s/base makes it: no review label.
DEV_NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": review.DEV_NAMESPACE,
        "labels": {
            "app.kubernetes.io/part-of": "conduit",
            "kubernetes.io/metadata.name": "conduit",
        },
    },
}


def namespace_write(operation, obj=None, old=None, username=review.REVIEW_IDENTITY):
    # Namespaces are cluster-scoped: namespaceObject is null.
    name = (obj or old)["metadata"]["name"]
    request = admission_request(
        operation, group="", version="v1", resource="namespaces", kind="Namespace",
        username=username, name=name, obj=obj, old=old,
    )  # fmt: skip
    return request, None


def role_binding_write(operation, namespace, obj=None, old=None, username=review.REVIEW_IDENTITY):
    source = obj or old
    request = admission_request(
        operation, group=RBAC, version="v1", resource="rolebindings", kind="RoleBinding",
        username=username, name=source["metadata"]["name"],
        namespace=namespace["metadata"]["name"], obj=obj, old=old,
    )  # fmt: skip
    return request, namespace


REVIEW = review.REVIEW_LABEL
EXPIRES = review.EXPIRES_LABEL
ENFORCE = "pod-security.kubernetes.io/enforce"


def labelled(namespace: dict, changes: dict[str, str | None]) -> dict:
    """A copy with labels set (a value) or removed (None)."""
    namespace = copy.deepcopy(namespace)
    labels = namespace["metadata"].setdefault("labels", {})
    for key, value in changes.items():
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    return namespace


def test_the_policy_calls_only_what_the_evaluator_implements(policy):
    """Kubernetes adds extension libraries to CEL; a policy that used one would not be
    evaluated by these tests, so this says so instead of passing by accident."""
    spec = policy["spec"]
    expressions = [c["expression"] for c in spec["matchConditions"]]
    expressions += [v["expression"] for v in spec["validations"]]
    for expression in expressions:
        assert functions_called(expression) <= CEL_STANDARD_FUNCTIONS, expression
    # An extension function shows, a string that looks like a call does not.
    assert functions_called("x.lowerAscii() == 'f(' && has(x.y)") == {"lowerAscii", "_==_", "_&&_"}


# --- namespaces -----------------------------------------------------------------------


def test_a_review_deploy_creates_changes_and_deletes_its_namespace(policy, applied):
    namespace = applied["Namespace"]
    assert admit(policy, *namespace_write("CREATE", obj=namespace)).allowed
    redeployed = labelled(namespace, {EXPIRES: "20261209T000000Z"})
    assert admit(policy, *namespace_write("UPDATE", obj=redeployed, old=namespace)).allowed
    decision = admit(policy, *namespace_write("DELETE", old=namespace))
    assert decision.applied
    assert decision.allowed


def test_it_may_not_create_a_namespace_without_the_review_label(policy, applied):
    unlabelled = labelled(applied["Namespace"], {REVIEW: None})
    decision = admit(policy, *namespace_write("CREATE", obj=unlabelled))
    assert not decision.allowed
    assert "labelled conduit/review=true" in decision.message
    wrong_value = labelled(applied["Namespace"], {REVIEW: "yes"})
    assert not admit(policy, *namespace_write("CREATE", obj=wrong_value)).allowed
    no_labels = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "review-x"}}
    assert not admit(policy, *namespace_write("CREATE", obj=no_labels)).allowed


def test_it_may_not_take_a_namespace_into_review_by_labelling_it(policy):
    taken = labelled(DEV_NAMESPACE, {REVIEW: "true", ENFORCE: "restricted"})
    decision = admit(policy, *namespace_write("UPDATE", obj=taken, old=DEV_NAMESPACE))
    assert not decision.allowed
    # ... and so never delete it after (the stop job and the sweep use this identity).
    assert not admit(policy, *namespace_write("DELETE", old=DEV_NAMESPACE)).allowed


def test_it_may_not_drop_the_review_label_of_its_namespace(policy, applied):
    released = labelled(applied["Namespace"], {REVIEW: None})
    decision = admit(policy, *namespace_write("UPDATE", obj=released, old=applied["Namespace"]))
    assert not decision.allowed


def test_the_stop_job_and_the_sweep_cannot_delete_other_namespaces(policy):
    for name in ("conduit", "kube-system", "cnpg-system", "conduit-review-access"):
        namespace = {**DEV_NAMESPACE, "metadata": {"name": name, "labels": {}}}
        decision = admit(policy, *namespace_write("DELETE", old=namespace))
        assert decision.applied, name
        assert not decision.allowed, name


def test_it_may_not_lower_the_pod_security_level_of_a_review_namespace(policy, applied):
    namespace = applied["Namespace"]
    for level in ("privileged", "baseline", None):
        lowered = labelled(namespace, {ENFORCE: level})
        decision = admit(policy, *namespace_write("UPDATE", obj=lowered, old=namespace))
        assert not decision.allowed, level
        assert "restricted" in decision.message
        assert not admit(policy, *namespace_write("CREATE", obj=lowered)).allowed


def test_other_identities_are_not_its_business(policy):
    """An admin (RBAC decides) and a ServiceAccount of the same name elsewhere."""
    for username in (
        "kubernetes-admin",
        "system:serviceaccount:default:conduit-review",
        "system:serviceaccount:conduit-review-access:conduit-review-2",
    ):
        decision = admit(policy, *namespace_write("DELETE", old=DEV_NAMESPACE, username=username))
        assert not decision.applied, username
        assert decision.allowed, username


def test_requests_outside_its_rules_are_not_its_business(policy, applied):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "conduit"}}
    request = admission_request(
        "CREATE", group="apps", version="v1", resource="deployments", kind="Deployment",
        username=review.REVIEW_IDENTITY, name="conduit", namespace="conduit", obj=deployment,
    )  # fmt: skip
    assert not admit(policy, request, DEV_NAMESPACE).applied


# --- RoleBindings -----------------------------------------------------------------------


def test_a_review_deploy_binds_the_app_role_in_its_namespace(policy, applied):
    binding, namespace = applied["RoleBinding"], applied["Namespace"]
    assert binding["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert admit(policy, *role_binding_write("CREATE", namespace, obj=binding)).allowed
    assert admit(policy, *role_binding_write("UPDATE", namespace, obj=binding, old=binding)).allowed


def test_it_may_not_write_a_role_binding_outside_review_namespaces(policy, applied):
    binding = {**applied["RoleBinding"], "metadata": {"name": "x", "namespace": "conduit"}}
    for operation, obj, old in (("CREATE", binding, None), ("DELETE", None, binding)):
        decision = admit(policy, *role_binding_write(operation, DEV_NAMESPACE, obj=obj, old=old))
        assert not decision.allowed, operation
        assert "RoleBindings in namespaces labelled" in decision.message


def test_it_may_bind_no_one_but_itself(policy, applied):
    namespace = applied["Namespace"]
    for subject in (
        {"kind": "Group", "apiGroup": RBAC, "name": "system:authenticated"},
        {"kind": "User", "apiGroup": RBAC, "name": "mallory"},
        {"kind": "ServiceAccount", "name": "default", "namespace": "conduit"},
        {"kind": "ServiceAccount", "name": "conduit-review"},  # no namespace
    ):
        binding = copy.deepcopy(applied["RoleBinding"])
        binding["subjects"].append(subject)
        decision = admit(policy, *role_binding_write("CREATE", namespace, obj=binding))
        assert not decision.allowed, subject
        assert "review ServiceAccount itself" in decision.message
