"""Review apps (conduit_deploy.review): `review deploy`, `review stop`, `review sweep` and
`pack --review`, with the recording runner and the fake clock; `kubectl kustomize` runs
for real, every command that would reach a cluster is answered from a script."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime

import pytest
import yaml
from conduit_deploy import config, review
from conduit_deploy.cli import Context, main
from conduit_deploy.errors import SmokeFailed
from conduit_deploy.runner import Result, find_program

from tests.k8s.crd import crd_errors
from tests.k8s.support import load_all
from tests.k8s.test_schemas import is_builtin, schema_errors

from .support import REGISTRY_PASSWORD, ci_environ

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
REVIEW_SECRET = "review-secret-0123456789abcdef0123456789"
KUBECONFIG = (
    "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster: {server: https://203.0.113.1}\n"
    "users:\n- name: review\n  user: {token: not-a-real-token}\n"
)
ADDRESS = "203.0.113.7"
# The kubernetes version of k8s/kops/values/dev.yaml (schemas of what the review renders).
KUBERNETES_VERSION = "1.35.5"


def mr_environ(**overrides: str | None) -> dict[str, str]:
    """A merge request pipeline of a branch of this project, as GitLab sets it
    (docs.gitlab.com/ci/variables/predefined_variables, "merge request pipelines")."""
    return ci_environ(
        **{
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_COMMIT_BRANCH": None,
            "CI_PROJECT_ID": "42",
            "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "42",
            "CI_MERGE_REQUEST_IID": "7",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "Feature/Login",
            "CI_COMMIT_REF_SLUG": "feature-login",
            "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
            "CI_JOB_TOKEN": "job-token",
            "REVIEW_KUBECONFIG": KUBECONFIG,
            "REVIEW_SECRET": REVIEW_SECRET,
            # dev's credentials are not in a review job's environment scope.
            "GCP_CREDENTIAL_FILE": None,
            "DB_PASSWORD": None,
            "CONDUIT_SECRET": None,
            **overrides,
        }
    )


def namespace_item(name: str, iid: str, created: str, expires: str) -> dict:
    """A review namespace as `kubectl get namespaces -o json` lists it (core/v1 Namespace)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                review.REVIEW_LABEL: "true",
                review.MR_LABEL: iid,
                review.SLUG_LABEL: name.removeprefix("review-"),
                review.CREATED_LABEL: created,
                review.EXPIRES_LABEL: expires,
            },
        },
        "status": {"phase": "Active"},
    }


class Cluster:
    """The dev cluster as the review ServiceAccount sees it."""

    def __init__(self, namespaces=(), whoami=review.REVIEW_IDENTITY, can_change_dev="no"):
        self.namespaces = list(namespaces)
        self.whoami = whoami
        self.can_change_dev = can_change_dev

    def __call__(self, args: tuple[str, ...]) -> Result | None:
        if args[:2] == ("kubectl", "kustomize"):
            done = subprocess.run(
                [find_program("kubectl"), *args[1:]], capture_output=True, text=True, check=False
            )
            return Result(args, done.returncode, done.stdout, done.stderr)
        if args[:3] == ("kubectl", "auth", "whoami"):
            return Result(args, 0, self.whoami)
        if args[:3] == ("kubectl", "auth", "can-i"):
            # kubectl auth can-i prints yes/no and exits 1 on no.
            return Result(args, 0 if self.can_change_dev == "yes" else 1, self.can_change_dev)
        if args[:3] == ("kubectl", "get", "namespaces"):
            listing = {"apiVersion": "v1", "kind": "List", "items": self.namespaces}
            return Result(args, 0, json.dumps(listing))
        if args[:3] == ("kubectl", "get", "gateway"):
            return Result(args, 0, ADDRESS)
        return None


@pytest.fixture
def smoked():
    return []


@pytest.fixture
def run_review(recorder, clock, capsys, tmp_path, smoked, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(*argv: str, environ=None, cluster=None, smoke=None, api=None):
        recorder.respond = cluster or Cluster()

        def record_smoke(url, options):
            smoked.append((url, options.user.username))
            if smoke:
                smoke(url)

        ctx = Context(
            environ=environ or mr_environ(),
            runner_factory=recorder.runner,
            clock=clock,
            smoke=record_smoke,
            utc_now=lambda: NOW,
            http_get_json=api or (lambda url, headers: (200, {"iid": 7, "state": "opened"})),
        )
        code = main(list(argv), ctx)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def applied(recorder) -> list[str]:
    return [c[-1] for c in recorder.commands if c[:2] == ("kubectl", "apply")]


def rendered(tmp_path) -> list[dict]:
    return [o for path in sorted((tmp_path / "out").glob("0*.yaml")) for o in load_all(path)]


# --- deploy -------------------------------------------------------------------------------


def test_deploy_applies_in_order_waits_and_smoke_tests_through_the_dev_gateway(
    run_review, recorder, tmp_path, smoked
):
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"))
    assert code == 0, err
    commands = [c for c in recorder.commands if c[:2] != ("kubectl", "kustomize")]
    assert commands[0][:3] == ("kubectl", "auth", "whoami")
    assert [file_name(p) for p in applied(recorder)] == [
        "01-namespace.yaml", "02-secrets.yaml", "03-database.yaml", "04-app.yaml",
        "05-ingress.yaml",
    ]  # fmt: skip
    waits = [c for c in commands if c[1] in ("wait", "rollout")]
    assert waits[0][3] == "cluster.postgresql.cnpg.io/conduit-db"
    assert waits[1][3] == "deployment/conduit"
    assert all("review-feature-login" in c for c in waits)
    url = f"http://{ADDRESS}/review/feature-login/flask/"
    assert (tmp_path / "deploy.env").read_text() == f"DYNAMIC_ENVIRONMENT_URL={url}\n"
    assert smoked == [(url.rstrip("/"), smoked[0][1])]
    assert smoked[0][1].startswith("smoke-review-")
    # Never the admin path: no kops, no GCP key, no cluster-wide installs.
    assert not [c for c in recorder.commands if c[0] in ("kops", "helm")]
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in recorder.calls[-1].exported


def test_the_namespace_carries_the_review_labels_and_every_object_lives_in_it(run_review, tmp_path):
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"))
    assert code == 0, err
    objects = rendered(tmp_path)
    [namespace] = [o for o in objects if o["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == "review-feature-login"
    labels = namespace["metadata"]["labels"]
    assert labels[review.REVIEW_LABEL] == "true"
    assert labels[review.MR_LABEL] == "7"
    assert labels[review.SLUG_LABEL] == "feature-login"
    assert labels[review.CREATED_LABEL] == "20261205T120000Z"
    assert labels[review.EXPIRES_LABEL] == "20261208T120000Z"  # the default 3 days
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "review-feature-login"
    }
    kinds = {o["kind"] for o in objects}
    # No Gateway of its own, no backups, so no backup key either.
    assert not kinds & {"Gateway", "ClientTrafficPolicy", "ObjectStore", "ScheduledBackup"}
    assert not [o for o in objects if o["metadata"]["name"].startswith("conduit-backup-gcs")]
    [cluster] = [o for o in objects if o["kind"] == "Cluster"]
    assert cluster["spec"]["instances"] == 1
    assert cluster["spec"]["storage"]["size"] == "1Gi"
    assert "plugins" not in cluster["spec"]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == review.APP_CLUSTER_ROLE
    assert binding["subjects"][0]["namespace"] == "conduit-review-access"


def test_the_route_attaches_to_the_dev_gateway_under_the_slug(run_review, tmp_path):
    run_review("review", "deploy", "--out", str(tmp_path / "out"))
    [route] = [o for o in rendered(tmp_path) if o["kind"] == "HTTPRoute"]
    assert route["spec"]["parentRefs"] == [
        {"name": "conduit", "namespace": "conduit", "sectionName": "http"}
    ]
    prefixes = [r["matches"][0]["path"]["value"] for r in route["spec"]["rules"]]
    assert prefixes == [
        "/review/feature-login/flask/api",
        "/review/feature-login/flask/healthz",
        "/review/feature-login/flask/readyz",
    ]


def test_what_a_review_renders_is_valid_for_the_cluster_and_the_crds(run_review, tmp_path):
    run_review("review", "deploy", "--out", str(tmp_path / "out"))
    objects = rendered(tmp_path)
    custom = [o for o in objects if not is_builtin(o)]
    errors = [e for o in custom for e in crd_errors(o)] + schema_errors(objects, KUBERNETES_VERSION)
    assert errors == []


def test_the_image_is_the_review_tag_with_the_registry_pull_secret(run_review, tmp_path):
    environ = mr_environ(
        DOCKER_REGISTRY_PASSWORD=base64.b64encode(REGISTRY_PASSWORD.encode()).decode()
    )
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), environ=environ)
    assert code == 0, err
    [deployment] = [o for o in rendered(tmp_path) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "docker.io/team/conduit:review-01234567"
    assert pod["imagePullSecrets"][0]["name"].startswith("registry-credentials-")


def test_the_image_is_the_digest_pack_review_pushed(run_review, tmp_path):
    """pack:review's dotenv report sets CONDUIT_IMAGE_DIGEST (deploy by digest, as dev and
    prod): the pod runs that manifest, whatever the review tag points at later."""
    digest = "sha256:" + "ab" * 32
    environ = mr_environ(CONDUIT_IMAGE_DIGEST=digest)
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), environ=environ)
    assert code == 0, err
    [deployment] = [o for o in rendered(tmp_path) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    assert images == {f"docker.io/team/conduit@{digest}"}
    assert "not a digest" not in err


def test_without_a_digest_it_runs_the_review_tag_and_says_so(run_review, tmp_path):
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert (
        "CONDUIT_IMAGE_DIGEST is not set: review runs the tag "
        "docker.io/team/conduit:review-01234567, not a digest"
    ) in err


def test_a_digest_that_is_not_one_is_refused_before_any_command(run_review, recorder, tmp_path):
    environ = mr_environ(CONDUIT_IMAGE_DIGEST="review-01234567")
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), environ=environ)
    assert code == 1
    assert one_line_error(err)
    assert "CONDUIT_IMAGE_DIGEST must be the pushed image's digest" in err
    assert not [c for c in recorder.commands if c[:2] != ("git", "rev-parse")]


def test_secrets_are_the_apps_own_and_the_same_on_every_deploy(run_review, tmp_path):
    run_review("review", "deploy", "--out", str(tmp_path / "out"))
    first = {o["metadata"]["name"] for o in rendered(tmp_path) if o["kind"] == "Secret"}
    run_review("review", "deploy", "--out", str(tmp_path / "out"))
    again = {o["metadata"]["name"] for o in rendered(tmp_path) if o["kind"] == "Secret"}
    assert first == again  # the database keeps its password
    other = review.ReviewApp("other", "8")
    mine = review.ReviewApp("feature-login", "7")
    assert review.derived_secret(REVIEW_SECRET, mine, "jwt key") != review.derived_secret(
        REVIEW_SECRET, other, "jwt key"
    )
    text = "".join(p.read_text() for p in (tmp_path / "out").glob("*.yaml"))
    assert REVIEW_SECRET not in text


@pytest.mark.parametrize(
    ("whoami", "can_change_dev", "message"),
    [
        ("kubernetes-admin", "yes", "not system:serviceaccount:conduit-review-access"),
        ("dev.conduit.k8s.local", "yes", "never use the dev cluster's admin kubeconfig"),
        (review.REVIEW_IDENTITY, "yes", "may create deployments in conduit (dev)"),
    ],
)
def test_preflight_refuses_the_admin_kubeconfig_before_changing_anything(
    run_review, recorder, tmp_path, whoami, can_change_dev, message
):
    code, _, err = run_review(
        "review", "deploy", "--out", str(tmp_path / "out"),
        cluster=Cluster(whoami=whoami, can_change_dev=can_change_dev),
    )  # fmt: skip
    assert code == 1
    assert message in err
    assert one_line_error(err)
    assert applied(recorder) == []


def test_the_review_jobs_identity_passes_the_preflight(run_review, tmp_path):
    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"))
    assert code == 0, err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "99"}, "comes from a fork"),
        ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"}, "not push"),
        ({"CI_PIPELINE_SOURCE": "schedule"}, "not schedule"),
        ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.3"}, "not push"),
        ({"CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "main"}, "default branch deploys to dev"),
        ({"CI_COMMIT_REF_SLUG": "Not_A_Slug"}, "is not a ref slug"),
        ({"REVIEW_KUBECONFIG": None}, "REVIEW_KUBECONFIG"),
        ({"REVIEW_SECRET": "short"}, "REVIEW_SECRET must be at least 32"),
        ({"REVIEW_AUTO_STOP_IN": "soon"}, "REVIEW_AUTO_STOP_IN must be a number and a unit"),
        ({"REVIEW_APPS_MAX": "0"}, "REVIEW_APPS_MAX must be a whole number of 1 or more"),
    ],
)
def test_deploy_refuses_what_may_not_get_a_review_app(
    run_review, recorder, tmp_path, overrides, message
):
    code, _, err = run_review(
        "review", "deploy", "--out", str(tmp_path / "out"), environ=mr_environ(**overrides)
    )
    assert code == 1
    assert message in err
    assert one_line_error(err)
    assert [c for c in recorder.commands if c[:2] != ("kubectl", "kustomize")] == []


def test_auto_stop_in_sets_the_expiry(run_review, tmp_path):
    run_review(
        "review", "deploy", "--out", str(tmp_path / "out"),
        environ=mr_environ(REVIEW_AUTO_STOP_IN="12 hours"),
    )  # fmt: skip
    [namespace] = [o for o in rendered(tmp_path) if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"][review.EXPIRES_LABEL] == "20261206T000000Z"


FIVE = [
    namespace_item(f"review-mr{n}", str(n), f"2026120{n}T080000Z", "20261209T000000Z")
    for n in (3, 1, 4, 2, 5)
]


def test_the_sixth_review_app_fails_naming_the_oldest(run_review, recorder, tmp_path):
    code, _, err = run_review(
        "review", "deploy", "--out", str(tmp_path / "out"), cluster=Cluster(FIVE)
    )
    assert code == 1
    assert "5 review apps run already, REVIEW_APPS_MAX is 5" in err
    assert "oldest first: review-mr1 (!1, since 2026-12-01 08:00 UTC), review-mr2" in err
    assert applied(recorder) == []


def test_a_higher_max_admits_it(run_review, tmp_path):
    code, _, err = run_review(
        "review", "deploy", "--out", str(tmp_path / "out"),
        cluster=Cluster(FIVE), environ=mr_environ(REVIEW_APPS_MAX="6"),
    )  # fmt: skip
    assert code == 0, err


def test_a_redeploy_is_not_counted_again_and_keeps_its_creation_time(run_review, tmp_path):
    mine = namespace_item("review-feature-login", "7", "20261201T070000Z", "20261204T070000Z")
    code, _, err = run_review(
        "review", "deploy", "--out", str(tmp_path / "out"), cluster=Cluster([*FIVE[:4], mine])
    )
    assert code == 0, err
    [namespace] = [o for o in rendered(tmp_path) if o["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels[review.CREATED_LABEL] == "20261201T070000Z"
    assert labels[review.EXPIRES_LABEL] == "20261208T120000Z"  # renewed from now


def test_a_namespace_of_another_merge_request_is_refused(run_review, recorder, tmp_path):
    theirs = namespace_item("review-feature-login", "9", "20261201T070000Z", "20261209T000000Z")
    code, _, err = run_review(
        "review", "deploy", "--out", str(tmp_path / "out"), cluster=Cluster([theirs])
    )
    assert code == 1
    assert "belongs to merge request !9, not !7" in err
    assert applied(recorder) == []


def test_a_failed_smoke_test_fails_the_job(run_review, tmp_path):
    def fail(url):
        raise SmokeFailed("create article: POST /api/articles -> 500")

    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), smoke=fail)
    assert code == 1
    assert "the review app failed its smoke test: create article" in err


def test_a_rollout_that_never_finishes_fails_with_where_to_look(run_review, tmp_path):
    def cluster(args):
        if args[:3] == ("kubectl", "rollout", "status"):
            return Result(args, 1, "", "error: timed out waiting for the condition")
        return Cluster()(args)

    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), cluster=cluster)
    assert code == 1
    assert "the review app did not start" in err
    assert "kubectl describe pods --namespace review-feature-login" in err


def test_a_dry_run_prints_the_plan_and_runs_nothing(run_review, recorder, tmp_path):
    code, _, err = run_review("review", "deploy", "--dry-run", "--out", str(tmp_path / "out"))
    assert code == 0, err
    out = "\n".join(recorder.planned)
    assert [c for c in recorder.commands if c[:2] != ("kubectl", "kustomize")] == []
    assert "kubectl auth whoami" in out
    assert "kubectl delete" not in out
    assert "# conduit-deploy smoke http://<gateway-address>/review/feature-login/flask" in out


def test_a_long_slug_still_names_a_valid_namespace():
    app = review.ReviewApp("a" * 55 + "-bcdefgh", "1")
    assert len(app.namespace) <= 63
    assert not app.namespace.endswith("-")


# --- stop ---------------------------------------------------------------------------------


def test_stop_deletes_the_namespace_and_waits_until_it_is_gone(run_review, recorder):
    code, _, err = run_review("review", "stop")
    assert code == 0, err
    deletes = [c for c in recorder.commands if c[:2] == ("kubectl", "delete")]
    assert deletes == [
        (
            "kubectl", "delete", "namespace", "review-feature-login", "--ignore-not-found",
            "--wait=true", "--timeout=300s",
        )
    ]  # fmt: skip
    assert recorder.commands[0][:3] == ("kubectl", "auth", "whoami")


def test_stop_refuses_the_admin_kubeconfig(run_review, recorder):
    code, _, err = run_review("review", "stop", cluster=Cluster(whoami="kubernetes-admin"))
    assert code == 1
    assert "never use the dev cluster's admin kubeconfig" in err
    assert not [c for c in recorder.commands if c[:2] == ("kubectl", "delete")]


def test_stop_by_slug_for_an_operator(run_review, recorder):
    environ = mr_environ(CI_COMMIT_REF_SLUG=None)
    code, _, err = run_review("review", "stop", "--slug", "old-branch", environ=environ)
    assert code == 0, err
    assert ("review-old-branch") in [c[3] for c in recorder.commands if c[1] == "delete"]
    code, _, err = run_review("review", "stop", "--slug", "../dev", environ=environ)
    assert code == 1
    assert "is not a ref slug" in err


def test_stop_as_a_dry_run_deletes_nothing(run_review, recorder):
    code, _, err = run_review("review", "stop", "--dry-run")
    assert code == 0, err
    out = "\n".join(recorder.planned)
    assert recorder.commands == []
    assert "kubectl delete namespace review-feature-login" in out


# --- sweep --------------------------------------------------------------------------------

# GitLab's answer for GET /projects/:id/merge_requests/:iid (docs.gitlab.com/api/
# merge_requests, "Get single MR"): an object whose `state` is opened, closed, locked or
# merged; only the fields the sweep reads, with the documented names and types.
SWEPT = [
    namespace_item("review-open", "1", "20261204T080000Z", "20261207T080000Z"),
    namespace_item("review-merged", "2", "20261204T080000Z", "20261207T080000Z"),
    namespace_item("review-expired", "3", "20261201T080000Z", "20261204T080000Z"),
    namespace_item("review-closed", "4", "20261204T080000Z", "20261207T080000Z"),
    namespace_item("review-gone", "5", "20261204T080000Z", "20261207T080000Z"),
]
STATES = {"1": "opened", "2": "merged", "3": "opened", "4": "closed"}


def gitlab(calls):
    def get(url, headers):
        calls.append((url, dict(headers)))
        iid = url.rsplit("/", 1)[1]
        if iid not in STATES:
            return 404, {"message": "404 Not found"}
        return 200, {"id": 1000 + int(iid), "iid": int(iid), "project_id": 42,
                     "state": STATES[iid]}  # fmt: skip

    return get


def sweep_environ(**overrides):
    # A scheduled pipeline on the default branch, in the review/sweep environment.
    return mr_environ(CI_PIPELINE_SOURCE="schedule", CI_COMMIT_BRANCH="main", **overrides)


def test_sweep_deletes_closed_merged_gone_and_expired_and_keeps_the_open_one(run_review, recorder):
    calls = []
    code, _, err = run_review(
        "review", "sweep", environ=sweep_environ(), cluster=Cluster(SWEPT), api=gitlab(calls)
    )
    assert code == 0, err
    deleted = [c[3] for c in recorder.commands if c[:3] == ("kubectl", "delete", "namespace")]
    # Oldest first.
    assert deleted == ["review-expired", "review-closed", "review-gone", "review-merged"]
    assert "merge request !2 is merged" in err
    assert "expired at 2026-12-04 08:00 UTC" in err
    assert "keeping review-open" in err
    # The job token, on this project's API; an expired app needs no question.
    assert (
        "https://gitlab.example.com/api/v4/projects/42/merge_requests/1",
        {"JOB-TOKEN": "job-token"},
    ) in calls
    assert "/merge_requests/3" not in " ".join(url for url, _ in calls)


def test_sweep_dry_run_lists_what_it_would_delete_and_deletes_nothing(run_review, recorder):
    code, _, err = run_review(
        "review", "sweep", "--dry-run",
        environ=sweep_environ(), cluster=Cluster(SWEPT), api=gitlab([]),
    )  # fmt: skip
    assert code == 0, err
    assert not [c for c in recorder.commands if c[1] == "delete"]
    # The listing is read-only: a dry run runs it, to say what it would delete.
    assert [c[:3] for c in recorder.commands] == [("kubectl", "get", "namespaces")]
    assert "would delete review-merged" in err
    assert "would delete 4: review-expired, review-closed, review-gone, review-merged" in err
    assert "kubectl delete namespace review-merged --ignore-not-found" in "\n".join(
        recorder.planned
    )


def test_sweep_uses_the_project_token_when_set(run_review):
    calls = []
    run_review(
        "review", "sweep",
        environ=sweep_environ(REVIEW_SWEEP_TOKEN="glpat-0123456789abcdef"),
        cluster=Cluster(SWEPT[:1]), api=gitlab(calls),
    )  # fmt: skip
    assert calls[0][1] == {"PRIVATE-TOKEN": "glpat-0123456789abcdef"}


def test_sweep_keeps_an_app_gitlab_does_not_answer_for_and_fails(run_review, recorder):
    code, _, err = run_review(
        "review", "sweep",
        environ=sweep_environ(), cluster=Cluster(SWEPT[:2]),
        api=lambda url, headers: (403, {"message": "403 Forbidden"}),
    )  # fmt: skip
    assert code == 1
    assert "set REVIEW_SWEEP_TOKEN" in err
    assert "could not read the merge request of review-merged, review-open" in err
    assert not [c for c in recorder.commands if c[1] == "delete"]


def test_sweep_refuses_the_admin_kubeconfig(run_review, recorder):
    code, _, err = run_review(
        "review", "sweep", environ=sweep_environ(), cluster=Cluster(SWEPT, whoami="admin")
    )
    assert code == 1
    assert "never use the dev cluster's admin kubeconfig" in err


# --- pack --review ------------------------------------------------------------------------


def test_pack_review_pushes_only_the_review_tag(recorder, capsys):
    environ = mr_environ(
        DOCKER_REGISTRY_PASSWORD=base64.b64encode(REGISTRY_PASSWORD.encode()).decode()
    )
    ctx = Context(environ=environ, runner_factory=recorder.runner, resolve=lambda host: "10.0.0.5")
    code = main(
        ["pack", "--review", "--dry-run", "--proof-database-url", "postgresql://u:p@db:5432/d"],
        ctx,
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    pushes = [line for line in recorder.planned if line.startswith("docker push")]
    assert "docker push docker.io/team/conduit:review-01234567" in pushes
    assert not [p for p in pushes if p.endswith((":latest", ":01234567"))]


def test_pack_review_refuses_a_fork(recorder, capsys):
    environ = mr_environ(CI_MERGE_REQUEST_SOURCE_PROJECT_ID="99")
    ctx = Context(environ=environ, runner_factory=recorder.runner, resolve=lambda host: "10.0.0.5")
    code = main(["pack", "--review", "--proof-database-url", "postgresql://u:p@db:5432/d"], ctx)
    assert code == 1
    assert "forks never get a review app" in capsys.readouterr().err


# --- the variables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3 days", 259200), ("12 hours", 43200), ("1 week", 604800), ("90 minutes", 5400)],
)
def test_durations_in_gitlabs_words(text, seconds):
    assert config.duration(text) == seconds


@pytest.mark.parametrize("text", ["3", "days", "0 days", "3 fortnights", "-1 day", "3.5 days"])
def test_durations_refused(text):
    with pytest.raises(ValueError, match="must be a number and a unit"):
        config.duration(text)


def test_a_kubeconfig_file_variable_is_read(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert config.kubeconfig(str(path)) == KUBECONFIG
    with pytest.raises(ValueError, match="is not a kubeconfig"):
        config.kubeconfig('{"type": "service_account"}\n{}')
    with pytest.raises(ValueError, match="neither a kubeconfig nor a readable file"):
        config.kubeconfig(str(tmp_path / "missing"))


def file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def one_line_error(err: str) -> bool:
    """The tool's error: one line, last, no traceback."""
    return err.strip().splitlines()[-1].startswith("conduit-deploy: error:") and (
        "Traceback" not in err
    )


def test_the_url_waits_for_dev_gateways_address_on_the_fake_clock(run_review, tmp_path, clock):
    answers = iter(["", "", ADDRESS])

    def cluster(args):
        if args[:3] == ("kubectl", "get", "gateway"):
            return Result(args, 0, next(answers))
        return Cluster()(args)

    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), cluster=cluster)
    assert code == 0, err
    assert clock.sleeps == [10, 10]


def test_no_address_in_time_fails_without_writing_a_url(run_review, tmp_path, clock):
    def cluster(args):
        if args[:3] == ("kubectl", "get", "gateway"):
            return Result(args, 0, "")
        return Cluster()(args)

    code, _, err = run_review("review", "deploy", "--out", str(tmp_path / "out"), cluster=cluster)
    assert code == 1
    assert "the dev gateway conduit: gave up after 120s" in err
    assert sum(clock.sleeps) == 120
    assert not (tmp_path / "deploy.env").exists()


# --- review kubeconfig --------------------------------------------------------------------


def service_account_token(expires: datetime) -> str:
    """A TokenRequest token's shape: a JWT whose claims carry exp (seconds since the
    epoch) and the ServiceAccount as sub (pkg/serviceaccount/claims.go)."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": int(expires.timestamp()),
        "iat": int(NOW.timestamp()),
        "iss": "https://api.internal.dev.k8s.local",
        "sub": review.REVIEW_IDENTITY,
    }
    return f"{part({'alg': 'RS256', 'kid': 'k1'})}.{part(claims)}.c2lnbmF0dXJl"


# `kubectl config view --minify --flatten -o json` of an admin's kops context (clientcmd
# v1 Config: k8s.io/client-go/tools/clientcmd/api/v1/types.go).
ADMIN_VIEW = {
    "kind": "Config",
    "apiVersion": "v1",
    "preferences": {},
    "clusters": [
        {
            "name": "dev.k8s.local",
            "cluster": {
                "server": "https://203.0.113.1",
                "certificate-authority-data": "LS0tLS1CRUdJTi1DRVJUSUZJQ0FURS0tLS0t",
                "tls-server-name": "api.internal.dev.k8s.local",
            },
        }
    ],
    "users": [{"name": "dev.k8s.local", "user": {"client-key-data": "QURNSU4tS0VZ"}}],
    "contexts": [
        {"name": "dev.k8s.local", "context": {"cluster": "dev.k8s.local", "user": "dev.k8s.local"}}
    ],
    "current-context": "dev.k8s.local",
}


def admin_cluster(view=ADMIN_VIEW, token=None):
    token = token or service_account_token(datetime(2027, 1, 4, 12, 0, tzinfo=UTC))

    def respond(args):
        if args[:3] == ("kubectl", "config", "view"):
            return Result(args, 0, json.dumps(view))
        if args[:3] == ("kubectl", "create", "token"):
            return Result(args, 0, token + "\n")
        return None

    return respond


def test_kubeconfig_holds_a_bounded_token_of_the_review_account_and_nothing_of_the_admin(
    run_review, recorder, tmp_path
):
    output = tmp_path / "review-kubeconfig"
    code, _, err = run_review(
        "review", "kubeconfig", "--output", str(output), "--duration", "30 days",
        environ={}, cluster=admin_cluster(),
    )  # fmt: skip
    assert code == 0, err
    [create] = [c for c in recorder.commands if c[:3] == ("kubectl", "create", "token")]
    assert create == (
        "kubectl", "create", "token", "conduit-review", "--namespace", "conduit-review-access",
        "--duration=2592000s",
    )  # fmt: skip
    assert output.stat().st_mode & 0o777 == 0o600
    text = output.read_text()
    assert config.kubeconfig(text) == text  # what REVIEW_KUBECONFIG accepts
    document = yaml.safe_load(text)
    assert document["clusters"][0]["cluster"] == {
        "server": "https://203.0.113.1",
        "certificate-authority-data": "LS0tLS1CRUdJTi1DRVJUSUZJQ0FURS0tLS0t",
    }
    assert document["users"] == [
        {
            "name": "conduit-review",
            "user": {"token": service_account_token(datetime(2027, 1, 4, 12, 0, tzinfo=UTC))},
        }
    ]
    assert "QURNSU4tS0VZ" not in text  # the admin's key stays with the admin
    assert "expires 2027-01-04 12:00 UTC" in err
    assert "warning" not in err
    assert "eyJ" not in err  # the token is never printed


def test_kubeconfig_warns_when_the_api_server_shortened_the_token(run_review, tmp_path):
    short = service_account_token(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))
    code, _, err = run_review(
        "review", "kubeconfig", "--output", str(tmp_path / "k"),
        environ={}, cluster=admin_cluster(token=short),
    )  # fmt: skip
    assert code == 0, err
    assert "expires 2026-12-06 12:00 UTC" in err
    assert "warning: the API server shortened the token" in err


def test_kubeconfig_refuses_a_context_without_one_cluster(run_review, tmp_path):
    view = {**ADMIN_VIEW, "clusters": []}
    code, _, err = run_review(
        "review", "kubeconfig", "--output", str(tmp_path / "k"),
        environ={}, cluster=admin_cluster(view=view),
    )  # fmt: skip
    assert code == 1
    assert one_line_error(err)
    assert "select the dev cluster's context first" in err
    assert not (tmp_path / "k").exists()


def test_kubeconfig_dry_run_creates_no_token(run_review, recorder, tmp_path):
    code, _, err = run_review(
        "review", "kubeconfig", "--dry-run", "--output", str(tmp_path / "k"), environ={}
    )
    assert code == 0, err
    assert recorder.calls == []
    assert any(line.startswith("kubectl create token conduit-review") for line in recorder.planned)
    assert not (tmp_path / "k").exists()


def test_kubeconfig_refuses_a_duration_without_a_unit(run_review, recorder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        run_review("review", "kubeconfig", "--duration", "30", "--output", str(tmp_path / "k"))
    assert exited.value.code == 2
    assert "must be a number and a unit" in capsys.readouterr().err
    assert recorder.calls == []
