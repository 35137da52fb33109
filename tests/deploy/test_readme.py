"""deploy/README.md shows the CI variables exactly as the tool declares them."""

from __future__ import annotations

import re
from pathlib import Path

from conduit_deploy import config
from conduit_deploy.cli import build_parser, main

README = Path(__file__).resolve().parents[2] / "deploy" / "README.md"
BLOCK = re.compile(
    r"<!-- variables: begin \(conduit-deploy variables\) -->\n(.*?)<!-- variables: end -->",
    re.DOTALL,
)


def readme_table() -> str:
    found = BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, "deploy/README.md needs exactly one variables block"
    return found[0].strip() + "\n"


def test_the_readme_table_is_the_tables_of_the_code():
    assert readme_table() == config.markdown_table(), (
        "deploy/README.md's variable table is out of date: paste `conduit-deploy variables` "
        "between its variables markers"
    )


def test_the_variables_command_prints_that_table(capsys):
    assert main(["variables"]) == 0
    assert capsys.readouterr().out == config.markdown_table()


def test_every_command_of_the_tool_is_documented():
    text = README.read_text(encoding="utf-8")
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for command in subcommands:
        assert f"| `{command}" in text, f"{command} is not in deploy/README.md's command table"
