"""Version and target environment: from CI variables, or from git outside CI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conduit_deploy.cli import Context, main
from conduit_deploy.errors import ConfigError
from conduit_deploy.runner import Result, Runner
from conduit_deploy.versioning import build_info, target_environment

from .support import ci_environ, tag_environ


@pytest.mark.parametrize(
    ("tag", "branch", "source", "expected"),
    [
        (None, "main", "push", "dev"),
        (None, "main", "web", "dev"),
        (None, "feature", "push", "none"),
        (None, "main", "schedule", "none"),
        (None, "main", "merge_request_event", "none"),
        ("v1.2.3", None, "push", "prod"),
        ("v10.20.30", None, "push", "prod"),
        ("v1.2", None, "push", "none"),
        ("v1.2.3-rc1", None, "push", "none"),
        ("1.2.3", None, "push", "none"),
        ("nightly", None, "push", "none"),
    ],
)
def test_target_environment(tag, branch, source, expected):
    assert (
        target_environment(tag=tag, branch=branch, default_branch="main", source=source) == expected
    )


def test_branch_build_is_versioned_by_short_sha_and_tagged_latest(recorder):
    info = build_info(ci_environ(), recorder.runner())
    assert (info.version, info.environment, info.default_branch) == ("01234567", "dev", True)
    assert recorder.calls == []  # CI variables only: no git


def test_tag_build_is_versioned_by_tag(recorder):
    info = build_info(tag_environ("v1.2.3"), recorder.runner())
    assert (info.version, info.environment, info.default_branch) == ("v1.2.3", "prod", False)


def test_a_tag_that_cannot_name_an_image_is_refused(recorder):
    with pytest.raises(ConfigError, match="cannot be an image tag"):
        build_info(tag_environ("release/1.0"), recorder.runner())


def git_answers(tag: str | None):
    def respond(args):
        if args[:2] == ("git", "describe"):
            return Result(args, 0, f"{tag}\n") if tag else Result(args, 128, "", "fatal: no tag")
        if args == ("git", "rev-parse", "--short", "HEAD"):
            return Result(args, 0, "abc1234\n")
        if args == ("git", "rev-parse", "HEAD"):
            return Result(args, 0, "abc1234" + "0" * 33 + "\n")
        raise AssertionError(args)

    return respond


def test_outside_ci_the_version_is_the_tag_on_head(recorder):
    recorder.respond = git_answers("v2.0.0")
    info = build_info({}, recorder.runner())
    assert (info.version, info.environment, info.in_ci) == ("v2.0.0", "prod", False)
    assert ("git", "describe", "--tags", "--exact-match", "HEAD") in recorder.commands


def test_outside_ci_without_a_tag_the_version_is_the_short_hash(recorder):
    recorder.respond = git_answers(None)
    info = build_info({}, recorder.runner())
    assert (info.version, info.environment) == ("abc1234", "none")


def test_outside_ci_git_runs_even_in_a_dry_run(recorder):
    recorder.respond = git_answers(None)
    info = build_info({}, recorder.runner(dry_run=True))
    assert info.version == "abc1234"
    assert recorder.planned == []


def run_cli(argv, environ, recorder, capsys):
    code = main(argv, Context(environ=environ, runner_factory=recorder.runner))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_prints_a_dotenv_block(recorder, capsys):
    code, out, _ = run_cli(["version"], tag_environ("v1.2.3"), recorder, capsys)
    assert code == 0
    assert out == (
        "CONDUIT_VERSION=v1.2.3\nCONDUIT_ENVIRONMENT=prod\nCONDUIT_IMAGE=docker.io/team/conduit:v1.2.3\n"
    )


def test_version_tag_only_prints_just_the_tag(recorder, capsys):
    environ = {"CI_COMMIT_SHORT_SHA": "deadbeef"}  # no registry variables needed
    code, out, err = run_cli(["version", "--tag-only"], environ, recorder, capsys)
    assert (code, out, err) == (0, "deadbeef\n", "")


def test_version_of_a_merge_request_targets_no_environment(recorder, capsys):
    environ = ci_environ(CI_PIPELINE_SOURCE="merge_request_event", CI_COMMIT_BRANCH=None)
    _, out, _ = run_cli(["version"], environ, recorder, capsys)
    assert "CONDUIT_ENVIRONMENT=none\n" in out


# --- git's refusals, with the real git ------------------------------------------------


@pytest.fixture
def checkout(tmp_path) -> Path:
    folder = tmp_path / "checkout"
    folder.mkdir()
    git = ["git", "-C", str(folder), "-c", "user.email=a@example.com", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    return folder


def version_in(folder: Path) -> str:
    # The real runner and the real git, outside CI.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return build_info({}, Runner()).version


def test_the_version_of_a_real_checkout_is_its_short_hash(checkout):
    expected = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version_in(checkout) == expected


def test_outside_a_checkout_says_so(tmp_path):
    with pytest.raises(ConfigError) as raised:
        version_in(tmp_path)
    assert "not a git repository" in str(raised.value)
    assert "run inside the git checkout, or set CI_COMMIT_SHORT_SHA" in str(raised.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the checkout to another user")
def test_a_checkout_owned_by_another_user_is_reported_as_such(checkout):
    # The case of a checkout mounted into a container that runs as another user.
    for path in (checkout, *checkout.rglob("*")):
        os.chown(path, 65534, 65534, follow_symlinks=False)
    with pytest.raises(ConfigError) as raised:
        version_in(checkout)
    message = str(raised.value)
    assert message == (
        f"cannot tell the version: git refuses the checkout {checkout}, which belongs to "
        'another user ("dubious ownership"): run as its owner, or trust it with '
        f"`git config --global --add safe.directory {checkout}`; or set CI_COMMIT_SHORT_SHA"
    )
    assert "run inside the git checkout" not in message
