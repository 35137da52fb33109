"""The runbooks say what the tool does: generated tables, versions, costs and snippets.

deploy/README.md, deploy/gitlab.md, deploy/google-cloud.md and k8s/README.md are read
by an operator who copies from them. Every fact the tool holds (the variables' type,
scope, protection and masking, the kops pin, the release's image tag, the preflight's
checks) is compared with the tool; every shell snippet is parsed by bash, every
`conduit-deploy` line by the tool's own parser, and the snippets marked
`<!-- docs-test: run -->` are run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conduit_deploy import config, tools
from conduit_deploy.cli import build_parser, main
from conduit_deploy.gcp import GcpClient
from conduit_deploy.preflight import PROJECT_PERMISSIONS, Target, checks
from conduit_deploy.runner import Runner
from conduit_deploy.versioning import build_info

from .support import tag_environ

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "deploy" / "README.md"
GOOGLE_CLOUD = ROOT / "deploy" / "google-cloud.md"
DOCS = [README, ROOT / "deploy" / "gitlab.md", GOOGLE_CLOUD, ROOT / "k8s" / "README.md"]
GENERATED = re.compile(
    r"<!-- variables: begin \(conduit-deploy (variables[^)]*)\) -->\n(.*?)<!-- variables: end -->",
    re.DOTALL,
)
FENCE = re.compile(r"(<!-- docs-test: run -->\n)?```(\w*)\n(.*?)```", re.DOTALL)
SHELLS = ("bash", "sh", "console")


@dataclass(frozen=True)
class Snippet:
    doc: Path
    line: int
    language: str
    text: str  # the commands (for console blocks, the lines after "$ ")
    run: bool  # marked to be run by this test

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            marker, language, body = match.groups()
            if language not in SHELLS:
                continue
            if language == "console":
                body = "".join(line[2:] + "\n" for line in body.splitlines() if line[:2] == "$ ")
            line = text.count("\n", 0, match.start(2)) + 1
            found.append(Snippet(doc, line, language, body, bool(marker)))
    return found


SNIPPETS = snippets()


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- generated tables ---------------------------------------------------------------


def test_every_variables_table_of_the_docs_is_what_the_tool_prints(capsys):
    blocks = [(doc, *block) for doc in DOCS for block in GENERATED.findall(read(doc))]
    assert {doc.name for doc, *_ in blocks} >= {"README.md", "google-cloud.md"}
    for doc, command, table in blocks:
        assert main(command.split()) == 0
        assert table == capsys.readouterr().out, (
            f"{doc.relative_to(ROOT)}: the table is out of date: paste "
            f"`conduit-deploy {command}` between its variables markers"
        )


def test_the_variables_command_prints_the_tables(capsys):
    assert main(["variables"]) == 0
    assert capsys.readouterr().out == config.markdown_table()
    assert main(["variables", "--settings"]) == 0
    assert capsys.readouterr().out == config.settings_table()


def test_every_command_of_the_tool_is_documented():
    text = read(README)
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for command in subcommands:
        assert f"| `{command}" in text, f"{command} is not in deploy/README.md's command table"


def test_no_runbook_states_masking_by_hand():
    # Protection and masking come from the generated tables only; the old hand-written
    # contradictions ("protected, masked" keys; "mark the secrets masked") stay out.
    for doc in DOCS:
        text = " ".join(GENERATED.sub("", read(doc)).split())
        for phrase in ("protected, masked", "(protected, masked)", "Mark the secrets"):
            assert phrase not in text, f"{doc.relative_to(ROOT)} says {phrase!r} by hand"


# --- one truth per fact ----------------------------------------------------------------

KOPS_VERSION_MENTION = re.compile(r"\bkops'?\s+v?(\d+\.\d+\.\d+)|k8s-staging-kops/(\d+\.\d+\.\d+)")


def test_the_kops_version_in_the_docs_is_the_pinned_one():
    mentions = {
        (doc.name, version)
        for doc in DOCS
        for match in KOPS_VERSION_MENTION.finditer(read(doc))
        for version in match.groups()
        if version
    }
    assert {version for _, version in mentions} == {tools.KOPS_VERSION}, mentions
    assert {doc for doc, _ in mentions} >= {"README.md", "google-cloud.md"}


def test_a_release_tag_is_the_image_tag_the_runbook_names():
    tag = re.search(r"git tag (v\d+\.\d+\.\d+)", read(GOOGLE_CLOUD)).group(1)
    version = build_info(tag_environ(tag), Runner()).version
    assert f"conduit:{version}`" in read(GOOGLE_CLOUD)
    assert f"image `{version.removeprefix('v')}`" not in read(GOOGLE_CLOUD)


def test_base64_is_portable_everywhere():
    texts = [read(doc) for doc in DOCS] + [config.markdown_table()]
    assert not [t for t in texts if "base64 -w0" in t]
    assert "base64 | tr -d '\\n'" in read(GOOGLE_CLOUD)


def test_the_preflight_sample_lists_the_checks_in_the_order_they_run():
    sample = next(
        s for s in re.findall(r"```console\n(.*?)```", read(GOOGLE_CLOUD), re.DOTALL)
        if "preflight dev" in s
    )  # fmt: skip
    shown = re.findall(r"^  ok    ([^:]+):", sample, re.MULTILINE)
    target = Target("dev", "p-123456", "gs://state", "dev.x.k8s.local", backup_bucket="b-dev")
    ran = [check.name for check in checks(target, GcpClient({}), GcpClient({}))]
    assert shown == [*ran, "registry credentials"]
    assert f"all {len(PROJECT_PERMISSIONS)} permissions kops needs" in sample


# --- one cost table, matching the manifests -------------------------------------------

COSTS = re.compile(r"<!-- costs: begin -->\n(.*?)<!-- costs: end -->", re.DOTALL)
TIMES = "\N{MULTIPLICATION SIGN}"  # the table writes "3 TIMES 50 GiB"
DOLLARS = re.compile(r"\$(\d+(?:,\d{3})*\.\d{2})")


def cost_rows() -> dict[str, list[str]]:
    (table,) = COSTS.findall(read(GOOGLE_CLOUD))
    rows = [row.strip("|").split("|") for row in table.strip().splitlines()[2:]]
    return {cells[0].strip(" *"): [c.strip() for c in cells[1:]] for cells in rows}


def test_there_is_one_cost_table():
    assert sum(len(COSTS.findall(read(doc))) for doc in DOCS) == 1
    assert not DOLLARS.search(read(ROOT / "k8s" / "README.md")), "prices belong in the table"


def test_the_cost_totals_add_up():
    rows = cost_rows()
    total = rows.pop("Total")
    for column in (0, 1):
        amounts = [
            float(DOLLARS.findall(cells[column])[-1].replace(",", "")) for cells in rows.values()
        ]
        stated = float(DOLLARS.findall(total[column])[-1].replace(",", ""))
        assert round(sum(amounts), 2) == stated


@pytest.mark.parametrize(("environment", "column"), [("dev", 0), ("prod", 1)])
def test_the_cost_table_prices_the_database_volumes_the_overlay_declares(environment, column):
    cluster = yaml.safe_load(
        read(ROOT / "k8s" / "overlays" / environment / "postgres-cluster.yaml")
    )
    instances = cluster["spec"]["instances"]
    size = cluster["spec"]["storage"]["size"].removesuffix("Gi")
    assert cost_rows()["Database volumes"][column].startswith(f"{instances} {TIMES} {size} GiB")


@pytest.mark.parametrize(("environment", "column"), [("dev", 0), ("prod", 1)])
def test_the_cost_table_prices_the_machines_kops_creates(environment, column):
    values = yaml.safe_load(read(ROOT / "k8s" / "kops" / "values" / f"{environment}.yaml"))
    rows = cost_rows()
    control_planes = len(values["control_plane_zones"])
    workers = len(values["node_zones"]) * values["nodes_per_zone"]
    assert rows["Control plane VMs"][column].startswith(
        f"{control_planes} {TIMES} {values['control_plane_machine_type']}:"
    )
    assert rows["Worker VMs"][column].startswith(
        f"{workers} {TIMES} {values['node_machine_type']}:"
    )


# --- the snippets --------------------------------------------------------------------


def test_the_docs_have_snippets_and_one_is_run():
    assert len(SNIPPETS) > 15
    assert any(s.run for s in SNIPPETS)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=str)
def test_every_shell_snippet_parses(snippet):
    shell = "sh" if snippet.language == "sh" else "bash"
    result = subprocess.run(
        [shutil.which(shell) or shell, "-n"], input=snippet.text, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{snippet}: {result.stderr}"


def conduit_deploy_lines(text: str) -> list[list[str]]:
    """The argument lists of every conduit-deploy call in a snippet."""
    calls = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for index, word in enumerate(words):
            if word.endswith("conduit-deploy"):
                args = words[index + 1 :]
                stop = next((i for i, a in enumerate(args) if a in {">", "|", "&&", ";"}), None)
                calls.append(args[:stop])
    return calls


@pytest.mark.parametrize(
    "snippet", [s for s in SNIPPETS if "conduit-deploy" in s.text], ids=str
)  # fmt: skip
def test_every_conduit_deploy_line_is_one_the_tool_accepts(snippet):
    for args in conduit_deploy_lines(snippet.text):
        if args in (["--help"], []):
            continue
        try:
            build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{snippet}: conduit-deploy {' '.join(args)} is refused by the tool")


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.run], ids=str)
def test_the_snippets_marked_to_run_work(snippet, tmp_path):
    # Run as a reader would, from the repository's root with the virtualenv's programs
    # first on PATH, and none of the deploy variables set beforehand.
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in config.VARIABLES}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail"],
        input=snippet.text,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{snippet}:\n{result.stdout}\n{result.stderr}"


def test_the_runbooks_base64_command_gives_what_the_tool_decodes():
    # A token long enough that base64 wraps its output (76 columns in GNU coreutils).
    token = "dckr_pat_" + "Ab3+/x" * 20
    (snippet,) = [s for s in SNIPPETS if "| base64 | tr -d" in s.text and s.doc == GOOGLE_CLOUD]
    encoded = subprocess.run(
        ["bash", "-e"], input=snippet.text, env={**os.environ, "TOKEN": token},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "\n" not in encoded
    assert config.DOCKER_REGISTRY_PASSWORD.parse(encoded) == token
