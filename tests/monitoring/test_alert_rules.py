"""The PrometheusRule is valid for Prometheus, and each alert is proven to fire and not to.

The rule groups are taken from the kustomize build of k8s/monitoring (what the deploy
applies) and written as a plain rules file for promtool.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.test_monitoring_manifests import built_objects
from tests.support import require_program

RULE_TESTS = Path(__file__).parent / "rules"
RULES_FILE = "conduit.rules.yaml"  # the name the test files' rule_files expect


def rule_groups() -> list[dict]:
    (rule,) = [o for o in built_objects() if o["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"]


def alert_names() -> set[str]:
    return {r["alert"] for group in rule_groups() for r in group["rules"] if "alert" in r}


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    for test_file in RULE_TESTS.glob("*.test.yaml"):
        shutil.copy(test_file, tmp_path)
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_program("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_accepts_the_rules(rules_dir):
    result = promtool("check", "rules", RULES_FILE, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule_groups())} rules found" in result.stdout


def test_promtool_unit_tests_pass(rules_dir):
    test_files = sorted(p.name for p in rules_dir.glob("*.test.yaml"))
    assert test_files, f"no *.test.yaml in {RULE_TESTS}"
    result = promtool("test", "rules", *test_files, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    fires, silent = set(), set()
    for test_file in RULE_TESTS.glob("*.test.yaml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = alert_names()
    assert alerts, "the PrometheusRule has no alerts"
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - silent == set(), "alerts never shown to stay silent"
    assert (fires | silent) - alerts == set(), "tests of alerts that do not exist"


def test_requested_alerts_exist():
    # error ratio, p99 latency, pod restarts, readiness, PostgreSQL reachability
    assert {
        "ConduitHighErrorRatio",
        "ConduitHighLatencyP99",
        "ConduitPodRestarting",
        "ConduitPodNotReady",
        "ConduitPostgresUnreachable",
    } <= alert_names()


def test_alerts_are_routable_and_explained():
    for group in rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"].strip(), rule["alert"]
            assert rule["annotations"]["description"].strip(), rule["alert"]
