"""The CloudNativePG objects: valid for their CRDs, and shaped the way issue 13 promises.

Schemas come from the pinned CRDs (tests/k8s/crd.py). Each rule the checker applies has
a negative case below, so a checker that accepts everything fails here.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conduit_deploy.render import render

from tests.k8s.crd import crd_errors
from tests.k8s.support import RenderedEnv, labels_match, load_all, sample_values
from tests.k8s.test_schemas import is_builtin

CUSTOM_KINDS = ("Cluster", "ScheduledBackup", "ObjectStore")


def database_objects(env: RenderedEnv) -> dict[str, dict]:
    return {kind: env.one(kind) for kind in CUSTOM_KINDS}


# --- schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CUSTOM_KINDS)
def test_rendered_object_is_valid_for_its_crd(env, kind):
    assert crd_errors(env.one(kind)) == []


def test_the_database_stage_holds_the_cloudnativepg_objects(env):
    # Their CRD validation for every stage: tests/k8s/test_schemas.py.
    database = load_all(dict(env.rendered.stages)["database"])
    custom = [o["kind"] for o in database if not is_builtin(o)]
    assert sorted(custom) == sorted(CUSTOM_KINDS)


def _broken(env: RenderedEnv, kind: str, path: list[str], value: object) -> dict:
    obj = copy.deepcopy(env.one(kind))
    target = obj
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return obj


# Each case breaks one rule of the CRD; the comment names the rule's place in the file.
NEGATIVE_CASES = [
    # postgresql.cnpg.io_clusters.yaml, spec.instances: minimum 1
    ("Cluster", ["spec", "instances"], 0, "spec.instances"),
    # postgresql.cnpg.io_clusters.yaml, spec.postgresql.synchronous.method: enum any, first
    (
        "Cluster",
        ["spec", "postgresql", "synchronous"],
        {"method": "quorum", "number": 1},
        "spec.postgresql.synchronous.method",
    ),
    # postgresql.cnpg.io_clusters.yaml, spec.primaryUpdateMethod: enum switchover, restart
    ("Cluster", ["spec", "primaryUpdateMethod"], "failover", "spec.primaryUpdateMethod"),
    # postgresql.cnpg.io_clusters.yaml, spec.postgresql.synchronous.failoverQuorum: boolean
    (
        "Cluster",
        ["spec", "postgresql", "synchronous"],
        {"method": "any", "number": 1, "failoverQuorum": "true"},
        "spec.postgresql.synchronous.failoverQuorum",
    ),
    # failoverQuorum lives under spec.postgresql.synchronous in 1.30, not in spec
    ("Cluster", ["spec", "failoverQuorum"], True, "failoverQuorum"),
    # A misspelt field (strict field validation of kubectl apply)
    ("Cluster", ["spec", "enablePodDisruptionBudget"], False, "enablePodDisruptionBudget"),
    # postgresql.cnpg.io_scheduledbackups.yaml, spec.method: enum
    # barmanObjectStore, volumeSnapshot, plugin
    ("ScheduledBackup", ["spec", "method"], "barman", "spec.method"),
    # postgresql.cnpg.io_scheduledbackups.yaml, spec: required cluster, schedule
    ("ScheduledBackup", ["spec", "schedule"], None, "spec.schedule"),
    # barmancloud.cnpg.io_objectstores.yaml, spec.retentionPolicy: pattern ^[1-9][0-9]*[dwm]$
    ("ObjectStore", ["spec", "retentionPolicy"], "30 days", "spec.retentionPolicy"),
    # barmancloud.cnpg.io_objectstores.yaml, googleCredentials.applicationCredentials:
    # required key, name
    (
        "ObjectStore",
        ["spec", "configuration", "googleCredentials", "applicationCredentials"],
        {"name": "conduit-backup-gcs"},
        "applicationCredentials",
    ),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "where"),
    NEGATIVE_CASES,
    ids=[f"{c[0]}-{c[3]}" for c in NEGATIVE_CASES],
)
def test_checker_rejects_what_the_crd_forbids(rendered_envs, kind, path, value, where):
    obj = _broken(rendered_envs["prod"], kind, path, value)
    if value is None:
        del obj["spec"][path[-1]]
    errors = crd_errors(obj)
    assert errors, f"{kind} with {'.'.join(path)}={value!r} passed"
    assert any(where.rsplit(".", 1)[-1] in error for error in errors), errors


def test_a_kind_without_a_pinned_crd_fails(rendered_envs):
    pooler = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Pooler",
        "metadata": {"name": "conduit-pooler"},
        "spec": {},
    }
    [error] = crd_errors(pooler)
    assert "no pinned CRD schema" in error


def test_an_unserved_version_has_no_schema(rendered_envs):
    cluster = copy.deepcopy(rendered_envs["dev"].one("Cluster"))
    cluster["apiVersion"] = "postgresql.cnpg.io/v2"
    [error] = crd_errors(cluster)
    assert "no pinned CRD schema" in error


# --- topology -------------------------------------------------------------------------


def test_prod_runs_three_instances_one_per_zone_with_a_synchronous_standby(rendered_envs):
    spec = rendered_envs["prod"].one("Cluster")["spec"]
    assert spec["instances"] == 3
    # replication.md, "Quorum-based Synchronous Replication" and "Required Data
    # Durability": ANY 1 of the two standbys; writes wait rather than go unreplicated.
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
        "failoverQuorum": True,
    }
    assert spec["affinity"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec.get("enablePDB", True) is True  # the operator's PDBs guard the primary


def failover_loss_risks(cluster: dict) -> list[str]:
    """How a failover of this Cluster could lose an acknowledged commit; none if it cannot.

    CloudNativePG 1.30, docs/src/replication.md ("Data Durability and Synchronous
    Replication") and docs/src/failover.md ("Failover Quorum"): synchronous replication
    makes a commit wait for its standbys; `dataDurability: required` keeps it waiting
    when they are down; quorum failover promotes a standby only when R + W > N, so the
    promoted one holds every synchronous commit.
    """
    synchronous = cluster["spec"].get("postgresql", {}).get("synchronous")
    if not synchronous:
        return ["asynchronous replication: a promoted standby may lack acknowledged commits"]
    risks = []
    if synchronous.get("dataDurability", "required") != "required":
        risks.append("dataDurability preferred: with its standbys down the primary alone acks")
    if synchronous.get("failoverQuorum") is not True:
        risks.append(
            "no failoverQuorum: a standby without every synchronous commit may be promoted"
        )
    return risks


def test_no_failover_in_prod_can_lose_an_acknowledged_commit(rendered_envs):
    cluster = rendered_envs["prod"].one("Cluster")
    assert crd_errors(cluster) == []
    assert failover_loss_risks(cluster) == []


@pytest.mark.parametrize(
    ("change", "risk"),
    [
        ({"failoverQuorum": None}, "no failoverQuorum"),
        ({"failoverQuorum": False}, "no failoverQuorum"),
        ({"dataDurability": "preferred"}, "dataDurability preferred"),
    ],
)
def test_the_failover_check_finds_each_risk(rendered_envs, change, risk):
    cluster = copy.deepcopy(rendered_envs["prod"].one("Cluster"))
    synchronous = cluster["spec"]["postgresql"]["synchronous"]
    for key, value in change.items():
        if value is None:
            del synchronous[key]
        else:
            synchronous[key] = value
    assert crd_errors(cluster) == []  # valid for the CRD, yet it may lose commits
    [found] = failover_loss_risks(cluster)
    assert found.startswith(risk)


def test_the_failover_check_finds_asynchronous_replication(rendered_envs):
    cluster = copy.deepcopy(rendered_envs["prod"].one("Cluster"))
    del cluster["spec"]["postgresql"]["synchronous"]
    assert failover_loss_risks(cluster)[0].startswith("asynchronous replication")


def test_dev_runs_one_instance_that_a_drain_may_stop(rendered_envs):
    spec = rendered_envs["dev"].one("Cluster")["spec"]
    assert spec["instances"] == 1
    assert "synchronous" not in spec.get("postgresql", {})
    # With one instance the operator's primary PDB would block every node drain.
    assert spec["enablePDB"] is False


def test_prod_zones_are_enough_for_the_instances(rendered_envs):
    env = rendered_envs["prod"]
    workers = [
        ig for ig in env.kops if ig["kind"] == "InstanceGroup" and ig["spec"].get("role") == "Node"
    ]
    zones = {zone for ig in workers for zone in ig["spec"]["zones"]}
    assert len(zones) >= env.one("Cluster")["spec"]["instances"]


def test_updates_and_drains_switch_over_instead_of_restarting_the_primary(env):
    spec = env.one("Cluster")["spec"]
    assert spec["primaryUpdateStrategy"] == "unsupervised"
    assert spec["primaryUpdateMethod"] == "switchover"


def test_no_hand_written_disruption_budget_for_the_database(env):
    # The operator creates and updates the database's PDBs itself (enablePDB).
    assert [
        p["metadata"]["name"]
        for p in env.find("PodDisruptionBudget")
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == "database"
    ] == []


def test_instances_reachable_from_api_operator_and_each_other_only(env):
    policy = env.one("NetworkPolicy", "postgres-ingress")
    # The pods of the Cluster, whatever its name, carry its inheritedMetadata labels.
    inherited = env.one("Cluster")["spec"]["inheritedMetadata"]["labels"]
    assert labels_match(policy["spec"]["podSelector"], inherited)
    api_pod = env.one("Deployment", "conduit")["spec"]["template"]["metadata"]["labels"]
    rules = policy["spec"]["ingress"]
    from_api = [
        r
        for r in rules
        if any(
            labels_match(peer.get("podSelector", {}), api_pod) and "namespaceSelector" not in peer
            for peer in r["from"]
        )
    ]
    assert [[p["port"] for p in r["ports"]] for r in from_api] == [[5432]]
    operator = [
        r
        for r in rules
        if any(
            peer.get("namespaceSelector", {})
            .get("matchLabels", {})
            .get("kubernetes.io/metadata.name")
            == "cnpg-system"
            for peer in r["from"]
        )
    ]
    assert sorted(p["port"] for r in operator for p in r["ports"]) == [5432, 8000]


# --- roles and credentials -----------------------------------------------------------


def _secret_named(env: RenderedEnv, name: str) -> dict:
    return env.one("Secret", name)


def test_the_app_role_owns_the_database_and_is_managed_from_the_secret(env):
    spec = env.one("Cluster")["spec"]
    initdb = spec["bootstrap"]["initdb"]
    [role] = spec["managed"]["roles"]
    assert role["name"] == initdb["owner"] == env.values.db_user
    assert role["login"] is True
    assert role["ensure"] == "present"
    assert not role.get("superuser")
    assert not role.get("createrole")
    # Both name the Secret the deploy tool generated in this render (hash suffix and all).
    assert role["passwordSecret"]["name"] == initdb["secret"]["name"]
    _secret_named(env, role["passwordSecret"]["name"])


def test_a_new_password_reaches_the_managed_role(rendered_envs, tmp_path: Path):
    """Rotation: a new DB_PASSWORD is a new Secret, and the Cluster's role points at it.

    The operator keeps the Secret's resourceVersion per role in
    status.managedRolesStatus.passwordStatus (postgresql.cnpg.io_clusters.yaml) and
    runs ALTER ROLE ... PASSWORD when the referenced Secret changes; the new name
    makes that change part of the applied spec, so it is never missed.
    """
    before = rendered_envs["dev"]
    values = replace(before.values, db_password="rotated-" + before.values.db_password)
    result = render(values, tmp_path)
    after = [o for _, path in result.stages for o in load_all(path)]
    old_ref = before.one("Cluster")["spec"]["managed"]["roles"][0]["passwordSecret"]["name"]
    [cluster] = [o for o in after if o["kind"] == "Cluster"]
    new_ref = cluster["spec"]["managed"]["roles"][0]["passwordSecret"]["name"]
    assert new_ref != old_ref
    assert new_ref in {o["metadata"]["name"] for o in after if o["kind"] == "Secret"}


# --- backups ---------------------------------------------------------------------------


def test_wal_is_archived_to_the_object_store_the_backups_use(env):
    objects = database_objects(env)
    cluster, store = objects["Cluster"], objects["ObjectStore"]
    schedule = objects["ScheduledBackup"]
    [plugin] = cluster["spec"]["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io"
    assert plugin["isWALArchiver"] is True
    assert plugin["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    assert schedule["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert schedule["spec"]["method"] == "plugin"
    assert schedule["spec"]["pluginConfiguration"]["name"] == plugin["name"]
    # Without a first base backup there is nothing to restore until the first night.
    assert schedule["spec"]["immediate"] is True


def test_backups_are_kept_for_a_retention_window(env):
    assert env.one("ObjectStore")["spec"]["retentionPolicy"] == "30d"


def test_backups_go_to_gcs_with_a_dedicated_key(env):
    configuration = env.one("ObjectStore")["spec"]["configuration"]
    assert configuration["destinationPath"].startswith("gs://")
    credentials = configuration["googleCredentials"]["applicationCredentials"]
    # Not the CI's admin key: a Secret of its own, for a bucket-only service account.
    assert credentials["name"] not in {"conduit-app", "postgres-credentials"}


def test_archive_timeout_bounds_the_rpo_of_a_restore(env):
    timeout = env.one("Cluster")["spec"]["postgresql"]["parameters"]["archive_timeout"]
    assert timeout == "60s"


def test_database_volumes_per_environment(rendered_envs):
    dev = rendered_envs["dev"].one("Cluster")["spec"]["storage"]
    prod = rendered_envs["prod"].one("Cluster")["spec"]["storage"]
    assert dev == {"size": "5Gi", "storageClass": "standard-csi"}
    assert prod["size"] == "50Gi"
    # One disk per instance, each kept when its claim (or the namespace) is deleted.
    storage_class = rendered_envs["prod"].one("StorageClass", prod["storageClass"])
    assert storage_class["parameters"]["type"] == "pd-ssd"
    assert storage_class["reclaimPolicy"] == "Retain"
    assert storage_class["allowVolumeExpansion"] is True
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"


def test_each_environment_archives_to_its_own_bucket_and_folder(env):
    destination = env.one("ObjectStore")["spec"]["configuration"]["destinationPath"]
    assert destination == f"gs://{env.values.backup_bucket}/{env.environment}"


def test_role_secret_has_the_shape_cloudnativepg_reads(env):
    # postgresql.cnpg.io_clusters.yaml, managed.roles[].passwordSecret: "must follow the
    # kubernetes.io/basic-auth format and contain both a username and a password field".
    name = env.one("Cluster")["spec"]["managed"]["roles"][0]["passwordSecret"]["name"]
    secret = env.one("Secret", name)
    assert secret["type"] == "kubernetes.io/basic-auth"
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"username": env.values.db_user, "password": env.values.db_password}


def test_backup_key_reaches_only_the_object_store(env):
    credentials = env.one("ObjectStore")["spec"]["configuration"]["googleCredentials"]
    reference = credentials["applicationCredentials"]
    secret = env.one("Secret", reference["name"])
    assert base64.b64decode(secret["data"][reference["key"]]).decode() == env.values.backup_key
    # The API pods never see it.
    text = yaml.safe_dump(env.one("Deployment", "conduit"))
    assert reference["name"] not in text


def test_a_renamed_cluster_takes_the_app_and_the_backups_with_it(repo_copy, tmp_path):
    """The restore runbook's last step renames the Cluster in the overlay."""
    overlay = repo_copy / "k8s" / "overlays" / "prod"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["patches"].append(
        {
            "target": {"kind": "Cluster", "name": "conduit-db"},
            "patch": "- op: replace\n  path: /metadata/name\n  value: conduit-db-r1\n",
        }
    )
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    values = sample_values("prod")
    result = render(values, tmp_path)
    objects = [o for _, path in result.stages for o in load_all(path)]
    [cluster] = [o for o in objects if o["kind"] == "Cluster"]
    [schedule] = [o for o in objects if o["kind"] == "ScheduledBackup"]
    [app_secret] = [o for o in objects if o["kind"] == "Secret" and "DATABASE_URL" in o["data"]]
    url = base64.b64decode(app_secret["data"]["DATABASE_URL"]).decode()
    assert cluster["metadata"]["name"] == result.database_cluster == "conduit-db-r1"
    assert schedule["spec"]["cluster"]["name"] == "conduit-db-r1"
    assert "@conduit-db-r1-rw:5432/" in url
    assert cluster["spec"]["bootstrap"]["initdb"]["owner"] == values.db_user


IMPORT_PATCH = """\
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: conduit-db
spec:
  bootstrap:
    initdb:
      import:
        type: microservice
        databases: [conduit]
        source: {externalCluster: old-postgres}
  externalClusters:
    - name: old-postgres
      connectionParameters: {host: postgres, user: conduit, dbname: conduit}
      password: {name: postgres-credentials-5f6g7h8k9m, key: POSTGRES_PASSWORD}
"""


def test_the_migration_import_from_the_statefulset_renders_and_validates(repo_copy, tmp_path):
    """k8s/README.md, "Migrating from the StatefulSet": the import bootstrap it shows."""
    overlay = repo_copy / "k8s" / "overlays" / "prod"
    (overlay / "import.yaml").write_text(IMPORT_PATCH)
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["patches"].append({"path": "import.yaml"})
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = render(sample_values("prod"), tmp_path)
    [cluster] = [o for _, p in result.stages for o in load_all(p) if o["kind"] == "Cluster"]
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    # The import joins the committed initdb: same database, owner and role Secret.
    assert initdb["import"]["source"] == {"externalCluster": "old-postgres"}
    assert initdb["database"] == "conduit"
    assert initdb["secret"]["name"].startswith("postgres-credentials-")
    [source] = cluster["spec"]["externalClusters"]
    # The old StatefulSet's headless Service.
    assert source["connectionParameters"]["host"] == "postgres"
    assert crd_errors(cluster) == []
