"""Properties of the rendered objects that the schemas cannot check.

Security context, resources and probes on every container; selectors that select;
Service ports that reach a container port; NetworkPolicies that open exactly the two
intended paths; references to ConfigMaps and Secrets that exist; routes that reach the
API Service.
"""

from __future__ import annotations

import base64

import pytest
from conduit_deploy.render import ENVOY_GATEWAY_NAMESPACE

from tests.k8s.support import RenderedEnv, all_containers, labels_match, pod_templates


def pods_selected(env: RenderedEnv, selector: dict) -> list[dict]:
    """Workloads whose pod template the selector matches."""
    return [w for w, t in pod_templates(env) if labels_match(selector, t["metadata"]["labels"])]


def container_ports(template: dict) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in template["spec"]["containers"]
        for p in c.get("ports", [])
    }


def workload(env: RenderedEnv, component: str) -> dict:
    [found] = [
        w
        for w, _ in pod_templates(env)
        if w["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


# --- containers ---------------------------------------------------------------------


def test_every_container_has_requests_and_limits(env):
    for w, template in pod_templates(env):
        for container in all_containers(template):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert set(resources.get(kind, {})) >= {"cpu", "memory"}, (
                    f"{w['metadata']['name']}/{container['name']} lacks {kind}"
                )


def test_every_container_is_locked_down(env):
    for w, template in pod_templates(env):
        pod = template["spec"]["securityContext"]
        where = w["metadata"]["name"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] != 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert template["spec"]["automountServiceAccountToken"] is False, where
        for container in all_containers(template):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert context.get("privileged", False) is False, container["name"]


def test_read_only_containers_get_a_writable_tmp(env):
    for _, template in pod_templates(env):
        empty_dirs = {v["name"] for v in template["spec"]["volumes"] if "emptyDir" in v}
        for container in all_containers(template):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, container["name"]


def test_serving_containers_have_probes(env):
    for w, template in pod_templates(env):
        for container in template["spec"]["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{w['metadata']['name']}/{container['name']}: {probe}"


def test_api_probes_use_the_app_health_endpoints(env):
    template = workload(env, "api")["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert container_ports(template) == {"http": 8000, "health": 8001}
    # Readiness through the app (database, schema); liveness beside its threads.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_migrations_run_before_the_app_with_the_same_image(env):
    spec = workload(env, "api")["spec"]["template"]["spec"]
    [migrate] = spec["initContainers"]
    [app] = spec["containers"]
    assert migrate["command"] == ["flask", "schema", "upgrade"]
    assert migrate["image"] == app["image"]
    assert migrate["env"] == app["env"]
    assert migrate["envFrom"] == app["envFrom"]


def test_api_port_is_the_configured_port(env):
    config = env.one("ConfigMap")["data"]
    ports = container_ports(workload(env, "api")["spec"]["template"])
    assert int(config["PORT"]) == ports["http"]
    assert int(config["HEALTH_PORT"]) == ports["health"]
    assert config["CONDUIT_ENV"] == "production"
    assert "CORS_ORIGINS" in config


def test_rollout_never_drops_below_current_capacity(env):
    strategy = workload(env, "api")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_images_are_pinned(env):
    for _, template in pod_templates(env):
        for container in all_containers(template):
            name, _, tag = container["image"].rpartition(":")
            assert name
            assert tag
            assert tag != "latest"


# --- selectors, Services, references -----------------------------------------------


def test_workload_selectors_match_their_pod_labels(env):
    for w, template in pod_templates(env):
        assert labels_match(w["spec"]["selector"], template["metadata"]["labels"])
        # ...and no other workload's pods.
        assert pods_selected(env, w["spec"]["selector"]) == [w]


def test_each_service_selects_one_workload_and_reaches_its_ports(env):
    for service in env.find("Service"):
        [target] = pods_selected(env, service["spec"]["selector"])
        ports = container_ports(target["spec"]["template"])
        for port in service["spec"]["ports"]:
            target_port = port["targetPort"]
            if isinstance(target_port, str):
                assert target_port in ports, f"Service {service['metadata']['name']}: {target_port}"
            else:
                assert target_port in ports.values()


def test_pdb_and_spread_constraints_select_the_api_pods(env):
    api = workload(env, "api")
    [pdb] = env.find("PodDisruptionBudget")
    assert pods_selected(env, pdb["spec"]["selector"]) == [api]
    for constraint in api["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert pods_selected(env, constraint["labelSelector"]) == [api]


def test_routes_reach_the_api_service_through_the_gateway(env):
    gateway = env.one("Gateway")
    assert gateway["spec"]["gatewayClassName"] == "envoy-gateway"
    listeners = {listener["name"] for listener in gateway["spec"]["listeners"]}
    route = env.one("HTTPRoute", "conduit")
    for parent in route["spec"]["parentRefs"]:
        assert parent["name"] == gateway["metadata"]["name"]
        assert parent["sectionName"] in listeners
    for rule in route["spec"]["rules"]:
        for backend in rule["backendRefs"]:
            service = env.one("Service", backend["name"])
            assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
            assert pods_selected(env, service["spec"]["selector"]) == [workload(env, "api")]


def test_config_and_secret_references_exist(env):
    available: dict[str, set[str]] = {}
    for obj in env.find("ConfigMap") + env.find("Secret"):
        available[f"{obj['kind']}/{obj['metadata']['name']}"] = set(obj.get("data", {}))
    for _, template in pod_templates(env):
        for container in all_containers(template):
            for source in container.get("envFrom", []):
                assert f"ConfigMap/{source['configMapRef']['name']}" in available
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in available[f"Secret/{ref['name']}"], variable["name"]


def test_hpa_scales_the_api_deployment(rendered_envs):
    prod = rendered_envs["prod"]
    hpa = prod.one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        workload(prod, "api")["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] >= 2
    # With the HPA in charge, a replicas field would reset its choice on every apply.
    assert "replicas" not in workload(prod, "api")["spec"]


# --- network policies ------------------------------------------------------------------


def policies(env: RenderedEnv) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in env.find("NetworkPolicy")}


def test_all_ingress_traffic_is_denied_by_default(env):
    deny = policies(env)["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_only_the_gateway_proxies_reach_the_api(env):
    api = workload(env, "api")
    selecting = [
        p
        for p in policies(env).values()
        if p["spec"]["podSelector"] and pods_selected(env, p["spec"]["podSelector"]) == [api]
    ]
    [policy] = selecting
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": ENVOY_GATEWAY_NAMESPACE}
    }
    # The labels Envoy Gateway v1.9.0 gives the proxies of Gateway conduit/conduit.
    proxy_labels = {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "app.kubernetes.io/managed-by": "envoy-gateway",
        "gateway.envoyproxy.io/owning-gateway-namespace": env.rendered.namespace,
        "gateway.envoyproxy.io/owning-gateway-name": env.rendered.gateway_name,
    }
    assert labels_match(peer["podSelector"], proxy_labels)
    assert not labels_match(
        peer["podSelector"],
        {**proxy_labels, "gateway.envoyproxy.io/owning-gateway-name": "someone-else"},
    )
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert "http" in container_ports(api["spec"]["template"])


# --- secrets -------------------------------------------------------------------------


def secret_values(env: RenderedEnv) -> list[str]:
    return [env.values.db_password, env.values.conduit_secret]


def test_config_maps_hold_no_secret(env):
    for config in env.find("ConfigMap"):
        for key, value in config["data"].items():
            assert not any(
                word in key.upper() for word in ("PASSWORD", "SECRET", "DATABASE_URL", "TOKEN")
            )
            for secret in secret_values(env):
                assert secret not in value


def test_secret_values_appear_only_in_the_secrets_stage(env):
    for stage, path in [*env.rendered.stages, ("kops", env.rendered.kops_file)]:
        text = path.read_text()
        for secret in secret_values(env):
            encoded = base64.b64encode(secret.encode()).decode()
            if stage == "secrets":
                assert encoded in text
            else:
                assert secret not in text, stage
                assert encoded not in text, stage


def test_secret_stage_holds_exactly_the_generated_secrets(env):
    secrets = env.find("Secret")
    keys = {s["metadata"]["name"].rsplit("-", 1)[0]: set(s["data"]) for s in secrets}
    assert keys == {
        "conduit-app": {"CONDUIT_SECRET", "DATABASE_URL"},
        "postgres-credentials": {"username", "password"},
        "conduit-backup-gcs": {"credentials.json"},
        "registry-credentials": {".dockerconfigjson"},
    }
    assert all(s["immutable"] is True for s in secrets)


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_app_never_sees_the_database_superuser_secret(rendered_envs, environment):
    env = rendered_envs[environment]
    template = workload(env, "api")["spec"]["template"]
    names = {
        v["valueFrom"]["secretKeyRef"]["name"].rsplit("-", 1)[0]
        for c in all_containers(template)
        for v in c.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    assert names == {"conduit-app"}
