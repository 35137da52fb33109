"""The kops Cluster and InstanceGroups: the rules kops 1.35 enforces, and our sizes.

kops cannot run here, so tests/k8s/kops_rules.py transcribes, with file and line, the
checks kops v1.35.2 makes on every field the template uses. The rendered specs must
pass all of them, and each rule has a negative case below: a rendered spec broken so
that kops would refuse it must be refused with kops' message.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from conduit_deploy import tools

from tests.k8s import kops_rules
from tests.k8s.kops_rules import KopsSpec
from tests.k8s.support import RenderedEnv


def cluster_of(env: RenderedEnv) -> dict:
    [cluster] = [d for d in env.kops if d["kind"] == "Cluster"]
    return cluster


def groups_of(env: RenderedEnv, role: str | None = None) -> list[dict]:
    return [
        d for d in env.kops if d["kind"] == "InstanceGroup" and role in (None, d["spec"]["role"])
    ]


def kops_spec(env: RenderedEnv) -> KopsSpec:
    return KopsSpec(copy.deepcopy(cluster_of(env)), copy.deepcopy(groups_of(env)))


def control_plane(k: KopsSpec) -> dict:
    return next(g for g in k.groups if g["spec"]["role"] == "Master")


def nodes(k: KopsSpec) -> dict:
    return next(g for g in k.groups if g["spec"]["role"] == "Node")


def _set(path: str, value) -> Callable[[KopsSpec], None]:
    """A mutation setting the cluster's spec.<path> (dots separate keys)."""

    def mutate(k: KopsSpec) -> None:
        *parents, last = path.split(".")
        target = k.spec
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value

    return mutate


def _subnet(**changes) -> Callable[[KopsSpec], None]:
    return lambda k: k.spec["subnets"][0].update(changes)


def _second_subnet(**changes) -> Callable[[KopsSpec], None]:
    return lambda k: k.spec["subnets"].append({**k.spec["subnets"][0], **changes})


def _etcd(index: int, **changes) -> Callable[[KopsSpec], None]:
    return lambda k: k.spec["etcdClusters"][index].update(changes)


def _member(**changes) -> Callable[[KopsSpec], None]:
    return lambda k: k.spec["etcdClusters"][0]["etcdMembers"][0].update(changes)


def _group(select: Callable[[KopsSpec], dict], **changes) -> Callable[[KopsSpec], None]:
    return lambda k: select(k)["spec"].update(changes)


def _drop(path: str) -> Callable[[KopsSpec], None]:
    def mutate(k: KopsSpec) -> None:
        *parents, last = path.split(".")
        target = k.spec
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


def _even_etcd(k: KopsSpec) -> None:
    members = k.spec["etcdClusters"][0]["etcdMembers"]
    if len(members) % 2:
        members.append({**members[0], "name": "extra"})
    else:  # pragma: no cover - both environments have an odd count
        members.pop()


def _both(*mutations: Callable[[KopsSpec], None]) -> Callable[[KopsSpec], None]:
    def mutate(k: KopsSpec) -> None:
        for mutation in mutations:
            mutation(k)

    return mutate


def _rename_cluster(name: str) -> Callable[[KopsSpec], None]:
    return lambda k: k.cluster["metadata"].update(name=name)


# rule name -> (environment, mutation, the message kops prints). Every rule has one.
NEGATIVE_CASES: dict[str, tuple[str, Callable[[KopsSpec], None], str]] = {
    "cluster fields are declared by v1alpha2": (
        "dev", _set("kubernetesVersoin", "1.35.7"),
        "spec.kubernetesVersoin: unknown field",
    ),
    "instance group fields are declared by v1alpha2": (
        "dev", _group(nodes, minSize="1"),
        "spec.minSize: json: cannot unmarshal '1' into Go value of type int32",
    ),
    "cluster name is a DNS subdomain": (
        "dev", _rename_cluster("Conduit_Dev.k8s.local"),
        'objectMeta.name: Invalid value: "Conduit_Dev.k8s.local": Cluster Name must be a '
        "valid DNS name",
    ),
    "cluster name has a dot unless DNS is None": (
        "dev", _both(_rename_cluster("conduit-dev"), _set("topology.dns.type", "Public")),
        'objectMeta.name: Invalid value: "conduit-dev": Cluster Name must be a fully-qualified '
        "DNS name",
    ),
    "cloudProvider is a known provider": (
        "dev", _set("cloudProvider", "gcp"),
        'spec.cloudProvider: Unsupported value: "gcp": supported values: "gce", "digitalocean"',
    ),
    "GCE needs a project": (
        "dev", _drop("project"), "project is required for GCE",
    ),
    "kubernetesVersion is not newer than kops' minor": (
        "dev", _set("kubernetesVersion", "1.36.0"), "kops upgrade is required",
    ),
    "kubernetesVersion is at least the oldest supported": (
        "dev", _set("kubernetesVersion", "1.28.15"), "kubernetes upgrade is required",
    ),
    "kubernetesVersion is not deprecated": (
        "dev", _set("kubernetesVersion", "1.30.14"),
        "Kops support for this Kubernetes version is deprecated",
    ),
    "access CIDRs parse": (
        "dev", _set("kubernetesApiAccess", ["203.0.113.7"]),
        'spec.kubernetesAPIAccess[0]: Invalid value: "203.0.113.7": Could not be parsed as a '
        'CIDR (did you mean "203.0.113.7/32")',
    ),
    "api.loadBalancer.class only on AWS": (
        # The blocker of issue 12: the old template set class: Regional.
        "dev", _set("api.loadBalancer.class", "Regional"),
        "spec.api.loadBalancer.class: Forbidden: class is only supported on AWS",
    ),
    "internal API load balancer needs a private subnet": (
        "dev", _set("api.loadBalancer.type", "Internal"),
        "spec.api.loadBalancer.type: Forbidden: Internal LoadBalancers must have at least one "
        "subnet of type Private",
    ),
    "iam.legacy is not set": (
        "dev", _set("iam.legacy", True),
        "spec.iam.legacy: Forbidden: legacy IAM permissions are no longer supported",
    ),
    "nonMasqueradeCIDR parses and is IPv4 or ::/0": (
        "dev", _set("nonMasqueradeCIDR", "10.0.0.1/8"),
        'spec.networking.nonMasqueradeCIDR: Invalid value: "10.0.0.1/8": Network contains bits '
        'outside prefix (did you mean "10.0.0.0/8")',
    ),
    "podCIDR parses and lies inside nonMasqueradeCIDR": (
        "dev", _set("podCIDR", "100.96.0.0/11"),
        'spec.networking.podCIDR: Forbidden: podCIDR "100.96.0.0/11" must be a subnet of '
        'nonMasqueradeCIDR "10.0.0.0/8"',
    ),
    "serviceClusterIPRange parses": (
        "dev", _set("serviceClusterIPRange", "10.1.0.0/33"),
        'spec.networking.serviceClusterIPRange: Invalid value: "10.1.0.0/33": Could not be '
        "parsed as a CIDR",
    ),
    "at least one subnet": (
        "dev", _set("subnets", []),
        "spec.networking.subnets: Required value: must configure at least one subnet",
    ),
    "subnet names are set and unique": (
        "dev", _second_subnet(cidr="10.0.64.0/19"),
        'spec.networking.subnets[1].name: Duplicate value: "europe-west1"',
    ),
    "GCE subnets have one region": (
        "dev", _second_subnet(name="us", region="us-central1", cidr="10.0.64.0/19"),
        "spec.networking.subnets[1].region: Forbidden: clusters cannot span regions",
    ),
    "subnet type is supported": (
        "dev", _subnet(type="Regional"),
        'spec.networking.subnets[0].type: Unsupported value: "Regional": supported values: '
        '"Public", "Private", "DualStack", "Utility"',
    ),
    "subnet CIDR parses and overlaps neither pods nor Services": (
        "dev", _subnet(cidr="10.1.0.0/19"),
        'spec.networking.subnets[0].cidr: Forbidden: subnet "europe-west1" cidr "10.1.0.0/19" '
        'must not overlap serviceClusterIPRange "10.1.0.0/16"',
    ),
    "topology.dns.type is supported": (
        "dev", _set("topology.dns.type", "Gossip"),
        'spec.networking.topology.dns.type: Unsupported value: "Gossip": supported values: '
        '"Public", "Private", "None"',
    ),
    "one networking option": (
        "dev", _set("networking.kubenet", {}),
        "spec.networking.cilium: Forbidden: only one networking option permitted, found "
        "cilium, kubenet",
    ),
    "Cilium NodePort needs kube-proxy disabled": (
        "dev", _set("kubeProxy.enabled", True),
        "spec.spec.kubeProxy.enabled: Forbidden: When Cilium NodePort is enabled, kubeProxy "
        "must be disabled",
    ),
    "secure metrics-server needs cert-manager": (
        "dev", _set("certManager.enabled", False),
        "spec.metricsServer.insecure: Forbidden: Secure metrics server requires that cert "
        "manager is enabled",
    ),
    "etcd clusters are declared": (
        "dev", _both(_set("etcdClusters", []), lambda k: k.groups.remove(control_plane(k))),
        "spec.etcdClusters: Required value",
    ),
    "etcd cluster names are supported": (
        "dev", _etcd(1, name="cache"),
        'spec.etcdClusters[1].name: Unsupported value: "cache": supported values: "cilium", '
        '"main", "events"',
    ),
    "etcd cluster names are unique": (
        "dev", _etcd(1, name="main"),
        "spec.etcdClusters[0].backupStore: Forbidden: the backup store must be unique for each "
        "etcd cluster",
    ),
    "etcd clusters have an odd number of members": (
        "prod", _even_etcd,
        "spec.etcdClusters[0].etcdMembers: Invalid value: 4: Should be an odd number of "
        "control-plane-zones for quorum",
    ),
    "etcd members name an instance group": (
        "dev", _member(name=""),
        "spec.etcdClusters[0].etcdMembers[0].name: Required value: etcdMember did not have name",
    ),
    "instance groups are named": (
        "dev", lambda k: nodes(k)["metadata"].update(name=""),
        "objectMeta.name: Required value",
    ),
    "instance group role is supported": (
        "dev", _group(nodes, role="Worker"),
        'spec.role: Unsupported value: "Worker": supported values: "ControlPlane", '
        '"APIServer", "Node", "Bastion"',
    ),
    "control-plane groups have one instance and a subnet": (
        "dev", _group(control_plane, minSize=3, maxSize=3),
        "spec.maxSize: Invalid value: 3: controlPlane InstanceGroup must have maxSize set to 1, "
        "add more InstanceGroups instead",
    ),
    "maxSize is at least minSize": (
        "dev", _group(nodes, minSize=2, maxSize=1),
        "spec.maxSize: Forbidden: maxSize must be greater than or equal to minSize.",
    ),
    "instance groups name an image": (
        "dev", _group(nodes, image=""), "spec.image: Forbidden: image must be specified.",
    ),
    "GCE instance groups name zones": (
        "dev", _group(nodes, zones=[]), "spec.zones: Required value: zones should be specified",
    ),
    "instance group subnets exist in the cluster": (
        "dev", _group(nodes, subnets=["europe-west1-b"]),
        'spec.networking.subnets[0]: Not found: "europe-west1-b"',
    ),
    "control-plane groups are members of every etcd cluster": (
        "dev", lambda k: control_plane(k)["metadata"].update(name="control-plane-b"),
        'spec.metadata.name: Forbidden: InstanceGroup "control-plane-b" with role ControlPlane '
        'must have a member in etcd cluster "main"',
    ),
    "node labels have at most one slash": (
        "dev", lambda k: nodes(k)["spec"]["nodeLabels"].update({"a/b/c": "x"}),
        'spec.nodeLabels: Invalid value: "a/b/c": Node label may only contain a single slash',
    ),
}  # fmt: skip


def test_every_kops_rule_cites_kops_and_has_a_negative_case():
    names = [r.name for r in kops_rules.RULES]
    assert len(names) == len(set(names))
    assert set(NEGATIVE_CASES) == set(names)
    for r in kops_rules.RULES:
        assert r.cite.startswith(("pkg/", "upup/")), r.name


def test_rendered_specs_pass_every_kops_rule(env):
    assert kops_rules.violations(kops_spec(env)) == []


@pytest.mark.parametrize("rule", kops_rules.RULES, ids=lambda r: r.name)
def test_kops_rule_refuses_a_spec_that_breaks_it(rule, rendered_envs):
    environment, mutate, message = NEGATIVE_CASES[rule.name]
    spec = kops_spec(rendered_envs[environment])
    mutate(spec)
    found = list(rule.check(spec))
    assert any(message in line for line in found), found
    # The whole rule set refuses it too, with the same message.
    assert any(message in line for line in kops_rules.violations(spec))


def test_kubernetes_version_is_in_the_range_the_pinned_kops_manages(env):
    version = kops_rules.kubernetes_version(cluster_of(env)["spec"]["kubernetesVersion"])
    assert version is not None
    # apply_cluster.go:77 (oldest not deprecated) .. the kops minor (apply_cluster.go:939-962)
    assert version >= (1, 31, 0)
    assert version[:2] <= kops_rules.KOPS_VERSION


def test_rules_were_read_from_the_pinned_kops_minor():
    pinned = tuple(int(part) for part in tools.KOPS_VERSION.split(".")[:2])
    assert pinned == kops_rules.KOPS_VERSION, "re-read the kops rules for the new kops minor"


def test_cluster_name_without_a_dot_is_accepted_with_dns_none(rendered_envs):
    spec = kops_spec(rendered_envs["dev"])
    spec.cluster["metadata"]["name"] = "conduit-dev"
    assert kops_rules.violations(spec) == []


def test_kops_file_holds_one_cluster_and_its_instance_groups(env):
    kinds = [d["kind"] for d in env.kops]
    assert kinds[0] == "Cluster"
    assert set(kinds[1:]) == {"InstanceGroup"}


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
