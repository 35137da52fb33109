"""The kops Cluster and InstanceGroups: structure, GCE specifics and sizes per environment.

kops ships no JSON schema and cannot run here, so the rendered spec is checked against
a schema of the fields this project uses (unknown keys are refused, which catches a
misspelt field kops would silently ignore) and against the rules kops enforces at
`kops create` time that matter to us.
"""

from __future__ import annotations

import ipaddress

import jsonschema

from tests.k8s.support import RenderedEnv

_STRING = {"type": "string", "minLength": 1}
_CIDRS = {"type": "array", "items": {"type": "string", "format": "cidr"}}
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(m|Mi|Gi)?$"}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


_METADATA = _object({"name": _STRING, "labels": {"type": "object"}}, ["name"])

CLUSTER_SCHEMA = _object(
    {
        "apiVersion": {"const": "kops.k8s.io/v1alpha2"},
        "kind": {"const": "Cluster"},
        "metadata": _METADATA,
        "spec": _object(
            {
                "cloudProvider": {"const": "gce"},
                "project": _STRING,
                "configBase": {"type": "string", "pattern": r"^gs://[a-z0-9._-]+/.+"},
                "kubernetesVersion": {"type": "string", "pattern": r"^v?1\.[0-9]+\.[0-9]+$"},
                "channel": {"const": "stable"},
                "api": _object(
                    {
                        "loadBalancer": _object(
                            {
                                "type": {"enum": ["Public", "Internal"]},
                                "class": {"enum": ["Regional", "Global"]},
                            }
                        )
                    }
                ),
                "topology": _object(
                    {"dns": _object({"type": {"enum": ["None", "Public", "Private"]}})}
                ),
                "kubernetesApiAccess": {**_CIDRS, "minItems": 1},
                "sshAccess": _CIDRS,
                "authorization": _object({"rbac": _object({})}),
                "iam": _object(
                    {"allowContainerRegistry": {"type": "boolean"}, "legacy": {"const": False}}
                ),
                "networking": _object({"cilium": _object({"enableNodePort": {"type": "boolean"}})}),
                "kubeProxy": _object({"enabled": {"type": "boolean"}}),
                "nonMasqueradeCIDR": {"type": "string", "format": "cidr"},
                "podCIDR": {"type": "string", "format": "cidr"},
                "serviceClusterIPRange": {"type": "string", "format": "cidr"},
                "subnets": {
                    "type": "array",
                    "minItems": 1,
                    "items": _object(
                        {
                            "name": _STRING,
                            "region": _STRING,
                            "type": {"enum": ["Public", "Private"]},
                            "cidr": {"type": "string", "format": "cidr"},
                        }
                    ),
                },
                "kubelet": _object(
                    {
                        "anonymousAuth": {"const": False},
                        "authenticationTokenWebhook": {"const": True},
                        "authorizationMode": {"const": "Webhook"},
                    }
                ),
                "certManager": _object({"enabled": {"type": "boolean"}}),
                "metricsServer": _object(
                    {"enabled": {"type": "boolean"}, "insecure": {"type": "boolean"}}
                ),
                "etcdClusters": {
                    "type": "array",
                    "items": _object(
                        {
                            "name": {"enum": ["main", "events"]},
                            "cpuRequest": _QUANTITY,
                            "memoryRequest": _QUANTITY,
                            "manager": _object(
                                {"backupRetentionDays": {"type": "integer", "minimum": 1}}
                            ),
                            "etcdMembers": {
                                "type": "array",
                                "minItems": 1,
                                "items": _object({"name": _STRING, "instanceGroup": _STRING}),
                            },
                        }
                    ),
                },
            }
        ),
    }
)

INSTANCE_GROUP_SCHEMA = _object(
    {
        "apiVersion": {"const": "kops.k8s.io/v1alpha2"},
        "kind": {"const": "InstanceGroup"},
        "metadata": _object({"name": _STRING, "labels": _object({"kops.k8s.io/cluster": _STRING})}),
        "spec": _object(
            {
                "role": {"enum": ["Master", "Node"]},
                "image": {"type": "string", "pattern": r"^[a-z0-9-]+/[a-z0-9-]+$"},
                "machineType": {"type": "string", "pattern": r"^[a-z][a-z0-9]*-[a-z]+(-[0-9]+)?$"},
                "minSize": {"type": "integer", "minimum": 1},
                "maxSize": {"type": "integer", "minimum": 1},
                "rootVolumeSize": {"type": "integer", "minimum": 20},
                "rootVolumeType": {"enum": ["pd-standard", "pd-balanced", "pd-ssd"]},
                "subnets": {"type": "array", "minItems": 1, "items": _STRING},
                "zones": {"type": "array", "minItems": 1, "maxItems": 1, "items": _STRING},
                "nodeLabels": {"type": "object"},
            }
        ),
    }
)

_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("cidr", raises=ValueError)
def _is_cidr(value: object) -> bool:
    ipaddress.ip_network(value)
    return True


def schema_errors(document: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, format_checker=_FORMATS)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def cluster_of(env: RenderedEnv) -> dict:
    [cluster] = [d for d in env.kops if d["kind"] == "Cluster"]
    return cluster


def groups_of(env: RenderedEnv, role: str | None = None) -> list[dict]:
    return [
        d for d in env.kops if d["kind"] == "InstanceGroup" and role in (None, d["spec"]["role"])
    ]


def test_kops_file_holds_one_cluster_and_its_instance_groups(env):
    kinds = [d["kind"] for d in env.kops]
    assert kinds[0] == "Cluster"
    assert set(kinds[1:]) == {"InstanceGroup"}


def test_cluster_matches_schema(env):
    assert schema_errors(cluster_of(env), CLUSTER_SCHEMA) == []


def test_instance_groups_match_schema(env):
    errors = {
        g["metadata"]["name"]: schema_errors(g, INSTANCE_GROUP_SCHEMA) for g in groups_of(env)
    }
    assert errors == {name: [] for name in errors}


def test_schema_refuses_a_misspelt_field(env):
    cluster = cluster_of(env)
    broken = {**cluster, "spec": {**cluster["spec"], "kubernetesVersoin": "1.35.5"}}
    assert any("kubernetesVersoin" in error for error in schema_errors(broken, CLUSTER_SCHEMA))


def test_cluster_uses_the_deploy_values(env):
    spec = cluster_of(env)["spec"]
    assert cluster_of(env)["metadata"]["name"] == env.values.cluster_name
    assert spec["project"] == env.values.gcp_project
    assert spec["configBase"] == f"{env.values.kops_state_store}/{env.values.cluster_name}"


def test_instance_groups_belong_to_the_cluster_and_its_region(env):
    cluster = cluster_of(env)
    subnets = {s["name"]: s["region"] for s in cluster["spec"]["subnets"]}
    for group in groups_of(env):
        assert group["metadata"]["labels"]["kops.k8s.io/cluster"] == cluster["metadata"]["name"]
        assert set(group["spec"]["subnets"]) <= set(subnets)
        for zone in group["spec"]["zones"]:
            # GCE zones are <region>-<letter>.
            assert zone.rsplit("-", 1)[0] in {subnets[s] for s in group["spec"]["subnets"]}
        assert group["spec"]["minSize"] <= group["spec"]["maxSize"]


def test_etcd_members_are_the_control_plane_groups(env):
    control_plane = {g["metadata"]["name"] for g in groups_of(env, "Master")}
    etcd = {c["name"]: c for c in cluster_of(env)["spec"]["etcdClusters"]}
    assert set(etcd) == {"main", "events"}
    for cluster in etcd.values():
        members = [m["instanceGroup"] for m in cluster["etcdMembers"]]
        assert sorted(members) == sorted(control_plane)
        assert len({m["name"] for m in cluster["etcdMembers"]}) == len(members)
        assert len(members) % 2 == 1, "etcd needs an odd member count for a quorum"


def test_network_policies_are_enforced_by_the_cni(env):
    # GCE's native routing and kubenet ignore NetworkPolicy objects.
    assert list(cluster_of(env)["spec"]["networking"]) == ["cilium"]


def test_hpa_has_metrics_server(env):
    spec = cluster_of(env)["spec"]
    assert spec["metricsServer"]["enabled"] is True
    # Secure metrics-server needs cert-manager for its serving certificate.
    assert spec["metricsServer"]["insecure"] is False
    assert spec["certManager"]["enabled"] is True


def test_kubernetes_version_matches_the_pod_security_pin(env):
    version = cluster_of(env)["spec"]["kubernetesVersion"].lstrip("v")
    namespace = env.one("Namespace")
    minor = ".".join(version.split(".")[:2])
    assert (
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"] == f"v{minor}"
    )


def test_dev_is_small(rendered_envs):
    env = rendered_envs["dev"]
    assert len(groups_of(env, "Master")) == 1
    assert sum(g["spec"]["maxSize"] for g in groups_of(env, "Node")) == 1


def test_prod_survives_losing_a_node_or_a_zone(rendered_envs):
    env = rendered_envs["prod"]
    control_plane = groups_of(env, "Master")
    nodes = groups_of(env, "Node")
    assert len(control_plane) == 3
    assert len({g["spec"]["zones"][0] for g in control_plane}) == 3
    assert sum(g["spec"]["minSize"] for g in nodes) > 1
    assert len({g["spec"]["zones"][0] for g in nodes}) > 1


def test_prod_machines_are_larger_than_dev(rendered_envs):
    def cpus(machine_type: str) -> int:
        size = machine_type.rsplit("-", 1)[-1]
        return {"micro": 0, "small": 0, "medium": 1}.get(size) or int(size)

    dev = max(cpus(g["spec"]["machineType"]) for g in groups_of(rendered_envs["dev"], "Node"))
    prod = min(cpus(g["spec"]["machineType"]) for g in groups_of(rendered_envs["prod"], "Node"))
    assert prod > dev


def test_prod_and_dev_share_cluster_wide_settings(rendered_envs):
    """Only sizes, zones and names differ: the rest of the Cluster spec is one source."""

    def shared(env: RenderedEnv) -> dict:
        spec = dict(cluster_of(env)["spec"])
        for varying in ("etcdClusters", "configBase"):
            spec.pop(varying)
        return spec

    assert shared(rendered_envs["prod"]) == shared(rendered_envs["dev"])
