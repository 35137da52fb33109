"""`flask test` and `flask lint`.

They are registered through the `flask.commands` entry point, so they run without
creating the app (and without its production settings).
"""

from __future__ import annotations

import os
import subprocess
import sys

import click


@click.command("test", context_settings={"ignore_unknown_options": True})
@click.option(
    "--postgres",
    is_flag=True,
    help="Run the API and migration tests against the server at TEST_DATABASE_URL.",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def test_command(postgres: bool, pytest_args: tuple[str, ...]) -> None:
    """Run the test suite with pytest (extra arguments go to pytest)."""
    env = dict(os.environ)
    if postgres:
        if not env.get("TEST_DATABASE_URL"):
            raise click.ClickException("--postgres needs TEST_DATABASE_URL (a PostgreSQL URL)")
        env["CONDUIT_TEST_BACKEND"] = "postgres"
        targets = ["tests/api"]
    else:
        env["CONDUIT_TEST_BACKEND"] = "sqlite"
        targets = ["tests"]
    if any(not arg.startswith("-") for arg in pytest_args):
        targets = []  # the caller named what to run
    # pytest exits 5 when it collected nothing: that is a failure here too.
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", *targets, *pytest_args], env=env))


@click.command("lint")
@click.argument("ruff_args", nargs=-1, type=click.UNPROCESSED)
def lint_command(ruff_args: tuple[str, ...]) -> None:
    """Run ruff's linter and format check; exit non-zero on any finding."""
    ruff = [sys.executable, "-m", "ruff"]
    checked = subprocess.call([*ruff, "check", *ruff_args, "."])
    # The format check reports on stderr so `--output-format` reports stay parseable.
    formatted = subprocess.call([*ruff, "format", "--check", "."], stdout=sys.stderr)
    sys.exit(checked or formatted)
