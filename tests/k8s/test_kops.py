"""The kops Cluster and InstanceGroups: the rules kops 1.35 enforces, and our sizes.

kops cannot run here, so tests/k8s/kops_rules.py transcribes, citing kops' source, the
checks of kops v1.35.2 that the template can break. The rendered specs must pass them,
and every rule has a negative case below: the template or an environment's values,
changed as someone might change them, render a spec that must be refused with kops'
message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import yaml
from conduit_deploy import tools
from conduit_deploy.render import load_yaml_mapping, render_kops

from tests.k8s import kops_rules
from tests.k8s.kops_rules import KopsSpec
from tests.k8s.support import K8S, RenderedEnv, sample_values

TEMPLATE = K8S / "kops" / "cluster.yaml.j2"
FIELDS = "FIELDS"  # kops_rules.field_errors, which runs before the rules


def cluster_of(env: RenderedEnv) -> dict:
    [cluster] = [d for d in env.kops if d["kind"] == "Cluster"]
    return cluster


def groups_of(env: RenderedEnv, role: str | None = None) -> list[dict]:
    return [
        d for d in env.kops if d["kind"] == "InstanceGroup" and role in (None, d["spec"]["role"])
    ]


def kops_spec(env: RenderedEnv) -> KopsSpec:
    return KopsSpec(copy.deepcopy(cluster_of(env)), copy.deepcopy(groups_of(env)))


@dataclass(frozen=True)
class Mistake:
    """A change to values/<environment>.yaml or to the template, and what kops says."""

    rule: str
    message: str
    values: dict = field(default_factory=dict)
    edit: tuple[str, str] | None = None  # (text of the template, its replacement)
    environment: str = "dev"


def render_mistake(mistake: Mistake, tmp_path) -> KopsSpec:
    template = TEMPLATE.read_text()
    if mistake.edit:
        old, new = mistake.edit
        assert old in template, f"the template no longer holds {old!r}: update this case"
        template = template.replace(old, new)
    path = tmp_path / TEMPLATE.name
    path.write_text(template)
    # The context render() passes: the environment's values and three CI variables.
    sample = sample_values(mistake.environment)
    values = K8S / "kops" / "values" / f"{mistake.environment}.yaml"
    context = {
        **load_yaml_mapping(values),
        "api_access_cidrs": list(sample.api_access_cidrs),
        **mistake.values,
        "cluster_name": sample.cluster_name,
        "kops_state_store": sample.kops_state_store,
        "gcp_project": sample.gcp_project,
    }
    documents = [d for d in yaml.safe_load_all(render_kops(path, context)) if d]
    groups = [d for d in documents if d["kind"] == "InstanceGroup"]
    return KopsSpec(next(d for d in documents if d["kind"] == "Cluster"), groups)


_ETCD_MEMBER_GROUP = 'instanceGroup: {{ ("control-plane-" ~ zone) | tojson }}'
_ODD_MESSAGE = "Should be an odd number of control-plane-zones for quorum"

MISTAKES = [
    # The blocker of issue 12: class is AWS-only, and the template does not write it.
    Mistake(FIELDS, "spec.api.loadBalancer.class: unknown field",
            edit=("    loadBalancer:\n", "    loadBalancer:\n      class: Regional\n")),
    Mistake(FIELDS, "spec.kubernetesVersion: json: cannot unmarshal number into Go value of "
            "type string", values={"kubernetes_version": 1.35}),
    Mistake(FIELDS, "spec.rootVolumeSize: json: cannot unmarshal string into Go value of type "
            "int32", values={"node_disk_gb": "50GB"}),
    Mistake(FIELDS, "spec.kubernetesApiAccess: json: cannot unmarshal string into Go value of "
            "type slice", values={"api_access_cidrs": "0.0.0.0/0"}),
    Mistake("kubernetesVersion parses and lies in the range kops 1.35 supports",
            "kops upgrade is required", values={"kubernetes_version": "1.36.0"}),
    Mistake("kubernetesVersion parses and lies in the range kops 1.35 supports",
            "kubernetes upgrade is required", values={"kubernetes_version": "1.28.15"}),
    Mistake("kubernetesVersion parses and lies in the range kops 1.35 supports",
            "Kops support for this Kubernetes version is deprecated",
            values={"kubernetes_version": "1.30.14"}),
    Mistake("kubernetesVersion parses and lies in the range kops 1.35 supports",
            'spec.kubernetesVersion: Invalid value: "latest": unable to determine kubernetes '
            "version", values={"kubernetes_version": "latest"}),
    Mistake("access CIDRs parse",
            'spec.kubernetesAPIAccess[0]: Invalid value: "203.0.113.7": Could not be parsed as '
            'a CIDR (did you mean "203.0.113.7/32")', values={"api_access_cidrs": ["203.0.113.7"]}),
    Mistake("access CIDRs parse",
            'spec.sshAccess[0]: Invalid value: "pl-0123": Prefix List ID only supported for AWS',
            values={"ssh_access_cidrs": ["pl-0123"]}),
    Mistake("GCE subnets name their region",
            "spec.networking.subnets[0].region: Required value: region must be specified",
            values={"region": ""}),
    Mistake("a control-plane and a node instance group",
            "must configure at least one Node InstanceGroup", values={"node_zones": []}),
    Mistake("a control-plane and a node instance group",
            "must configure at least one ControlPlane InstanceGroup",
            values={"control_plane_zones": []}),
    Mistake("etcd clusters have an odd number of named members",
            f"spec.etcdClusters[0].etcdMembers: Invalid value: 2: {_ODD_MESSAGE}",
            values={"control_plane_zones": ["europe-west1-b", "europe-west1-c"]},
            environment="prod"),
    Mistake("etcd clusters have an odd number of named members",
            "spec.etcdClusters[0].etcdMembers: Required value: No members defined in etcd "
            "cluster", values={"control_plane_zones": []}),
    Mistake("etcd clusters have an odd number of named members",
            "spec.etcdClusters[0].etcdMembers[0].name: Required value: etcdMember did not have "
            "name", values={"control_plane_zones": ["europe-west1-"]}),
    Mistake("instance groups name an image", "spec.image: Forbidden: image must be specified.",
            values={"node_image": ""}),
    # kops' own default range, outside the template's nonMasqueradeCIDR.
    Mistake("address ranges parse, the pods inside nonMasqueradeCIDR",
            'spec.networking.podCIDR: Forbidden: podCIDR "100.96.0.0/11" must be a subnet of '
            'nonMasqueradeCIDR "10.0.0.0/8"',
            edit=("podCIDR: 10.4.0.0/14", "podCIDR: 100.96.0.0/11")),
    Mistake("address ranges parse, the pods inside nonMasqueradeCIDR",
            'spec.networking.serviceClusterIPRange: Invalid value: "10.1.0.1/16": Network '
            'contains bits outside prefix (did you mean "10.1.0.0/16")',
            edit=("serviceClusterIPRange: 10.1.0.0/16", "serviceClusterIPRange: 10.1.0.1/16")),
    Mistake("subnet CIDRs parse and overlap neither pods nor Services",
            'spec.networking.subnets[0].cidr: Forbidden: subnet "europe-west1" cidr '
            '"10.1.0.0/19" must not overlap serviceClusterIPRange "10.1.0.0/16"',
            edit=("cidr: 10.0.32.0/19", "cidr: 10.1.0.0/19")),
    Mistake("subnet CIDRs parse and overlap neither pods nor Services",
            'spec.networking.subnets[0].cidr: Forbidden: subnet "europe-west1" cidr '
            '"10.4.0.0/19" must not overlap podCIDR "10.4.0.0/14"',
            edit=("cidr: 10.0.32.0/19", "cidr: 10.4.0.0/19")),
    Mistake("Cilium NodePort needs kube-proxy disabled",
            "spec.spec.kubeProxy.enabled: Forbidden: When Cilium NodePort is enabled, kubeProxy "
            "must be disabled",
            edit=("kubeProxy:\n    enabled: false", "kubeProxy:\n    enabled: true")),
    Mistake("control-plane groups have one instance",
            "spec.maxSize: Invalid value: 3: controlPlane InstanceGroup must have maxSize set to "
            "1, add more InstanceGroups instead",
            edit=("minSize: 1\n  maxSize: 1", "minSize: 3\n  maxSize: 3")),
    Mistake("control-plane groups are members of every etcd cluster",
            'spec.metadata.name: Forbidden: InstanceGroup "control-plane-europe-west1-b" with '
            'role ControlPlane must have a member in etcd cluster "main"',
            edit=(_ETCD_MEMBER_GROUP, _ETCD_MEMBER_GROUP.replace("control-plane-", "master-"))),
    Mistake("instance groups' subnets are the cluster's",
            'spec.networking.subnets[0]: Not found: "europe-west1"',
            edit=("- name: {{ region | tojson }}", '- name: "main"')),
    Mistake("iam.legacy is not set",
            "spec.iam.legacy: Forbidden: legacy IAM permissions are no longer supported",
            edit=("legacy: false", "legacy: true")),
    Mistake("node labels have at most one slash",
            'spec.nodeLabels: Invalid value: "kops.k8s.io/instance/group": Node label may only '
            "contain a single slash",
            edit=("kops.k8s.io/instancegroup: ", "kops.k8s.io/instance/group: ")),
]  # fmt: skip


def test_every_kops_rule_cites_kops_and_has_a_negative_case():
    names = [r.name for r in kops_rules.RULES]
    assert len(names) == len(set(names))
    assert {m.rule for m in MISTAKES} == {*names, FIELDS}
    for r in kops_rules.RULES:
        assert r.cite.startswith(("pkg/", "upup/")), r.name
        assert ".go " in r.cite, f"{r.name}: cite the function too"


def test_rendered_specs_pass_every_kops_rule(env):
    refused = kops_rules.violations(kops_spec(env))
    assert not refused, "kops 1.35 would refuse the rendered spec:\n" + "\n".join(refused)


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.message[:60])
def test_kops_rule_refuses_a_rendered_spec_that_breaks_it(mistake, tmp_path):
    spec = render_mistake(mistake, tmp_path)
    if mistake.rule == FIELDS:
        assert any(mistake.message in line for line in kops_rules.field_errors(spec))
    else:
        [rule] = [r for r in kops_rules.RULES if r.name == mistake.rule]
        found = list(rule.check(spec))
        assert any(mistake.message in line for line in found), found
    # The whole check refuses it too, with the same message.
    assert any(mistake.message in line for line in kops_rules.violations(spec))


def test_rules_were_read_from_the_pinned_kops_minor():
    pinned = tuple(int(part) for part in tools.KOPS_VERSION.split(".")[:2])
    assert pinned == kops_rules.KOPS_VERSION, "re-read the kops rules for the new kops minor"


def test_the_api_is_public_on_gce_without_a_dns_zone(env):
    """Users need no DNS zone: clients reach the API at its load balancer's address."""
    spec = cluster_of(env)["spec"]
    assert spec["cloudProvider"] == "gce"
    assert spec["api"] == {"loadBalancer": {"type": "Public"}}
    assert spec["topology"] == {"dns": {"type": "None"}}
    assert [subnet["type"] for subnet in spec["subnets"]] == ["Public"]


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
        for zone in group["spec"]["zones"]:
            # GCE zones are <region>-<letter>; kops leaves this to GCE's API.
            assert zone.rsplit("-", 1)[0] in {subnets[s] for s in group["spec"]["subnets"]}


def test_etcd_members_are_the_control_plane_groups(env):
    control_plane = {g["metadata"]["name"] for g in groups_of(env, "Master")}
    etcd = {c["name"]: c for c in cluster_of(env)["spec"]["etcdClusters"]}
    assert set(etcd) == {"main", "events"}
    for cluster in etcd.values():
        members = [m["instanceGroup"] for m in cluster["etcdMembers"]]
        assert sorted(members) == sorted(control_plane)
        assert len({m["name"] for m in cluster["etcdMembers"]}) == len(members)


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
