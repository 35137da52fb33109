"""pack: login on stdin, pull the caches, build the build stage and the image, tag and
push per pipeline."""

from __future__ import annotations

from conduit_deploy.cli import Context, main
from conduit_deploy.runner import Result

from .support import REGISTRY_PASSWORD, ci_environ, tag_environ

REVISION = "0123456789abcdef0123456789abcdef01234567"


def pack(argv, environ, recorder, capsys):
    code = main(["pack", *argv], Context(environ=environ, runner_factory=recorder.runner))
    out, err = capsys.readouterr()
    return code, out, err


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


def final_build(recorder):
    """The build of the image itself (the one without --target)."""
    [build] = [c for c in recorder.commands if c[1] == "build" and "--target" not in c]
    return build


def test_default_branch_pushes_the_short_sha_latest_and_the_build_stage(recorder, capsys):
    code, _, _ = pack([], ci_environ(), recorder, capsys)
    assert code == 0
    assert recorder.commands == [
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
    assert [c[1] for c in recorder.commands] == ["login", "pull", "pull", "build", "build"]
    assert "not pushed (--no-push)" in err


def test_no_push_without_credentials_skips_the_login(recorder, capsys):
    environ = ci_environ(DOCKER_REGISTRY_PASSWORD=None)
    code, _, _ = pack(["--no-push"], environ, recorder, capsys)
    assert code == 0
    assert [c[1] for c in recorder.commands] == ["pull", "pull", "build", "build"]


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
    [build] = recorder.commands  # no login, no registry cache to pull or to build for
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
    stage, final = [c for c in recorder.commands if c[1] == "build"]
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
    assert recorder.planned[-1] == "docker push docker.io/team/conduit:buildcache"
    assert len(recorder.planned) == 8  # login, 2 pulls, 2 builds, 3 pushes
