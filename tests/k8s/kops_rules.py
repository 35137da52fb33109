"""The checks of kops 1.35.2 that k8s/kops/cluster.yaml.j2 can break.

kops cannot run here (no cloud), so each rule transcribes one check of kops v1.35.2 and
cites it as ``file function`` (paths in github.com/kubernetes/kops at that tag). Messages
are kops' own, in apimachinery's ``<path>: <type>: <detail>`` form, with the internal
API's paths (``spec.networking.podCIDR`` where the manifest says ``spec.podCIDR``).

What is kept, and why:

* FIELDS, the keys the template writes, typed as kops' v1alpha2 structs declare them.
  kops decodes before it validates, and its decoder drops an unknown key without a word:
  a misspelt key is refused here, and a new one until kops' checks on it are added below.
  It also refuses a value of the wrong type from values/<env>.yaml (``node_disk_gb: 50GB``).
* The checks on what values/<env>.yaml feeds: the Kubernetes version, the access CIDRs,
  the region, the zones (instance groups and etcd members) and the node image.
* The checks on the template's fixed settings that no test pins: mostly those tying two
  settings together, which an edit of one breaks (address ranges, etcd members and
  control-plane groups, the groups' subnet, Cilium and kube-proxy).

What is left out: checks on fields the template does not write (FIELDS refuses those
first); checks on the CI variables, which conduit_deploy.config validates more strictly
before rendering (cluster name, project); checks on fixed settings that test_kops.py pins
(cloud provider, public API and subnet, no DNS zone, networking, metrics-server and
cert-manager, etcd names, roles); checks the template's shape cannot fail (one subnet,
minSize = maxSize, a zone for every group).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

KOPS_VERSION = (1, 35)  # the kops minor these rules were read from (v1.35.2)

_VALIDATION = "pkg/apis/kops/validation/validation.go"
_INSTANCE_GROUP = "pkg/apis/kops/validation/instancegroup.go"
_LEGACY = "pkg/apis/kops/validation/legacy.go"


@dataclass
class KopsSpec:
    cluster: dict
    groups: list[dict]

    @property
    def spec(self) -> dict:
        return self.cluster["spec"]

    def control_plane_groups(self) -> list[dict]:
        # v1alpha2 spells ControlPlane "Master" (pkg/apis/kops/v1alpha2/conversion.go
        # Convert_v1alpha2_InstanceGroupSpec_To_kops_InstanceGroupSpec).
        return [g for g in self.groups if g["spec"].get("role") in ("Master", "ControlPlane")]


@dataclass(frozen=True)
class Rule:
    name: str
    cite: str  # "file function" in kubernetes/kops at v1.35.2
    check: Callable[[KopsSpec], Iterator[str]]


RULES: list[Rule] = []


def rule(name: str, cite: str):
    def register(check: Callable[[KopsSpec], Iterator[str]]):
        RULES.append(Rule(name, cite, check))
        return check

    return register


def violations(spec: KopsSpec) -> list[str]:
    """What kops would refuse: FIELDS' errors if any (decoding fails first), else the rules'."""
    return field_errors(spec) or [message for r in RULES for message in r.check(spec)]


# apimachinery's field.Error (k8s.io/apimachinery/pkg/util/validation/field/errors.go)
def required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def forbidden(path: str, detail: str) -> str:
    return f"{path}: Forbidden: {detail}"


def invalid(path: str, value: Any, detail: str) -> str:
    shown = json.dumps(value) if isinstance(value, str) else value  # Go's %q for strings
    return f"{path}: Invalid value: {shown}: {detail}"


# --- FIELDS -----------------------------------------------------------------------------


def _typed(go_type: str, paths: str) -> dict[str, str]:
    return dict.fromkeys(paths.split(), go_type)


# "[]" stands for every item of a list. Declared in pkg/apis/kops/v1alpha2/: cluster.go
# (ClusterSpec, ClusterSubnetSpec, EtcdClusterSpec, EtcdMemberSpec, EtcdManagerSpec,
# APISpec, LoadBalancerAccessSpec, AuthorizationSpec, IAMSpec), topology.go (TopologySpec),
# componentconfig.go (KubeletConfigSpec, KubeProxyConfig, MetricsServerConfig,
# CertManagerConfig), networking.go (CiliumNetworkingSpec), instancegroup.go.
_OBJECT = {**_typed("string", "apiVersion kind metadata.name"),
           "metadata.labels": "map[string]string"}  # fmt: skip
CLUSTER_FIELDS = {
    **_OBJECT,
    **_typed("string", """
        spec.cloudProvider spec.project spec.configBase spec.kubernetesVersion spec.channel
        spec.api.loadBalancer.type spec.topology.dns.type
        spec.kubernetesApiAccess[] spec.sshAccess[]
        spec.nonMasqueradeCIDR spec.podCIDR spec.serviceClusterIPRange
        spec.subnets[].name spec.subnets[].region spec.subnets[].type spec.subnets[].cidr
        spec.kubelet.authorizationMode
        spec.etcdClusters[].name
        spec.etcdClusters[].etcdMembers[].name spec.etcdClusters[].etcdMembers[].instanceGroup
    """),
    **_typed("bool", """
        spec.iam.allowContainerRegistry spec.iam.legacy
        spec.networking.cilium.enableNodePort spec.kubeProxy.enabled
        spec.kubelet.anonymousAuth spec.kubelet.authenticationTokenWebhook
        spec.certManager.enabled spec.metricsServer.enabled spec.metricsServer.insecure
    """),
    **_typed("Quantity", "spec.etcdClusters[].cpuRequest spec.etcdClusters[].memoryRequest"),
    "spec.etcdClusters[].manager.backupRetentionDays": "uint32",
    "spec.authorization.rbac": "struct",  # written empty
}  # fmt: skip
INSTANCE_GROUP_FIELDS = {
    **_OBJECT,
    **_typed("string", "spec.role spec.image spec.machineType spec.rootVolumeType"),
    **_typed("string", "spec.subnets[] spec.zones[]"),
    **_typed("int32", "spec.minSize spec.maxSize spec.rootVolumeSize"),
    "spec.nodeLabels": "map[string]string",
}

_INTEGERS = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}
# k8s.io/apimachinery/pkg/api/resource/quantity.go ParseQuantity
_QUANTITY = re.compile(r"[+-]?[0-9.]+[eEinumkKMGTP]*[-+]?[0-9]*")
# What Go's encoding/json calls a value in an UnmarshalTypeError.
_JSON_TYPES = {bool: "bool", int: "number", float: "number", str: "string", list: "array"}


def _fits(value: Any, go_type: str) -> bool:
    if go_type in _INTEGERS:
        low, high = _INTEGERS[go_type]
        return type(value) is int and low <= value <= high
    if go_type == "Quantity":
        return type(value) in (str, int, float) and bool(_QUANTITY.fullmatch(str(value)))
    if go_type == "map[string]string":
        return isinstance(value, dict) and all(type(v) is str for v in value.values())
    if go_type == "struct":
        return value == {}
    return type(value) is {"string": str, "bool": bool}[go_type]


def _field_errors(value: Any, path: str, fields: dict[str, str]) -> Iterator[str]:
    where, found = path.replace("[]", ""), _JSON_TYPES.get(type(value), "object")
    if value is None:
        return  # Go's encoding/json leaves the field empty
    if path in fields:
        if not _fits(value, fields[path]):
            yield f"{where}: json: cannot unmarshal {found} into Go value of type {fields[path]}"
    elif any(f.startswith(f"{path}[]") for f in fields):
        if type(value) is not list:
            yield f"{where}: json: cannot unmarshal {found} into Go value of type slice"
            return
        for item in value:
            yield from _field_errors(item, f"{path}[]", fields)
    elif not path or any(f.startswith(f"{path}.") for f in fields):
        if type(value) is not dict:
            yield f"{where}: json: cannot unmarshal {found} into Go value of type struct"
            return
        for key, item in value.items():
            yield from _field_errors(item, f"{path}.{key}".lstrip("."), fields)
    else:
        yield (
            f"{where}: unknown field: kops would drop it without a word; unless it is a typo, "
            "add it to FIELDS with kops' checks on it (tests/k8s/kops_rules.py)"
        )


def field_errors(k: KopsSpec) -> list[str]:
    """kops decodes before it validates (pkg/kopscodecs/codecs.go ParseVersionedYaml)."""
    errors = list(_field_errors(k.cluster, "", CLUSTER_FIELDS))
    for group in k.groups:
        errors += _field_errors(group, "", INSTANCE_GROUP_FIELDS)
    return errors


# --- what values/<env>.yaml feeds -------------------------------------------------------

# pkg/apis/kops/util/versions.go ParseKubernetesVersion: blang/semver's ParseTolerant
# (spaces, a leading "v" and a missing minor or patch are tolerated), else a release URL.
_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
_RELEASE_URL = re.compile(r"/v1\.(\d+)\.")


def kubernetes_version(text: str) -> tuple[int, ...] | None:
    if match := _SEMVER.fullmatch(text.strip()):
        return tuple(int(part or 0) for part in match.groups())
    if match := _RELEASE_URL.search(text):
        return (1, int(match[1]), 0)
    return None


@rule(
    "kubernetesVersion parses and lies in the range kops 1.35 supports",
    f"{_LEGACY} ValidateCluster; upup/pkg/fi/cloudup/apply_cluster.go validateKubernetesVersion",
)
def _kubernetes_version(k: KopsSpec) -> Iterator[str]:
    text = k.spec.get("kubernetesVersion") or ""
    version = kubernetes_version(text)
    if not text:
        yield required("spec.kubernetesVersion")
    elif version is None:
        yield invalid("spec.kubernetesVersion", text, "unable to determine kubernetes version")
    elif version[:2] > KOPS_VERSION:
        yield "This version of kubernetes is not yet supported; kops upgrade is required"
    elif version < (1, 29, 0):  # OldestSupportedKubernetesVersion
        yield "This version of Kubernetes is no longer supported; kubernetes upgrade is required"
    elif version < (1, 31, 0):  # OldestRecommendedKubernetesVersion: kops warns, we refuse
        yield "Kops support for this Kubernetes version is deprecated and will be removed"


@rule("access CIDRs parse", f"{_VALIDATION} validateClusterSpec")
def _access_cidrs(k: KopsSpec) -> Iterator[str]:
    for key, path in (("sshAccess", "spec.sshAccess"),
                      ("kubernetesApiAccess", "spec.kubernetesAPIAccess")):  # fmt: skip
        for index, cidr in enumerate(k.spec.get(key) or []):
            if cidr.startswith("pl-"):
                yield invalid(f"{path}[{index}]", cidr, "Prefix List ID only supported for AWS")
            else:
                yield from parse_cidr(f"{path}[{index}]", cidr)[1]


@rule("GCE subnets name their region", f"{_VALIDATION} validateSubnets")
def _subnet_region(k: KopsSpec) -> Iterator[str]:
    for index, subnet in enumerate(k.spec.get("subnets") or []):
        if not subnet.get("region"):
            yield required(f"spec.networking.subnets[{index}].region", "region must be specified")


@rule("a control-plane and a node instance group", f"{_LEGACY} DeepValidate")
def _groups_present(k: KopsSpec) -> Iterator[str]:
    control_plane = k.control_plane_groups()
    if not control_plane:
        yield "must configure at least one ControlPlane InstanceGroup"
    if len(control_plane) == len(k.groups):
        yield "must configure at least one Node InstanceGroup"


@rule(
    "etcd clusters have an odd number of named members",
    f"{_VALIDATION} validateEtcdClusterSpec, validateEtcdMemberSpec",
)
def _etcd_members(k: KopsSpec) -> Iterator[str]:
    for index, etcd in enumerate(k.spec.get("etcdClusters") or []):
        path, members = f"spec.etcdClusters[{index}].etcdMembers", etcd.get("etcdMembers") or []
        if not members:
            yield required(path, "No members defined in etcd cluster")
        elif len(members) % 2 == 0:
            yield invalid(
                path,
                len(members),
                "Should be an odd number of control-plane-zones for quorum. Use --zones and "
                "--control-plane-zones to declare node zones and control-plane zones separately",
            )
        for number, member in enumerate(members):
            if not member.get("name"):
                yield required(f"{path}[{number}].name", "etcdMember did not have name")


@rule("instance groups name an image", f"{_INSTANCE_GROUP} ValidateInstanceGroup")
def _group_image(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        if not group["spec"].get("image"):  # DeepValidate runs it strict
            yield forbidden("spec.image", "image must be specified.")


# --- the template's fixed settings ------------------------------------------------------


def parse_cidr(path: str, cidr: str) -> tuple[Any, list[str]]:
    """validation.go parseCIDR: Go's net.ParseCIDR, and no bits set outside the prefix."""
    try:
        if "/" not in cidr:
            raise ValueError(cidr)
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        detail = "Could not be parsed as a CIDR"
        try:
            ip = ipaddress.ip_address(cidr)
            detail += f' (did you mean "{cidr}/{32 if ip.version == 4 else 64}")'
        except ValueError:
            pass
        return None, [invalid(path, cidr, detail)]
    if network.network_address != ipaddress.ip_interface(cidr).ip:
        detail = f'Network contains bits outside prefix (did you mean "{network}")'
        return network, [invalid(path, cidr, detail)]
    return network, []


def _range(k: KopsSpec, key: str) -> tuple[Any, list[str]]:
    value = k.spec.get(key)
    return parse_cidr(f"spec.networking.{key}", value) if value else (None, [])


@rule(
    "address ranges parse, the pods inside nonMasqueradeCIDR", f"{_VALIDATION} validateNetworking"
)
def _address_ranges(k: KopsSpec) -> Iterator[str]:
    (outer, outer_errors), (pods, pod_errors) = _range(k, "nonMasqueradeCIDR"), _range(k, "podCIDR")
    yield from outer_errors + pod_errors + _range(k, "serviceClusterIPRange")[1]
    if outer is not None and pods is not None and not pods.subnet_of(outer):
        detail = f'podCIDR "{pods}" must be a subnet of nonMasqueradeCIDR "{outer}"'
        yield forbidden("spec.networking.podCIDR", detail)


@rule("subnet CIDRs parse and overlap neither pods nor Services", f"{_VALIDATION} validateSubnet")
def _subnet_cidrs(k: KopsSpec) -> Iterator[str]:
    others = {key: _range(k, key)[0] for key in ("podCIDR", "serviceClusterIPRange")}
    for index, subnet in enumerate(k.spec.get("subnets") or []):
        name, cidr = subnet.get("name"), subnet.get("cidr")
        if not cidr:
            continue  # GCE does not require one
        path = f"spec.networking.subnets[{index}].cidr"
        network, errors = parse_cidr(path, cidr)
        yield from errors
        for key, other in others.items():
            if network is not None and other is not None and network.overlaps(other):
                yield forbidden(
                    path, f'subnet "{name}" cidr "{cidr}" must not overlap {key} "{other}"'
                )


@rule("Cilium NodePort needs kube-proxy disabled", f"{_VALIDATION} validateNetworkingCilium")
def _cilium_kube_proxy(k: KopsSpec) -> Iterator[str]:
    node_port = ((k.spec.get("networking") or {}).get("cilium") or {}).get("enableNodePort")
    proxy = k.spec.get("kubeProxy")
    if node_port and proxy is not None and proxy.get("enabled") is not False:
        # kops builds the path from the root "spec" and adds "spec" again (sic).
        detail = "When Cilium NodePort is enabled, kubeProxy must be disabled"
        yield forbidden("spec.spec.kubeProxy.enabled", detail)


@rule("control-plane groups have one instance", f"{_INSTANCE_GROUP} ValidateInstanceGroup")
def _control_plane_size(k: KopsSpec) -> Iterator[str]:
    for group in k.control_plane_groups():
        for key, advice in (("minSize", ""), ("maxSize", ", add more InstanceGroups instead")):
            size = group["spec"].get(key) or 0
            if size > 1:
                detail = f"controlPlane InstanceGroup must have {key} set to 1{advice}"
                yield invalid(f"spec.{key}", size, detail)


@rule(
    "control-plane groups are members of every etcd cluster",
    f"{_INSTANCE_GROUP} ValidateControlPlaneInstanceGroup",
)
def _control_plane_etcd(k: KopsSpec) -> Iterator[str]:
    for group in k.control_plane_groups():
        name = group["metadata"].get("name")
        for etcd in k.spec.get("etcdClusters") or []:
            if not any(m.get("instanceGroup") == name for m in etcd.get("etcdMembers") or []):
                detail = (
                    f'InstanceGroup "{name}" with role ControlPlane must have a member '
                    f'in etcd cluster "{etcd.get("name")}"'
                )
                yield forbidden("spec.metadata.name", detail)


@rule("instance groups' subnets are the cluster's", f"{_INSTANCE_GROUP} CrossValidateInstanceGroup")
def _group_subnets(k: KopsSpec) -> Iterator[str]:
    names = {subnet.get("name") for subnet in k.spec.get("subnets") or []}
    for group in k.groups:
        for index, subnet in enumerate(group["spec"].get("subnets") or []):
            if subnet not in names:
                yield f'spec.networking.subnets[{index}]: Not found: "{subnet}"'


@rule("iam.legacy is not set", f"{_VALIDATION} validateClusterSpec")
def _iam_legacy(k: KopsSpec) -> Iterator[str]:
    if (k.spec.get("iam") or {}).get("legacy"):
        yield forbidden("spec.iam.legacy", "legacy IAM permissions are no longer supported")


@rule("node labels have at most one slash", f"{_INSTANCE_GROUP} validateNodeLabels")
def _node_labels(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        for key in group["spec"].get("nodeLabels") or {}:
            if key.count("/") > 1:
                yield invalid("spec.nodeLabels", key, "Node label may only contain a single slash")
