"""`flask test` and `flask lint` as a developer runs them."""

import os
import subprocess
import sys
from pathlib import Path

FLASK = [sys.executable, "-m", "flask"]


def run(args, cwd, **env):
    environment = {**os.environ, **env}
    environment.pop("FLASK_APP", None)  # the commands work without an app
    return subprocess.run(
        args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def test_lint_fails_on_findings_and_passes_clean_code(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\n")
    (tmp_path / "clean.py").write_text('print("ok")\n')
    assert run([*FLASK, "lint"], tmp_path).returncode == 0
    (tmp_path / "dirty.py").write_text("import os\n")
    result = run([*FLASK, "lint"], tmp_path)
    assert result.returncode != 0
    assert "F401" in result.stdout


def test_test_command_fails_when_no_test_runs(tmp_path: Path):
    (tmp_path / "tests").mkdir()
    result = run([*FLASK, "test", "-p", "no:cacheprovider"], tmp_path)
    assert result.returncode == 5  # pytest's "no tests collected" is not a pass


def test_test_command_needs_a_url_for_postgres(tmp_path: Path):
    result = run([*FLASK, "test", "--postgres"], tmp_path, TEST_DATABASE_URL="")
    assert result.returncode != 0
    assert "TEST_DATABASE_URL" in result.stderr
