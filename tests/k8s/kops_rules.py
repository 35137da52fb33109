"""The rules kops 1.35.2 applies to the Cluster and InstanceGroup fields our template uses.

kops cannot run here (no cloud), and it ships no schema, so each rule below is a
transcription of one check in the kops v1.35.2 source, cited as ``file:line`` (paths
relative to github.com/kubernetes/kops at tag v1.35.2). Each rule reports the message
kops prints, in apimachinery's ``field.Error`` format (``<path>: <type>: <detail>``),
with kops' own field paths: the internal API's (``spec.networking.subnets[0].cidr``),
not the v1alpha2 spelling of the manifest (``spec.subnets[0].cidr``).

Two kinds of rule:

* checks kops makes (validation, conversion, version gates);
* FIELDS: every key the template writes must be a field the v1alpha2 types declare,
  with the declared type. kops' decoder is lenient (pkg/kopscodecs/codecs.go:112,
  ``Codecs.UniversalDecoder``): it silently drops an unknown key, so a misspelt field
  would be lost without a word. That rule is ours; the declarations it checks are kops'.

Only the checks the template can break are here: those on fields it writes, whether a
value comes from values/<env>.yaml or is written in the template itself. A field the
template does not write fails FIELDS first, so kops' checks on such fields (GCE's
networkCIDR, a GCE subnet's zone, ...) are left out until the template writes one.

tests/k8s/test_kops.py runs every rule on the rendered specs and, for each rule, breaks
a rendered spec so that exactly that rule must fire. tests/README.md says how the rules
are read again when kops is upgraded.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

KOPS_VERSION = (1, 35)  # the kops minor version these rules were read from (v1.35.2)

Spec = dict[str, Any]


# --- apimachinery field.Error formats (k8s.io/apimachinery/pkg/util/validation/field) ---


def _quote(value: Any) -> str:
    # field.Invalid/NotSupported print strings with %q and numbers bare.
    return json.dumps(value) if isinstance(value, str) else str(value)


def required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def forbidden(path: str, detail: str) -> str:
    return f"{path}: Forbidden: {detail}"


def invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_quote(value)}: {detail}"


def not_supported(path: str, value: Any, supported: list[str]) -> str:
    listed = ", ".join(json.dumps(s) for s in supported)
    return f"{path}: Unsupported value: {_quote(value)}: supported values: {listed}"


def not_found(path: str, value: Any) -> str:
    return f"{path}: Not found: {_quote(value)}"


# --- helpers kops uses ------------------------------------------------------------------

# k8s.io/apimachinery/pkg/util/validation/validation.go: IsDNS1123Subdomain
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def parse_cidr(
    path: str, cidr: Any
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | None, list[str]]:
    """validation.go:471-495 parseCIDR: the value must parse, with no host bits set."""
    try:
        if not isinstance(cidr, str) or "/" not in cidr:  # Go's net.ParseCIDR needs the mask
            raise ValueError(cidr)
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        detail = "Could not be parsed as a CIDR"
        if isinstance(cidr, str) and "/" not in cidr:
            try:
                ip = ipaddress.ip_address(cidr)
            except ValueError:
                pass
            else:
                detail += f' (did you mean "{cidr}/{32 if ip.version == 4 else 64}")'
        return None, [invalid(path, cidr, detail)]
    if network.network_address != ipaddress.ip_interface(cidr).ip:
        detail = (
            "Network contains bits outside prefix "
            f'(did you mean "{network.network_address}/{network.prefixlen}")'
        )
        return network, [invalid(path, cidr, detail)]
    return network, []


def overlap(a, b) -> bool:
    return a is not None and b is not None and a.overlaps(b)


def belongs_to(outer, inner) -> bool:
    return outer is not None and inner is not None and inner.subnet_of(outer)


def kubernetes_version(text: str) -> tuple[int, int, int] | None:
    """pkg/apis/kops/util/versions.go ParseKubernetesVersion: semver, optional leading v."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", text.strip())
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]


# --- the documents ----------------------------------------------------------------------


@dataclass
class KopsSpec:
    cluster: Spec
    groups: list[Spec]

    @property
    def spec(self) -> Spec:
        return self.cluster.get("spec") or {}

    def subnets(self) -> list[Spec]:
        return self.spec.get("subnets") or []

    def cidr(self, key: str):
        value = self.spec.get(key)
        return parse_cidr("", value)[0] if value else None

    def uses_none_dns(self) -> bool:
        return ((self.spec.get("topology") or {}).get("dns") or {}).get("type") == "None"

    def cloud_provider(self) -> str:
        return self.spec.get("cloudProvider", "")


@dataclass(frozen=True)
class Rule:
    name: str
    cite: str  # file:line in kubernetes/kops at v1.35.2
    check: Callable[[KopsSpec], Iterator[str]]


RULES: list[Rule] = []


def rule(name: str, cite: str):
    def register(check: Callable[[KopsSpec], Iterator[str]]):
        RULES.append(Rule(name, cite, check))
        return check

    return register


def violations(spec: KopsSpec) -> list[str]:
    return [message for r in RULES for message in r.check(spec)]


# --- fields: every key the template writes is declared by kops' v1alpha2 types ----------

# (type, citation of the declaration); dict values describe nested objects,
# ("list", item) lists of objects.
_C = "pkg/apis/kops/v1alpha2/cluster.go"
_CC = "pkg/apis/kops/v1alpha2/componentconfig.go"
_IG = "pkg/apis/kops/v1alpha2/instancegroup.go"
_NET = "pkg/apis/kops/v1alpha2/networking.go"
_TOPO = "pkg/apis/kops/v1alpha2/topology.go"
_OBJECT_META = {"name": (str, "ObjectMeta"), "labels": (dict, "ObjectMeta")}

CLUSTER_FIELDS: dict[str, Any] = {
    "apiVersion": (str, "TypeMeta"),
    "kind": (str, "TypeMeta"),
    "metadata": (_OBJECT_META, f"{_C}:32"),
    "spec": (
        {
            "channel": (str, f"{_C}:50"),
            "configBase": (str, f"{_C}:59"),
            "cloudProvider": (str, f"{_C}:63"),
            "kubernetesVersion": (str, f"{_C}:69"),
            "subnets": (
                (
                    "list",
                    {
                        "name": (str, f"{_C}:746"),
                        "region": (str, f"{_C}:751"),
                        "cidr": (str, f"{_C}:754"),
                        "type": (str, f"{_C}:764"),
                    },
                ),
                f"{_C}:72",
            ),
            "project": (str, f"{_C}:75"),
            "topology": (
                {"dns": ({"type": (str, f"{_TOPO}:48")}, f"{_TOPO}:44")},
                f"{_C}:99",
            ),
            "serviceClusterIPRange": (str, f"{_C}:125"),
            "podCIDR": (str, f"{_C}:128"),
            "nonMasqueradeCIDR": (str, f"{_C}:133"),
            "sshAccess": (("list", str), f"{_C}:136"),
            "kubernetesApiAccess": (("list", str), f"{_C}:147"),
            "etcdClusters": (
                (
                    "list",
                    {
                        "name": (str, f"{_C}:655"),
                        "etcdMembers": (
                            (
                                "list",
                                {
                                    "name": (str, f"{_C}:718"),
                                    "instanceGroup": (str, f"{_C}:720"),
                                },
                            ),
                            f"{_C}:660",
                        ),
                        "manager": (
                            {"backupRetentionDays": ("uint32", f"{_C}:705")},
                            f"{_C}:678",
                        ),
                        "memoryRequest": ("quantity", f"{_C}:680"),
                        "cpuRequest": ("quantity", f"{_C}:682"),
                    },
                ),
                f"{_C}:169",
            ),
            "kubeProxy": ({"enabled": (bool, f"{_CC}:281")}, f"{_C}:179"),
            "kubelet": (
                {
                    "anonymousAuth": (bool, f"{_CC}:30"),
                    "authorizationMode": (str, f"{_CC}:32"),
                    "authenticationTokenWebhook": (bool, f"{_CC}:204"),
                },
                f"{_C}:182",
            ),
            "metricsServer": (
                {"enabled": (bool, f"{_CC}:1253"), "insecure": (bool, f"{_CC}:1259")},
                f"{_C}:198",
            ),
            "certManager": ({"enabled": (bool, f"{_CC}:1266")}, f"{_C}:200"),
            "networking": (
                {"cilium": ({"enableNodePort": (bool, f"{_NET}:611")}, f"{_NET}:52")},
                f"{_C}:207",
            ),
            "api": (
                {
                    "loadBalancer": (
                        {"type": (str, f"{_C}:529"), "class": (str, f"{_C}:527")},
                        f"{_C}:472",
                    )
                },
                f"{_C}:211",
            ),
            "authorization": ({"rbac": ({}, f"{_C}:456")}, f"{_C}:216"),
            "iam": (
                {
                    "legacy": (bool, f"{_C}:372"),
                    "allowContainerRegistry": (bool, f"{_C}:373"),
                },
                f"{_C}:226",
            ),
        },
        f"{_C}:34",
    ),
}

INSTANCE_GROUP_FIELDS: dict[str, Any] = {
    "apiVersion": (str, "TypeMeta"),
    "kind": (str, "TypeMeta"),
    "metadata": (_OBJECT_META, f"{_IG}:36"),
    "spec": (
        {
            "role": (str, f"{_IG}:61"),
            "image": (str, f"{_IG}:63"),
            "minSize": ("int32", f"{_IG}:65"),
            "maxSize": ("int32", f"{_IG}:67"),
            "machineType": (str, f"{_IG}:73"),
            "rootVolumeSize": ("int32", f"{_IG}:78"),
            "rootVolumeType": (str, f"{_IG}:81"),
            "subnets": (("list", str), f"{_IG}:105"),
            "zones": (("list", str), f"{_IG}:108"),
            "nodeLabels": (dict, f"{_IG}:124"),
        },
        f"{_IG}:38",
    ),
}

# vendor/k8s.io/apimachinery/pkg/api/resource/quantity.go:149,154 (ErrFormatWrong)
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}


def _field_errors(document: Any, fields: dict[str, Any], path: str) -> Iterator[str]:
    if not isinstance(document, dict):
        yield f"{path}: json: cannot unmarshal {type(document).__name__} into an object"
        return
    for key, value in document.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            yield (
                f"{where}: unknown field: the v1alpha2 types declare no such field, "
                "so kops would drop it silently"
            )
            continue
        yield from _value_errors(value, fields[key][0], where)


def _value_errors(value: Any, kind: Any, where: str) -> Iterator[str]:
    if isinstance(kind, dict):
        yield from _field_errors(value, kind, where)
    elif isinstance(kind, tuple):  # ("list", item kind)
        if not isinstance(value, list):
            yield f"{where}: json: cannot unmarshal {type(value).__name__} into a list"
            return
        for index, item in enumerate(value):
            yield from _value_errors(item, kind[1], f"{where}[{index}]")
    elif kind in _INT_BOUNDS:
        low, high = _INT_BOUNDS[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            yield f"{where}: json: cannot unmarshal {value!r} into Go value of type {kind}"
    elif kind == "quantity":
        if not isinstance(value, (str, int)) or not _QUANTITY.match(str(value)):
            yield (f"{where}: quantities must match the regular expression '{_QUANTITY.pattern}'")
    elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        yield (
            f"{where}: json: cannot unmarshal {type(value).__name__} "
            f"into Go value of type {kind.__name__}"
        )


@rule("cluster fields are declared by v1alpha2", f"{_C}, {_CC}, {_NET}, {_TOPO} (json tags)")
def _cluster_fields(k: KopsSpec) -> Iterator[str]:
    yield from _field_errors(k.cluster, CLUSTER_FIELDS, "")


@rule("instance group fields are declared by v1alpha2", f"{_IG} (json tags)")
def _group_fields(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        yield from _field_errors(group, INSTANCE_GROUP_FIELDS, "")


# --- Cluster ----------------------------------------------------------------------------

_V = "pkg/apis/kops/validation/validation.go"
_VIG = "pkg/apis/kops/validation/instancegroup.go"
_VGCE = "pkg/apis/kops/validation/gce.go"


@rule("cluster name is a DNS subdomain", f"{_V}:58-61")
def _cluster_name_dns(k: KopsSpec) -> Iterator[str]:
    name = (k.cluster.get("metadata") or {}).get("name", "")
    if not name:
        yield required(
            "objectMeta.name", "Cluster Name is required (e.g. --name=mycluster.myzone.com)"
        )
    elif not is_dns1123_subdomain(name):
        yield invalid(
            "objectMeta.name",
            name,
            "Cluster Name must be a valid DNS name (e.g. --name=mycluster.myzone.com) errors: "
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        )


@rule("cluster name has a dot unless DNS is None", f"{_V}:62-66")
def _cluster_name_fqdn(k: KopsSpec) -> Iterator[str]:
    name = (k.cluster.get("metadata") or {}).get("name", "")
    if is_dns1123_subdomain(name) and "." not in name and not k.uses_none_dns():
        yield invalid(
            "objectMeta.name",
            name,
            "Cluster Name must be a fully-qualified DNS name (e.g. --name=mycluster.myzone.com)",
        )


_CLOUD_PROVIDERS = ["gce", "digitalocean", "azure", "aws", "hetzner", "openstack", "scaleway"]


@rule("cloudProvider is a known provider", "pkg/apis/kops/v1alpha2/conversion.go:147-185")
def _cloud_provider(k: KopsSpec) -> Iterator[str]:
    provider = k.cloud_provider()
    if provider == "":
        yield required("spec.cloudProvider")  # validation.go:394-395
    elif provider not in _CLOUD_PROVIDERS:
        yield not_supported("spec.cloudProvider", provider, _CLOUD_PROVIDERS)


@rule("GCE needs a project", "upup/pkg/fi/cloudup/utils.go:58-61")
def _project(k: KopsSpec) -> Iterator[str]:
    if k.cloud_provider() == "gce" and not k.spec.get("project"):
        yield "project is required for GCE - try gcloud config get-value project"


@rule(
    "kubernetesVersion is not newer than kops' minor",
    "upup/pkg/fi/cloudup/apply_cluster.go:939-962",
)
def _version_not_too_new(k: KopsSpec) -> Iterator[str]:
    version = kubernetes_version(str(k.spec.get("kubernetesVersion", "")))
    if version is not None and version[:2] > KOPS_VERSION:
        yield (
            "This version of kubernetes is not yet supported; upgrading kops is required: "
            "kops upgrade is required"
        )


# The range: kops 1.35.2 refuses Kubernetes newer than its own minor (1.36+) and older
# than OldestSupportedKubernetesVersion = 1.29.0, and warns that versions older than
# OldestRecommendedKubernetesVersion = 1.31.0 are deprecated (apply_cluster.go:75,77).
# Its release notes (docs/releases/1.35-NOTES.md) announce 1.29 as removed and 1.30 as
# deprecated; the code is what runs, and we keep clear of both: 1.31 <= version <= 1.35.
@rule(
    "kubernetesVersion is at least the oldest supported",
    "upup/pkg/fi/cloudup/apply_cluster.go:75,966-973",
)
def _version_supported(k: KopsSpec) -> Iterator[str]:
    version = kubernetes_version(str(k.spec.get("kubernetesVersion", "")))
    if version is None:
        yield invalid(
            "spec.kubernetesVersion", k.spec.get("kubernetesVersion", ""), "not a semantic version"
        )
    elif version < (1, 29, 0):
        yield (
            "This version of Kubernetes is no longer supported; upgrading Kubernetes is "
            "required: kubernetes upgrade is required"
        )


@rule("kubernetesVersion is not deprecated", "upup/pkg/fi/cloudup/apply_cluster.go:77,975-986")
def _version_not_deprecated(k: KopsSpec) -> Iterator[str]:
    # kops only warns; a new cluster on a version kops is about to drop is a mistake.
    version = kubernetes_version(str(k.spec.get("kubernetesVersion", "")))
    if version is not None and (1, 29, 0) <= version < (1, 31, 0):
        yield (
            "Kops support for this Kubernetes version is deprecated and will be removed "
            "in a future release."
        )


@rule("access CIDRs parse", f"{_V}:86-106,471-495")
def _access_cidrs(k: KopsSpec) -> Iterator[str]:
    for key, path in (
        ("sshAccess", "spec.sshAccess"),
        ("kubernetesApiAccess", "spec.kubernetesAPIAccess"),
    ):
        for index, cidr in enumerate(k.spec.get(key) or []):
            if isinstance(cidr, str) and cidr.startswith("pl-"):
                if k.cloud_provider() != "aws":
                    yield invalid(f"{path}[{index}]", cidr, "Prefix List ID only supported for AWS")
                continue
            yield from parse_cidr(f"{path}[{index}]", cidr)[1]


@rule("api.loadBalancer.class only on AWS", f"{_V}:233-239")
def _lb_class(k: KopsSpec) -> Iterator[str]:
    lb = (k.spec.get("api") or {}).get("loadBalancer")
    if lb is not None and k.cloud_provider() != "aws" and lb.get("class"):
        yield forbidden("spec.api.loadBalancer.class", "class is only supported on AWS")


@rule("internal API load balancer needs a private subnet", f"{_V}:263-274")
def _lb_internal(k: KopsSpec) -> Iterator[str]:
    lb = (k.spec.get("api") or {}).get("loadBalancer") or {}
    if lb.get("type") == "Internal" and not any(s.get("type") == "Private" for s in k.subnets()):
        yield forbidden(
            "spec.api.loadBalancer.type",
            "Internal LoadBalancers must have at least one subnet of type Private",
        )


@rule("iam.legacy is not set", f"{_V}:281-284")
def _iam_legacy(k: KopsSpec) -> Iterator[str]:
    if (k.spec.get("iam") or {}).get("legacy"):
        yield forbidden("spec.iam.legacy", "legacy IAM permissions are no longer supported")


@rule("nonMasqueradeCIDR parses and is IPv4 or ::/0", f"{_V}:1044-1053")
def _non_masquerade(k: KopsSpec) -> Iterator[str]:
    value = k.spec.get("nonMasqueradeCIDR")
    if value:
        yield from parse_cidr("spec.networking.nonMasqueradeCIDR", value)[1]
        if ":" in str(value) and value != "::/0":
            yield forbidden(
                "spec.networking.nonMasqueradeCIDR",
                'IPv6 clusters must have a nonMasqueradeCIDR of "::/0"',
            )


@rule("podCIDR parses and lies inside nonMasqueradeCIDR", f"{_V}:1068-1085")
def _pod_cidr(k: KopsSpec) -> Iterator[str]:
    value = k.spec.get("podCIDR")
    if not value:
        return
    pods, errors = parse_cidr("spec.networking.podCIDR", value)
    yield from errors
    outer = k.cidr("nonMasqueradeCIDR")
    if pods is not None and outer is not None and not belongs_to(outer, pods):
        yield forbidden(
            "spec.networking.podCIDR",
            f'podCIDR "{pods}" must be a subnet of nonMasqueradeCIDR "{outer}"',
        )


@rule("serviceClusterIPRange parses", f"{_V}:1087-1096")
def _service_range(k: KopsSpec) -> Iterator[str]:
    value = k.spec.get("serviceClusterIPRange")
    if value:
        yield from parse_cidr("spec.networking.serviceClusterIPRange", value)[1]


@rule("at least one subnet", f"{_V}:541-544")
def _subnets_present(k: KopsSpec) -> Iterator[str]:
    if not k.subnets():
        yield required(
            "spec.networking.subnets", "must configure at least one subnet (use --zones)"
        )


@rule("subnet names are set and unique", f"{_V}:551-561,602-605")
def _subnet_names(k: KopsSpec) -> Iterator[str]:
    seen: set[str] = set()
    for index, subnet in enumerate(k.subnets()):
        name = subnet.get("name", "")
        if not name:
            yield required(f"spec.networking.subnets[{index}].name")
        elif name in seen:
            yield f'spec.networking.subnets[{index}].name: Duplicate value: "{name}"'
        seen.add(name)


@rule("GCE subnets have one region", f"{_V}:348-358,573-586")
def _subnet_region(k: KopsSpec) -> Iterator[str]:
    if k.cloud_provider() != "gce":
        return
    region = ""
    for index, subnet in enumerate(k.subnets()):
        if not subnet.get("region"):
            yield required(f"spec.networking.subnets[{index}].region", "region must be specified")
        elif not region:
            region = subnet["region"]
        elif subnet["region"] != region:
            yield forbidden(
                f"spec.networking.subnets[{index}].region", "clusters cannot span regions"
            )


_SUBNET_TYPES = ["Public", "Private", "DualStack", "Utility"]


@rule("subnet type is supported", f"{_V}:656-665")
def _subnet_type(k: KopsSpec) -> Iterator[str]:
    for index, subnet in enumerate(k.subnets()):
        kind = subnet.get("type", "")
        if kind not in _SUBNET_TYPES:
            yield not_supported(f"spec.networking.subnets[{index}].type", kind, _SUBNET_TYPES)
        elif kind == "DualStack" and ":" not in str(k.spec.get("nonMasqueradeCIDR", "")):
            yield forbidden(
                f"spec.networking.subnets[{index}].type",
                "subnet type DualStack may only be used in IPv6 clusters",
            )


@rule("subnet CIDR parses and overlaps neither pods nor Services", f"{_V}:614-638")
def _subnet_cidr(k: KopsSpec) -> Iterator[str]:
    pods, services = k.cidr("podCIDR"), k.cidr("serviceClusterIPRange")
    for index, subnet in enumerate(k.subnets()):
        if not subnet.get("cidr"):
            continue  # not required on GCE (validation.go:353-354)
        path = f"spec.networking.subnets[{index}].cidr"
        network, errors = parse_cidr(path, subnet["cidr"])
        yield from errors
        name, cidr = subnet.get("name", ""), subnet["cidr"]
        if overlap(network, pods):
            yield forbidden(
                path, f'subnet "{name}" cidr "{cidr}" must not overlap podCIDR "{pods}"'
            )
        if overlap(network, services):
            yield forbidden(
                path,
                f'subnet "{name}" cidr "{cidr}" must not overlap '
                f'serviceClusterIPRange "{services}"',
            )


@rule("topology.dns.type is supported", f"{_V}:528-536; pkg/apis/kops/topology.go:29-33")
def _dns_type(k: KopsSpec) -> Iterator[str]:
    dns = ((k.spec.get("topology") or {}).get("dns") or {}).get("type", "")
    if dns and dns not in ("Public", "Private", "None"):
        yield not_supported("spec.networking.topology.dns.type", dns, ["Public", "Private", "None"])


@rule("one networking option", f"{_V}:1192-1198")
def _one_network(k: KopsSpec) -> Iterator[str]:
    options = sorted(k.spec.get("networking") or {})
    if len(options) > 1:
        for option in options:
            yield forbidden(
                f"spec.networking.{option}",
                f"only one networking option permitted, found {', '.join(options)}",
            )


@rule("Cilium NodePort needs kube-proxy disabled", f"{_V}:1248-1250")
def _cilium_kube_proxy(k: KopsSpec) -> Iterator[str]:
    cilium = (k.spec.get("networking") or {}).get("cilium")
    proxy = k.spec.get("kubeProxy")
    if cilium and cilium.get("enableNodePort") and proxy is not None and proxy.get("enabled", True):
        # kops builds the path from the root "spec" and adds "spec" again (sic).
        yield forbidden(
            "spec.spec.kubeProxy.enabled",
            "When Cilium NodePort is enabled, kubeProxy must be disabled",
        )


@rule(
    "secure metrics-server needs cert-manager",
    f"{_V}:1960-1968; pkg/model/components/context.go:186-188",
)
def _metrics_server(k: KopsSpec) -> Iterator[str]:
    server = k.spec.get("metricsServer") or {}
    cert_manager = (k.spec.get("certManager") or {}).get("enabled", False)
    if server.get("enabled") and not server.get("insecure") and not cert_manager:
        yield forbidden(
            "spec.metricsServer.insecure",
            "Secure metrics server requires that cert manager is enabled",
        )


@rule("etcd clusters are declared", f"{_V}:188-193")
def _etcd_present(k: KopsSpec) -> Iterator[str]:
    if not k.spec.get("etcdClusters"):
        yield required("spec.etcdClusters")


_ETCD_NAMES = ["cilium", "main", "events"]


@rule("etcd cluster names are supported", f"{_V}:1418")
def _etcd_names(k: KopsSpec) -> Iterator[str]:
    for index, etcd in enumerate(k.spec.get("etcdClusters") or []):
        if etcd.get("name", "") not in _ETCD_NAMES:
            yield not_supported(
                f"spec.etcdClusters[{index}].name", etcd.get("name", ""), _ETCD_NAMES
            )


@rule("etcd cluster names are unique", f"{_V}:1437-1449")
def _etcd_unique(k: KopsSpec) -> Iterator[str]:
    names = [etcd.get("name") for etcd in k.spec.get("etcdClusters") or []]
    for _ in range(len(names) - len(set(names))):
        yield forbidden(
            "spec.etcdClusters[0].backupStore",
            "the backup store must be unique for each etcd cluster",
        )


@rule("etcd clusters have an odd number of members", f"{_V}:1423-1428")
def _etcd_quorum(k: KopsSpec) -> Iterator[str]:
    for index, etcd in enumerate(k.spec.get("etcdClusters") or []):
        members = etcd.get("etcdMembers") or []
        path = f"spec.etcdClusters[{index}].etcdMembers"
        if not members:
            yield required(path, "No members defined in etcd cluster")
        elif len(members) % 2 == 0:
            yield invalid(
                path,
                len(members),
                "Should be an odd number of control-plane-zones for quorum. Use --zones and "
                "--control-plane-zones to declare node zones and control-plane zones separately",
            )


@rule("etcd members name an instance group", f"{_V}:1564-1576")
def _etcd_members(k: KopsSpec) -> Iterator[str]:
    for index, etcd in enumerate(k.spec.get("etcdClusters") or []):
        for number, member in enumerate(etcd.get("etcdMembers") or []):
            path = f"spec.etcdClusters[{index}].etcdMembers[{number}]"
            if not member.get("name"):
                yield required(f"{path}.name", "etcdMember did not have name")
            if not member.get("instanceGroup"):
                yield required(f"{path}.instanceGroup", "etcdMember did not have instanceGroup")


# --- InstanceGroups ---------------------------------------------------------------------

# v1alpha2 spells ControlPlane "Master" (pkg/apis/kops/v1alpha2/conversion.go:692-694).
_ROLES = {"Master": "ControlPlane", "ControlPlane": "ControlPlane", "APIServer": "APIServer",
          "Node": "Node", "Bastion": "Bastion"}  # fmt: skip


def _role(group: Spec) -> str:
    role = (group.get("spec") or {}).get("role", "")
    return _ROLES.get(role, role)


@rule("instance groups are named", f"{_VIG}:56-58")
def _group_named(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        if not (group.get("metadata") or {}).get("name"):
            yield required("objectMeta.name")


@rule("instance group role is supported", f"{_VIG}:60-82; pkg/apis/kops/instancegroup.go:69-74")
def _group_role(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        role = _role(group)
        if role == "":
            yield required("spec.role", "Role must be set")
        elif role not in _ROLES.values():
            yield not_supported("spec.role", role, ["ControlPlane", "APIServer", "Node", "Bastion"])


@rule("control-plane groups have one instance and a subnet", f"{_VIG}:63-72")
def _control_plane_size(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        if _role(group) != "ControlPlane":
            continue
        spec = group.get("spec") or {}
        if not spec.get("subnets"):
            yield required(
                "spec.subnets", "controlPlane InstanceGroup must specify at least one Subnet"
            )
        if (spec.get("minSize") or 0) > 1:
            yield invalid(
                "spec.minSize",
                spec["minSize"],
                "controlPlane InstanceGroup must have minSize set to 1",
            )
        if (spec.get("maxSize") or 0) > 1:
            yield invalid(
                "spec.maxSize",
                spec["maxSize"],
                "controlPlane InstanceGroup must have maxSize set to 1, "
                "add more InstanceGroups instead",
            )


@rule("maxSize is at least minSize", f"{_VIG}:98-102")
def _group_sizes(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        spec = group.get("spec") or {}
        low, high = spec.get("minSize"), spec.get("maxSize")
        if isinstance(low, int) and isinstance(high, int) and high < low:
            yield forbidden("spec.maxSize", "maxSize must be greater than or equal to minSize.")


@rule("instance groups name an image", f"{_VIG}:104-106")
def _group_image(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        if not (group.get("spec") or {}).get("image"):
            yield forbidden("spec.image", "image must be specified.")


@rule("GCE instance groups name zones", f"{_VGCE}:48-50")
def _group_zones(k: KopsSpec) -> Iterator[str]:
    if k.cloud_provider() != "gce":
        return
    for group in k.groups:
        if not (group.get("spec") or {}).get("zones"):
            yield required("spec.zones", "zones should be specified")


@rule("instance group subnets exist in the cluster", f"{_VIG}:265-278")
def _group_subnets(k: KopsSpec) -> Iterator[str]:
    names = {s.get("name") for s in k.subnets()}
    for group in k.groups:
        for index, subnet in enumerate((group.get("spec") or {}).get("subnets") or []):
            if subnet not in names:
                yield not_found(f"spec.networking.subnets[{index}]", subnet)


@rule("control-plane groups are members of every etcd cluster", f"{_VIG}:252-254,313-328")
def _group_etcd(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        if _role(group) != "ControlPlane":
            continue
        name = (group.get("metadata") or {}).get("name", "")
        for etcd in k.spec.get("etcdClusters") or []:
            if not any(m.get("instanceGroup") == name for m in etcd.get("etcdMembers") or []):
                yield forbidden(
                    "spec.metadata.name",
                    f'InstanceGroup "{name}" with role ControlPlane must have a member in '
                    f'etcd cluster "{etcd.get("name")}"',
                )


@rule("node labels have at most one slash", f"{_VIG}:173-175,373-380")
def _node_labels(k: KopsSpec) -> Iterator[str]:
    for group in k.groups:
        for key in (group.get("spec") or {}).get("nodeLabels") or {}:
            if key.count("/") > 1:
                yield invalid("spec.nodeLabels", key, "Node label may only contain a single slash")
