"""render(): the files the deploy tool applies, and clear failures on bad input."""

from __future__ import annotations

import base64
import stat
from dataclasses import fields, replace

import pytest
import yaml
from conduit_deploy import render as render_module
from conduit_deploy.render import (
    ENVOY_GATEWAY_MANIFEST_URL,
    RenderError,
    render,
    render_kops,
)
from sqlalchemy.engine import make_url

from tests.k8s.support import (
    K8S,
    SAMPLE_IMAGE,
    SAMPLE_PROD_HOST,
    SAMPLE_VERSION,
    load_all,
    sample_values,
)


def test_stages_come_in_apply_order(env):
    assert [name for name, _ in env.rendered.stages] == [
        "namespace",
        "secrets",
        "database",
        "app",
        "ingress",
    ]
    for _, path in env.rendered.stages:
        assert path.is_file()


def test_each_stage_holds_its_objects(env):
    kinds = {name: sorted(o["kind"] for o in load_all(path)) for name, path in env.rendered.stages}
    assert kinds["namespace"] == ["Namespace", "NetworkPolicy"]
    # app, database role, backup key, image pull
    assert kinds["secrets"] == ["Secret", "Secret", "Secret", "Secret"]
    assert {"Cluster", "ObjectStore", "ScheduledBackup", "NetworkPolicy"} <= set(kinds["database"])
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= set(
        kinds["app"]
    )
    edge = {"BackendTrafficPolicy", "ClientTrafficPolicy", "Gateway", "HTTPRoute"}
    assert set(kinds["ingress"]) == edge | (
        {"Certificate", "Issuer", "NetworkPolicy"} if env.environment == "prod" else set()
    )


def test_rendered_names_are_the_objects_the_deploy_tool_waits_on(env):
    rendered = env.rendered
    assert env.one("Namespace")["metadata"]["name"] == rendered.namespace
    assert env.one("Deployment")["metadata"]["name"] == rendered.app_deployment
    assert env.one("Gateway")["metadata"]["name"] == rendered.gateway_name
    assert rendered.gateway_class_file.is_file()
    namespaced = [o for o in env.objects if o["kind"] not in ("Namespace", "StorageClass")]
    assert {o["metadata"].get("namespace") for o in namespaced} == {rendered.namespace}


def test_the_edge_is_a_pinned_envoy_gateway_release(env):
    rendered = env.rendered
    assert rendered.edge_manifest_url == ENVOY_GATEWAY_MANIFEST_URL
    assert "/releases/download/v1.9.0/install.yaml" in rendered.edge_manifest_url
    assert len(rendered.edge_manifest_sha256) == 64
    assert (rendered.edge_namespace, rendered.edge_deployment) == (
        "envoy-gateway-system",
        "envoy-gateway",
    )


def test_prod_serves_its_host_name_and_dev_the_bare_address(rendered_envs):
    prod, dev = rendered_envs["prod"].rendered, rendered_envs["dev"].rendered
    assert (prod.public_host, prod.certificate_name) == (SAMPLE_PROD_HOST, "conduit-tls")
    assert (dev.public_host, dev.certificate_name) == ("", "")
    text = dict(prod.stages)["ingress"].read_text()
    assert "prod-host.invalid" not in text
    assert text.count(SAMPLE_PROD_HOST) == 4  # listener, two routes, certificate


def test_prod_without_a_host_name_is_refused(tmp_path):
    with pytest.raises(RenderError, match="set PROD_HOST"):
        render(sample_values("prod", public_host=None), tmp_path)


def test_a_host_name_for_dev_is_refused(tmp_path):
    with pytest.raises(RenderError, match="unset PROD_HOST for dev"):
        render(sample_values("dev", public_host="conduit.example.org"), tmp_path)


def test_secrets_file_is_readable_by_its_owner_only(env):
    path = dict(env.rendered.stages)["secrets"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_file_stays_private_when_it_existed_before(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "02-secrets.yaml").write_text("old")
    (target / "02-secrets.yaml").chmod(0o644)
    render(sample_values("dev"), target)
    assert stat.S_IMODE((target / "02-secrets.yaml").stat().st_mode) == 0o600


def test_release_image_and_version_reach_the_api_pods_only(env):
    deployment = env.one("Deployment")
    template = deployment["spec"]["template"]
    assert {
        c["image"] for c in template["spec"]["initContainers"] + template["spec"]["containers"]
    } == {SAMPLE_IMAGE}
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == SAMPLE_VERSION
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == SAMPLE_VERSION
    # The selector is immutable: a version in it would make the next release fail to apply.
    assert "app.kubernetes.io/version" not in deployment["spec"]["selector"]["matchLabels"]
    # A version label on PostgreSQL's pods would restart the database on every release.
    cluster = env.one("Cluster")
    assert "app.kubernetes.io/version" not in cluster["metadata"]["labels"]
    assert "app.kubernetes.io/version" not in cluster["spec"]["inheritedMetadata"]["labels"]
    # The app reads its version from that label.
    for container in template["spec"]["initContainers"] + template["spec"]["containers"]:
        [variable] = [v for v in container["env"] if v["name"] == "CONDUIT_VERSION"]
        field = variable["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.labels['app.kubernetes.io/version']"


def test_a_new_release_reuses_the_config_map(tmp_path):
    """Only settings changes make a new ConfigMap; a release changes image and label."""
    first = render(sample_values("dev"), tmp_path / "a")
    second = render(sample_values("dev", version="1.5.0", image=SAMPLE_IMAGE + "x"), tmp_path / "b")

    def config_names(rendered):
        app = load_all(dict(rendered.stages)["app"])
        return [o["metadata"]["name"] for o in app if o["kind"] == "ConfigMap"]

    assert config_names(first) == config_names(second)


def test_database_url_points_at_the_read_write_service(env):
    secret = next(s for s in env.find("Secret") if "DATABASE_URL" in s["data"])
    url = make_url(base64.b64decode(secret["data"]["DATABASE_URL"]).decode())
    cluster = env.one("Cluster")
    assert url.drivername == "postgresql+psycopg"
    # The operator's Service that always leads to the current primary.
    assert (url.host, url.port) == (f"{cluster['metadata']['name']}-rw", 5432)
    assert (url.username, url.password) == (env.values.db_user, env.values.db_password)
    assert url.database == cluster["spec"]["bootstrap"]["initdb"]["database"]


def test_password_with_url_special_characters_survives(tmp_path):
    password = "p@ss:w/rd?#%&=+ x" + "0" * 8
    rendered = render(sample_values("dev", db_password=password), tmp_path)
    secrets = load_all(dict(rendered.stages)["secrets"])
    app = next(s for s in secrets if "DATABASE_URL" in s["data"])
    db = next(s for s in secrets if s["type"] == "kubernetes.io/basic-auth")
    assert make_url(base64.b64decode(app["data"]["DATABASE_URL"]).decode()).password == password
    assert base64.b64decode(db["data"]["password"]).decode() == password


def test_changed_secret_gets_a_new_name_so_pods_roll(tmp_path):
    first = render(sample_values("dev"), tmp_path / "a")
    second = render(sample_values("dev"), tmp_path / "b")  # new random secrets

    def secret_names(rendered):
        return sorted(s["metadata"]["name"] for s in load_all(dict(rendered.stages)["secrets"]))

    assert secret_names(first) != secret_names(second)
    referenced = yaml.safe_dump(load_all(dict(second.stages)["app"]))
    for name in secret_names(second):
        if name.startswith("conduit-app-"):
            assert name in referenced


def test_unknown_environment_names_the_known_ones(tmp_path):
    with pytest.raises(RenderError, match=r"unknown environment 'staging' \(known: dev, prod\)"):
        render(sample_values("staging"), tmp_path)


@pytest.mark.parametrize("field", [f.name for f in fields(render_module.RenderValues)])
def test_empty_value_is_refused_by_name(tmp_path, field):
    with pytest.raises(RenderError, match=f"must not be empty: {field}$"):
        render(replace(sample_values("dev"), **{field: "  "}), tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written for refused values"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image", "conduit", "repository:tag"),
        ("image", "Registry/Conduit:1", "repository:tag"),
        ("version", "1.0.0+build.5", "label value"),
    ],
)
def test_unusable_composed_value_is_refused_with_the_reason(tmp_path, field, value, message):
    # The values of CI variables are refused by their own rules, when the settings are
    # read: tests/deploy/test_config.py.
    with pytest.raises(RenderError, match=message):
        render(replace(sample_values("dev"), **{field: value}), tmp_path)


def test_image_digest_is_kept(tmp_path):
    digest = "sha256:" + "a" * 64
    rendered = render(sample_values("dev", image=f"{SAMPLE_IMAGE}@{digest}"), tmp_path)
    deployment = next(
        o for o in load_all(dict(rendered.stages)["app"]) if o["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + digest)


def test_values_repr_hides_secrets():
    values = sample_values("dev")
    assert values.db_password not in repr(values)
    assert values.conduit_secret not in repr(values)


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_every_kops_variable_is_required(environment):
    template = K8S / "kops" / "cluster.yaml.j2"
    context = {
        **yaml.safe_load((K8S / "kops" / "values" / f"{environment}.yaml").read_text()),
        "cluster_name": "c.k8s.local",
        "kops_state_store": "gs://b",
        "gcp_project": "project-1",
        "api_access_cidrs": ["203.0.113.0/24"],
    }
    assert "kind: Cluster" in render_kops(template, context)
    for name in context:
        partial = {k: v for k, v in context.items() if k != name}
        with pytest.raises(RenderError, match=f"variable '{name}' not set"):
            render_kops(template, partial)


def test_kustomize_failure_is_one_clear_line(repo_copy, tmp_path):
    (repo_copy / "k8s" / "overlays" / "dev" / "app-replicas.yaml").unlink()
    with pytest.raises(RenderError) as raised:
        render(sample_values("dev"), tmp_path / "out")
    message = str(raised.value)
    assert "\n" not in message
    assert "kubectl kustomize" in message
    assert "app-replicas.yaml" in message


def test_missing_kops_value_names_the_variable(repo_copy, tmp_path):
    values_file = repo_copy / "k8s" / "kops" / "values" / "prod.yaml"
    values = yaml.safe_load(values_file.read_text())
    del values["node_machine_type"]
    values_file.write_text(yaml.safe_dump(values))
    with pytest.raises(RenderError, match="variable 'node_machine_type' not set"):
        render(sample_values("prod"), tmp_path / "out")


def test_object_without_a_stage_is_refused(repo_copy, tmp_path):
    base = repo_copy / "k8s" / "base"
    (base / "stray.yaml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: stray\n"
    )
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    kustomization["resources"].append("stray.yaml")
    (base / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    with pytest.raises(
        RenderError, match=r"ServiceAccount/stray has no known app\.kubernetes\.io/component"
    ):
        render(sample_values("dev"), tmp_path / "out")


def test_monitoring_is_rendered_when_present(repo_copy, tmp_path):
    assert render(sample_values("dev"), tmp_path / "without").monitoring_file is None
    monitoring = repo_copy / "k8s" / "monitoring"
    monitoring.mkdir()
    (monitoring / "dashboard.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: conduit-dashboard\n  namespace: conduit\n"
        "data:\n  conduit.json: '{}'\n"
    )
    (monitoring / "kustomization.yaml").write_text("resources:\n  - dashboard.yaml\n")
    # Its objects need the stack's CRDs: no monitoring objects without the stack's values.
    with pytest.raises(RenderError, match="k8s/monitoring has no kube-prometheus-stack-values"):
        render(sample_values("dev"), tmp_path / "with")
    (monitoring / "kube-prometheus-stack-values.yaml").write_text("grafana: {}\n")
    rendered = render(sample_values("dev"), tmp_path / "with")
    assert rendered.monitoring_file is not None
    assert rendered.monitoring_stack_values == monitoring / "kube-prometheus-stack-values.yaml"
    assert [o["metadata"]["name"] for o in load_all(rendered.monitoring_file)] == [
        "conduit-dashboard"
    ]
