"""pack: login on stdin, pull the caches, build the build stage and the image, prove it
(migrations, its server, the smoke test) and push per pipeline."""

from __future__ import annotations

import pytest
from conduit_deploy.cli import Context, main
from conduit_deploy.errors import ConfigError, SmokeFailed
from conduit_deploy.pack import PROOF_PORT, engine_host, plan_proof, pushed_digest
from conduit_deploy.runner import Result

from .support import REGISTRY_PASSWORD, ci_environ, tag_environ

REVISION = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "4e" * 32
# The pack jobs' PostgreSQL service (.gitlab-ci.yml), and the address its name has.
PROOF_DATABASE = "postgresql://conduit:conduit@postgres:5432/conduit"
SERVICE_ADDRESS = "172.17.0.3"


class FakeSmoke:
    """Stands in for smoke.run_smoke; fails with `failure` when set. Each call is
    recorded in the recorder's command list, so the order of steps can be checked."""

    def __init__(self, recorder, failure: str | None = None):
        self.recorder, self.failure = recorder, failure
        self.urls: list[str] = []

    def __call__(self, url, options):
        self.urls.append(url)
        self.recorder.calls.append(_Marker(("smoke", url)))
        if self.failure:
            raise SmokeFailed(self.failure)
        return 6


class _Marker:
    def __init__(self, args):
        self.args = args


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """pack writes its dotenv report (pack.env) into the working directory."""
    monkeypatch.chdir(tmp_path)


def push_output(reference: str, digest: str = DIGEST) -> str:
    """What `docker push` prints without a terminal. Shape: moby/moby
    distribution/push_v2.go and daemon/containerd/image_push.go: "The push refers to
    repository [%s]", a line per layer, then "%s: digest: %s size: %d" with the tag."""
    repository, _, tag = reference.rpartition(":")
    return (
        f"The push refers to repository [{repository}]\n"
        "5f70bf18a086: Preparing\n"
        "b1f0e8a5c2d4: Preparing\n"
        "5f70bf18a086: Layer already exists\n"
        "b1f0e8a5c2d4: Pushed\n"
        f"{tag}: digest: {digest} size: 1782\n"
    )


def registry(respond=lambda args: None, digests=None):
    """respond, with `docker push` answered as a registry does (digests: reference ->
    digest, DIGEST for the others)."""

    def answer(args):
        result = respond(args)
        if result is None and args[:2] == ("docker", "push"):
            return Result(args, 0, push_output(args[2], (digests or {}).get(args[2], DIGEST)))
        return result

    return answer


def pack(argv, environ, recorder, capsys, smoke=None, proof=PROOF_DATABASE):
    smoke = smoke or FakeSmoke(recorder)
    recorder.respond = registry(recorder.respond)
    context = Context(
        environ={"DOCKER_HOST": "tcp://docker:2376", **environ},
        runner_factory=recorder.runner,
        smoke=smoke,
        resolve=lambda name: {"postgres": SERVICE_ADDRESS}[name],
    )
    code = main(["pack", *argv, "--proof-database-url", proof], context)
    out, err = capsys.readouterr()
    return code, out, err


def proof_steps(recorder):
    """The proof's commands, shortened to what identifies them."""
    steps = []
    for command in recorder.commands:
        if command[0] == "smoke":
            steps.append(command)
        elif command[1] in ("run", "rm", "logs"):
            steps.append(command[:2] + tuple(a for a in command[2:] if a.startswith("--")))
    return steps


ARGS = (
    "--build-arg",
    "BUILDKIT_INLINE_CACHE=1",
    "--build-arg",
    "VERSION=01234567",
    "--build-arg",
    f"REVISION={REVISION}",
    "--build-arg",
    "SOURCE=https://gitlab.example.com/team/conduit",
)


def registry_steps(recorder):
    """The commands that talk to the registry or build: everything but the proof."""
    return [c for c in recorder.commands if c[1] in ("login", "pull", "build", "push")]


def final_build(recorder):
    """The build of the image itself (the one without --target)."""
    [build] = [c for c in recorder.commands if c[1] == "build" and "--target" not in c]
    return build


def test_default_branch_pushes_the_short_sha_latest_and_the_build_stage(recorder, capsys):
    code, _, _ = pack([], ci_environ(), recorder, capsys)
    assert code == 0
    assert registry_steps(recorder) == [
        ("docker", "login", "--username", "team", "--password-stdin", "docker.io"),
        ("docker", "pull", "docker.io/team/conduit:buildcache"),
        ("docker", "pull", "docker.io/team/conduit:latest"),
        # The build stage (the uWSGI compile) as its own image: inline cache metadata
        # describes only the stage an image was built from.
        (
            "docker",
            "build",
            "--file",
            "docker/Dockerfile",
            "--target",
            "build",
            "--cache-from",
            "docker.io/team/conduit:buildcache",
            *ARGS,
            "--tag",
            "docker.io/team/conduit:buildcache",
            ".",
        ),
        (
            "docker",
            "build",
            "--file",
            "docker/Dockerfile",
            "--cache-from",
            "docker.io/team/conduit:buildcache",
            "--cache-from",
            "docker.io/team/conduit:latest",
            *ARGS,
            "--tag",
            "docker.io/team/conduit:01234567",
            "--tag",
            "docker.io/team/conduit:latest",
            ".",
        ),
        ("docker", "push", "docker.io/team/conduit:01234567"),
        ("docker", "push", "docker.io/team/conduit:latest"),
        ("docker", "push", "docker.io/team/conduit:buildcache"),
    ]


def test_the_password_goes_on_stdin_and_nowhere_else(recorder, capsys):
    _, out, err = pack([], ci_environ(), recorder, capsys)
    login = recorder.calls[0]
    assert login.stdin == REGISTRY_PASSWORD + "\n"
    everything = " ".join(" ".join(call.args) for call in recorder.calls) + out + err
    assert REGISTRY_PASSWORD not in everything + " ".join(recorder.echoed)


def test_a_release_tag_is_pushed_without_latest(recorder, capsys):
    pack([], tag_environ("v1.2.3"), recorder, capsys)
    build = final_build(recorder)
    assert "docker.io/team/conduit:v1.2.3" in build
    assert "docker.io/team/conduit:latest" not in build[build.index("--tag") :]
    assert [c for c in recorder.commands if c[1] == "push"] == [
        ("docker", "push", "docker.io/team/conduit:v1.2.3"),
        ("docker", "push", "docker.io/team/conduit:buildcache"),
    ]


def test_no_push_builds_only(recorder, capsys):
    environ = ci_environ(CI_PIPELINE_SOURCE="merge_request_event", CI_COMMIT_BRANCH=None)
    code, _, err = pack(["--no-push"], environ, recorder, capsys)
    assert code == 0
    assert [c[1] for c in registry_steps(recorder)] == ["login", "pull", "pull", "build", "build"]
    assert "built and proved docker.io/team/conduit:01234567; not pushed (--no-push)" in err


def test_no_push_without_credentials_skips_the_login(recorder, capsys):
    environ = ci_environ(DOCKER_REGISTRY_PASSWORD=None)
    code, _, _ = pack(["--no-push"], environ, recorder, capsys)
    assert code == 0
    assert [c[1] for c in registry_steps(recorder)] == ["pull", "pull", "build", "build"]


def test_no_push_without_any_registry_variable_builds_under_the_local_name(recorder, capsys):
    # A merge request pipeline: protected registry variables are not there.
    environ = ci_environ(
        CI_PIPELINE_SOURCE="merge_request_event",
        CI_COMMIT_BRANCH=None,
        DOCKER_REGISTRY_USER=None,
        DOCKER_REGISTRY_PASSWORD=None,
    )
    code, _, err = pack(["--no-push"], environ, recorder, capsys)
    assert code == 0, err
    [build] = registry_steps(recorder)  # no login, no registry cache to pull or to build for
    assert build[:2] == ("docker", "build")
    assert "--cache-from" not in build
    assert build[build.index("--tag") + 1] == "localhost/conduit:01234567"


def test_a_missing_previous_image_builds_without_cache(recorder, capsys):
    def respond(args):
        if args[1] == "pull":
            return Result(args, 1, "", "manifest unknown")
        return None

    recorder.respond = respond
    code, _, err = pack([], ci_environ(), recorder, capsys)
    stage, final = [c for c in registry_steps(recorder) if c[1] == "build"]
    assert code == 0
    assert "--cache-from" not in stage
    # Only the build stage this run just built.
    assert final[final.index("--cache-from") : final.index("--cache-from") + 3] == (
        "--cache-from",
        "docker.io/team/conduit:buildcache",
        "--build-arg",
    )
    assert "no previous docker.io/team/conduit:latest; those layers are built from scratch" in err


def test_base_image_is_passed_when_set(recorder, capsys):
    pack(["--no-push"], ci_environ(BASE_IMAGE="localhost:5000/debian-python:12"), recorder, capsys)
    for build in (c for c in recorder.commands if c[1] == "build"):
        assert (
            build[build.index("BUILDKIT_INLINE_CACHE=1") + 2]
            == "BASE_IMAGE=localhost:5000/debian-python:12"
        )


def test_docker_hub_prefix_is_passed_to_the_build_when_set(recorder, capsys):
    # .gitlab-ci.yml's DOCKER_HUB_PREFIX: the Dockerfile's base comes through the proxy.
    prefix = "gitlab.example.com:443/team/dependency_proxy/containers"
    pack(["--no-push"], ci_environ(DOCKER_HUB_PREFIX=prefix), recorder, capsys)
    builds = [c for c in recorder.commands if c[1] == "build"]
    assert builds
    for build in builds:
        assert f"DOCKER_HUB_PREFIX={prefix}" in build


def test_without_docker_hub_prefix_the_dockerfile_default_is_used(recorder, capsys):
    pack(["--no-push"], ci_environ(), recorder, capsys)
    for build in (c for c in recorder.commands if c[1] == "build"):
        assert not any(str(arg).startswith("DOCKER_HUB_PREFIX=") for arg in build)


def test_a_docker_hub_prefix_that_is_no_registry_fails_before_any_command(recorder, capsys):
    environ = ci_environ(DOCKER_HUB_PREFIX="dependency_proxy/containers")
    code, _, err = pack(["--no-push"], environ, recorder, capsys)
    assert code == 1
    assert recorder.calls == []
    assert "DOCKER_HUB_PREFIX" in err
    assert "is not a registry prefix" in err


def test_a_failed_push_fails_the_job_with_its_exit_code(recorder, capsys):
    def respond(args):
        if args[1] == "push":
            return Result(args, 1, "", "denied: requested access to the resource is denied")
        return None

    recorder.respond = respond
    code, _, err = pack([], ci_environ(), recorder, capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: `docker push docker.io/team/conduit:01234567` failed with exit "
        "code 1: denied: requested access to the resource is denied"
    )


def test_missing_credentials_fail_before_any_command(recorder, capsys):
    environ = ci_environ(DOCKER_REGISTRY_PASSWORD=None, DOCKER_REGISTRY_USER=None)
    code, _, err = pack([], environ, recorder, capsys)
    assert code == 1
    assert recorder.calls == []
    assert err == (
        "conduit-deploy: error: `pack` cannot start; CI variables not set: "
        "DOCKER_REGISTRY_USER, DOCKER_REGISTRY_PASSWORD, "
        "CONDUIT_IMAGE_REPOSITORY (or DOCKER_REGISTRY_USER) "
        "(set them in Settings > CI/CD > Variables, or export them)\n"
    )


def test_dry_run_prints_the_exact_commands_and_runs_none(recorder, capsys):
    code, _, _ = pack(["--dry-run"], ci_environ(), recorder, capsys)
    assert code == 0
    assert recorder.calls == []
    assert recorder.planned[0] == (
        "docker login --username team --password-stdin docker.io"
        "  # stdin: the password decoded from DOCKER_REGISTRY_PASSWORD"
    )
    assert recorder.planned[-2:] == [
        "docker push docker.io/team/conduit:buildcache",
        "# write pack.env: CONDUIT_IMAGE_DIGEST=<the digest "
        "`docker push docker.io/team/conduit:01234567` reports>",
    ]
    # login, 2 pulls, 2 builds, the proof (migrations, server, smoke, removal), 3 pushes,
    # the dotenv report
    assert len(recorder.planned) == 13
    assert recorder.planned[7] == "# conduit-deploy smoke http://docker:8000"


# --- the proof --------------------------------------------------------------------


def test_the_image_is_proven_after_its_build_and_before_any_push(recorder, capsys):
    code, _, err = pack([], ci_environ(), recorder, capsys)
    assert code == 0, err
    kinds = [c[0] if c[0] == "smoke" else c[1] for c in recorder.commands]
    assert kinds == [
        *("login", "pull", "pull", "build", "build"),
        *("run", "run", "smoke", "rm"),  # migrations, the server, the smoke test, removal
        *("push", "push", "push"),
    ]
    assert "docker.io/team/conduit:01234567 passed its proof" in err


def test_the_proof_migrates_then_serves_the_built_image_against_the_service(recorder, capsys):
    pack([], ci_environ(), recorder, capsys)
    migrate, serve, smoke, remove = [
        c for c in recorder.commands if c[0] == "smoke" or c[1] in ("run", "rm")
    ]
    image = "docker.io/team/conduit:01234567"
    # The engine (dind) is not linked to the postgres service: the job resolves the
    # name and hands the address over; the container shares the engine's network.
    shared = ("--network", "host", "--add-host", f"postgres:{SERVICE_ADDRESS}")
    assert migrate[:3] == ("docker", "run", "--rm")
    assert migrate[3:7] == shared
    assert migrate[-4:] == (image, "flask", "db", "upgrade")
    assert f"DATABASE_URL={PROOF_DATABASE}" in migrate
    assert f"PORT={PROOF_PORT}" in migrate
    secret = next(a for a in migrate if a.startswith("CONDUIT_SECRET="))
    assert len(secret) - len("CONDUIT_SECRET=") >= 32  # production settings' minimum
    name = serve[serve.index("--name") + 1]
    assert serve[:5] == ("docker", "run", "--detach", "--name", name)
    assert serve[5:] == migrate[3:-3]  # the same options, the image's own CMD
    assert smoke == ("smoke", f"http://docker:{PROOF_PORT}")
    assert remove == ("docker", "rm", "--force", "--volumes", name)


def test_a_failed_smoke_test_pushes_nothing_and_fails_with_the_reason(recorder, capsys):
    smoke = FakeSmoke(recorder, "smoke test failed at 'log in' against http://docker:8000: 500")
    code, _, err = pack([], ci_environ(), recorder, capsys, smoke=smoke)
    assert code == 1
    assert not [c for c in recorder.commands if c[1] == "push"]
    name = next(c for c in recorder.commands if c[1] == "run" and "--detach" in c)[4]
    # The server's last log lines are shown, and the container is removed.
    assert recorder.commands[-2:] == [
        ("docker", "logs", "--tail", "40", name),
        ("docker", "rm", "--force", "--volumes", name),
    ]
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: docker.io/team/conduit:01234567 failed its proof, nothing "
        "pushed: smoke test failed at 'log in' against http://docker:8000: 500"
    )


def test_failed_migrations_push_nothing_and_start_no_server(recorder, capsys):
    def respond(args):
        if args[-3:] == ("flask", "db", "upgrade"):
            return Result(
                args,
                1,
                "",
                "Traceback (most recent call last):\n  ...\n"
                "sqlalchemy.exc.OperationalError: connection refused\n",
            )
        return None

    recorder.respond = respond
    smoke = FakeSmoke(recorder)
    code, _, err = pack([], ci_environ(), recorder, capsys, smoke=smoke)
    assert code == 1
    assert [c[1] for c in recorder.commands][-1] == "run"  # nothing after the migrations
    assert smoke.urls == []
    assert "    Traceback (most recent call last):" in err  # the whole output, shown
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: docker.io/team/conduit:01234567 failed its proof, nothing "
        "pushed: its migrations exited 1: Traceback (most recent call last): | ... | "
        "sqlalchemy.exc.OperationalError: connection refused"
    )


def test_a_server_that_does_not_start_is_removed_and_nothing_is_pushed(recorder, capsys):
    def respond(args):
        if args[1] == "run" and "--detach" in args:
            return Result(args, 125, "", "docker: Error response from daemon: port is allocated")
        return None

    recorder.respond = respond
    code, _, err = pack([], ci_environ(), recorder, capsys)
    assert code == 1
    assert recorder.commands[-1][:4] == ("docker", "rm", "--force", "--volumes")
    assert not [c for c in recorder.commands if c[1] == "push"]
    assert "its server container did not start: docker: Error response from daemon" in err


def test_a_merge_request_build_is_proven_too(recorder, capsys):
    environ = ci_environ(CI_PIPELINE_SOURCE="merge_request_event", CI_COMMIT_BRANCH=None)
    smoke = FakeSmoke(recorder)
    code, _, _ = pack(["--no-push"], environ, recorder, capsys, smoke=smoke)
    assert code == 0
    assert smoke.urls == [f"http://docker:{PROOF_PORT}"]


def test_pack_needs_the_proofs_database(recorder, capsys):
    context = Context(environ=ci_environ(), runner_factory=recorder.runner)
    with pytest.raises(SystemExit) as usage_error:
        main(["pack", "--no-push"], context)
    assert usage_error.value.code == 2
    assert "--proof-database-url" in capsys.readouterr().err
    assert recorder.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "mysql://conduit:conduit@postgres:3306/conduit",
        "postgresql://conduit:conduit@postgres:5432/",  # no database
        "postgres",
    ],
)
def test_a_proof_database_url_that_is_not_postgresql_is_refused_before_any_command(
    url, recorder, capsys
):
    code, _, err = pack([], ci_environ(), recorder, capsys, proof=url)
    assert code == 1
    assert recorder.calls == []
    assert (
        "--proof-database-url must be postgresql://<user>:<password>@<host>:<port>/<database>"
        in err
    )
    assert "conduit:conduit" not in err  # the URL's password is never echoed


def test_a_proof_database_host_that_does_not_resolve_is_refused():
    def resolve(name):
        raise OSError("Name or service not known")

    with pytest.raises(ConfigError, match=r"'postgres' does not resolve here .* postgres service"):
        plan_proof(PROOF_DATABASE, "tcp://docker:2376", resolve=resolve)


def test_an_address_or_localhost_needs_no_added_host():
    never = lambda name: pytest.fail(f"resolved {name}")  # noqa: E731
    for url in ("postgresql://u:p@127.0.0.1:5418/db", "postgresql+psycopg://u:p@localhost/db"):
        assert plan_proof(url, None, resolve=never).hosts == ()


@pytest.mark.parametrize(
    ("docker_host", "host"),
    [
        ("tcp://docker:2376", "docker"),
        ("tcp://10.0.0.5:2375", "10.0.0.5"),
        ("unix:///var/run/docker.sock", "127.0.0.1"),
        (None, "127.0.0.1"),
    ],
)
def test_the_smoke_test_reaches_the_engines_host(docker_host, host):
    assert engine_host(docker_host) == host


# --- the digest: what the deploy runs ---------------------------------------------


def test_the_pushed_digest_goes_into_the_dotenv_report(recorder, capsys, tmp_path):
    code, _, err = pack([], ci_environ(), recorder, capsys)
    assert code == 0, err
    assert (tmp_path / "pack.env").read_text() == (
        f"CONDUIT_IMAGE_DIGEST={DIGEST}\nCONDUIT_IMAGE_BY_DIGEST=docker.io/team/conduit@{DIGEST}\n"
    )
    assert (
        f"==> pack: docker.io/team/conduit@{DIGEST} is "
        "docker.io/team/conduit:01234567, docker.io/team/conduit:latest" in err
    )


def test_a_release_tag_records_its_digest(recorder, capsys, tmp_path):
    code, _, err = pack([], tag_environ("v1.2.3"), recorder, capsys)
    assert code == 0, err
    assert (tmp_path / "pack.env").read_text().startswith(f"CONDUIT_IMAGE_DIGEST={DIGEST}\n")


def test_a_push_that_names_no_digest_fails_the_job(recorder, capsys, tmp_path):
    def respond(args):
        if args[:2] == ("docker", "push"):  # the output of a registry that said nothing
            return Result(args, 0, "The push refers to repository [docker.io/team/conduit]\n")
        return None

    recorder.respond = respond
    code, _, err = pack([], ci_environ(), recorder, capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: `docker push docker.io/team/conduit:01234567` succeeded but "
        "reported no digest (no line '01234567: digest: sha256:… size: …'): nothing to "
        "deploy by digest"
    )
    assert not (tmp_path / "pack.env").exists()


def test_tags_stored_as_different_manifests_fail_the_job(recorder, capsys, tmp_path):
    other = "sha256:" + "5f" * 32
    recorder.respond = registry(digests={"docker.io/team/conduit:latest": other})
    code, _, err = pack([], ci_environ(), recorder, capsys)
    assert code == 1
    assert "the tags of one image were stored as different manifests" in err
    assert not (tmp_path / "pack.env").exists()


def test_no_push_writes_no_digest(recorder, capsys, tmp_path):
    environ = ci_environ(CI_PIPELINE_SOURCE="merge_request_event", CI_COMMIT_BRANCH=None)
    code, _, _ = pack(["--no-push"], environ, recorder, capsys)
    assert code == 0
    assert not (tmp_path / "pack.env").exists()


def test_only_the_pushed_tags_digest_line_counts():
    output = push_output("docker.io/team/conduit:01234567")
    assert pushed_digest(output, "01234567") == DIGEST
    # Another tag's line, a digest of another algorithm, a line inside other text.
    assert pushed_digest(output, "latest") is None
    assert pushed_digest("01234567: digest: md5:0123 size: 1\n", "01234567") is None
    assert pushed_digest(f"note 01234567: digest: {DIGEST} size: 1\n", "01234567") is None


# --- the image audit (--audit-image) ------------------------------------------------

INVENTORY = "Flask==3.1.3\nPyJWT==2.15.1\n"


def audited(respond_audit=None, gate_exit=0, listed=INVENTORY):
    """The engine lists `listed` from the image; pip-audit writes its report (or answers
    as respond_audit says); the gate exits gate_exit."""

    def respond(args):
        if args[:2] == ("docker", "run") and "-c" in args:
            return Result(args, 0, listed)
        if args[0] == "pip-audit":
            if respond_audit:
                return respond_audit(args)
            output = args[args.index("--output") + 1]
            with open(output, "w") as report:
                report.write('{"dependencies": [], "fixes": []}')
            return None
        if args[0] == "python3" and args[1].endswith("gate.py"):
            return Result(args, gate_exit, "pip-audit: 0 finding(s)", "")
        return None

    return respond


def audit_pack(recorder, capsys, tmp_path, *extra, respond=None, no_push=False):
    (tmp_path / "kev.json").write_text('{"vulnerabilities": []}')
    recorder.respond = respond or audited()
    argv = [*(["--no-push"] if no_push else []), "--audit-image", *extra]
    return pack(argv, ci_environ(), recorder, capsys)


def test_the_image_is_audited_after_its_proof_and_before_any_push(recorder, capsys, tmp_path):
    code, _, err = audit_pack(recorder, capsys, tmp_path)
    assert code == 0, err
    kinds = [c[0] if c[0] in ("smoke", "pip-audit", "python3") else c[1] for c in recorder.commands]
    assert kinds[kinds.index("smoke") :] == [
        *("smoke", "rm"),
        *("run", "pip-audit", "python3"),  # the inventory, the audit, the policy
        *("push", "push", "push"),
    ]
    image = "docker.io/team/conduit:01234567"
    [inventory] = [c for c in recorder.commands if c[1] == "run" and "-c" in c]
    # Read by the image's own interpreter: the image has no pip.
    assert inventory[:5] == ("docker", "run", "--rm", image, "python")
    assert (tmp_path / "reports/image/image-requirements.txt").read_text() == INVENTORY
    assert "==> docker.io/team/conduit:01234567's Python packages pass the security policy" in err


def test_the_audit_reads_the_inventory_and_the_gate_judges_it(recorder, capsys, tmp_path):
    audit_pack(recorder, capsys, tmp_path, "--osv-api", "http://127.0.0.1:9/")
    [audit] = [c for c in recorder.commands if c[0] == "pip-audit"]
    assert audit[1:3] == ("--requirement", "reports/image/image-requirements.txt")
    # Pinned requirements, no resolution: exactly what the image holds is audited.
    assert {"--no-deps", "--disable-pip"} <= set(audit)
    assert audit[audit.index("--osv-url") + 1] == "http://127.0.0.1:9/v1/query"
    [judge] = [c for c in recorder.commands if c[0] == "python3"]
    assert judge[1].endswith("security/gate.py")
    assert judge[2:6] == ("--reports", "reports/image", "dependencies", "--pip-audit")
    assert judge[judge.index("--kev") + 1] == "kev.json"
    assert judge[judge.index("--osv-api") + 1] == "http://127.0.0.1:9/"


def test_an_image_the_policy_fails_is_never_pushed(recorder, capsys, tmp_path):
    code, _, err = audit_pack(recorder, capsys, tmp_path, respond=audited(gate_exit=1))
    assert code == 1
    assert not [c for c in recorder.commands if c[1] == "push"]
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: docker.io/team/conduit:01234567 fails the security policy: "
        "a Python package it holds has a blocking advisory (listed above); nothing pushed"
    )


def test_a_merge_request_image_is_audited_too(recorder, capsys, tmp_path):
    code, _, err = audit_pack(
        recorder, capsys, tmp_path, no_push=True, respond=audited(gate_exit=1)
    )
    assert code == 1
    assert "fails the security policy" in err


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        (audited(lambda args: Result(args, 2, "", "bad")), "pip-audit could not audit"),
        (audited(listed=""), "lists no Python distribution: nothing to audit"),
        (audited(gate_exit=2), "the security gate could not judge"),
    ],
    ids=["pip-audit-fails", "nothing-listed", "gate-error"],
)
def test_an_audit_that_cannot_run_pushes_nothing(recorder, capsys, tmp_path, respond, message):
    code, _, err = audit_pack(recorder, capsys, tmp_path, respond=respond)
    assert code == 1
    assert message in err
    assert not [c for c in recorder.commands if c[1] == "push"]


def test_the_audit_needs_the_kev_catalogue_before_any_command(recorder, capsys, tmp_path):
    code, _, err = audit_pack(recorder, capsys, tmp_path, "--kev", "missing.json")
    assert code == 1
    assert recorder.commands == []
    assert "no file missing.json (--kev)" in err


def test_a_proven_and_audited_image_can_be_saved_for_a_scanner(recorder, capsys, tmp_path):
    code, _, err = audit_pack(recorder, capsys, tmp_path, "--save-image", "image.tar", no_push=True)
    assert code == 0, err
    kinds = [c[0] if c[0] in ("pip-audit", "python3") else c[1] for c in recorder.commands]
    assert kinds[-3:] == ["pip-audit", "python3", "save"]
    assert recorder.commands[-1] == (
        "docker", "save", "--output", "image.tar", "docker.io/team/conduit:01234567"
    )  # fmt: skip


def test_an_image_the_policy_fails_is_not_saved(recorder, capsys, tmp_path):
    code, _, _ = audit_pack(
        recorder, capsys, tmp_path, "--save-image", "image.tar", respond=audited(gate_exit=1)
    )
    assert code == 1
    assert not [c for c in recorder.commands if c[1] == "save"]


def test_any_local_image_can_be_audited_alone(recorder, capsys, tmp_path):
    """`conduit-deploy audit-image`: the same audit, outside pack."""
    (tmp_path / "kev.json").write_text('{"vulnerabilities": []}')
    recorder.respond = audited(gate_exit=1)
    code = main(["audit-image", "localhost/conduit:dev"], Context(runner_factory=recorder.runner))
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "conduit-deploy: error: localhost/conduit:dev fails the security policy: a Python "
        "package it holds has a blocking advisory (listed above)"
    )
    assert [c[0] for c in recorder.commands] == ["docker", "pip-audit", "python3"]
