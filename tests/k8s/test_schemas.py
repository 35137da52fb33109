"""Every rendered object validates against the OpenAPI schemas of the cluster's version.

kubernetes-validate only warns when it has no schema for an object, which would let a
removed apiVersion or a typo through. Here a missing schema fails for every built-in
API group; custom resources (kops, Prometheus operator) have their own tests.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from tests.k8s.crd import crd_errors
from tests.k8s.support import RenderedEnv, load_all


def kubernetes_version(env: RenderedEnv) -> str:
    cluster = next(doc for doc in env.kops if doc["kind"] == "Cluster")
    return cluster["spec"]["kubernetesVersion"]


# Groups under k8s.io that Kubernetes projects ship as CRDs, not with the API server.
CRD_GROUPS_UNDER_K8S_IO = {"gateway.networking.k8s.io"}


def is_builtin(obj: dict) -> bool:
    """Core and *.k8s.io API groups ship with Kubernetes (but Gateway API's); other
    dotted groups are CRDs."""
    group = obj["apiVersion"].rpartition("/")[0]
    if group in CRD_GROUPS_UNDER_K8S_IO:
        return False
    return group == "" or "." not in group or group.endswith(".k8s.io")


def schema_errors(objects: list[dict], version: str) -> list[str]:
    """One line per object that is invalid, or built-in without a schema."""
    errors = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({obj.get('apiVersion')})"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            if is_builtin(obj):
                errors.append(
                    f"{where}: no schema in Kubernetes {version} (removed or misspelt apiVersion?)"
                )
    return errors


def test_the_targeted_version_has_schemas(env):
    version = kubernetes_version(env)
    minor = ".".join(version.split(".")[:2])
    assert minor in {".".join(v.split(".")[:2]) for v in all_versions()}, (
        f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for {version}"
    )


def test_every_rendered_object_is_valid_for_the_cluster_version(env):
    assert schema_errors(env.objects, kubernetes_version(env)) == []


def test_every_custom_resource_in_the_stages_has_a_pinned_crd(env):
    # Custom resources are validated against their CRDs (tests/k8s/test_cnpg.py,
    # tests/k8s/test_gateway_objects.py).
    assert [e for o in env.objects if not is_builtin(o) for e in crd_errors(o)] == []


def test_monitoring_builtin_objects_are_valid(env):
    if env.rendered.monitoring_file is None:
        pytest.skip("k8s/monitoring has no kustomization.yaml yet")
    objects = [o for o in load_all(env.rendered.monitoring_file) if is_builtin(o)]
    assert schema_errors(objects, kubernetes_version(env)) == []


# The checker itself: it must reject what it exists to catch.


def test_checker_rejects_a_removed_api_version(rendered_envs):
    env = rendered_envs["dev"]
    budget = copy.deepcopy(env.one("PodDisruptionBudget"))
    budget["apiVersion"] = "policy/v1beta1"  # removed in Kubernetes 1.25
    [error] = schema_errors([budget], kubernetes_version(env))
    assert "no schema" in error


def test_checker_rejects_an_unknown_field(rendered_envs):
    env = rendered_envs["dev"]
    deployment = copy.deepcopy(env.one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = (
        "/x"
    )
    [error] = schema_errors([deployment], kubernetes_version(env))
    assert "paht" in error


def test_checker_rejects_a_wrong_type(rendered_envs):
    env = rendered_envs["dev"]
    service = copy.deepcopy(env.one("Service", "conduit"))
    service["spec"]["ports"][0]["port"] = "eighty"
    assert len(schema_errors([service], kubernetes_version(env))) == 1


def test_checker_lets_custom_resources_through_to_their_own_tests(rendered_envs):
    env = rendered_envs["dev"]
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "conduit"},
        "spec": {},
    }
    assert schema_errors([monitor], kubernetes_version(env)) == []
