"""The rule evaluator the pipeline tests rely on."""

from __future__ import annotations

import pytest

from .gitlab_rules import ExpressionError, decide, evaluate


@pytest.mark.parametrize(
    ("expression", "variables", "expected"),
    [
        ("$CI_COMMIT_TAG", {"CI_COMMIT_TAG": "v1"}, True),
        ("$CI_COMMIT_TAG", {"CI_COMMIT_TAG": ""}, False),
        ("$CI_COMMIT_TAG", {}, False),
        ('$CI_PIPELINE_SOURCE == "schedule"', {"CI_PIPELINE_SOURCE": "schedule"}, True),
        ('$CI_PIPELINE_SOURCE != "schedule"', {"CI_PIPELINE_SOURCE": "push"}, True),
        (
            "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
            {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"},
            True,
        ),
        ("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", {"CI_DEFAULT_BRANCH": "main"}, False),
        ("$UNSET == null", {}, True),
        (r"$CI_COMMIT_TAG =~ /^v\d+\.\d+\.\d+$/", {"CI_COMMIT_TAG": "v1.2.3"}, True),
        (r"$CI_COMMIT_TAG =~ /^v\d+\.\d+\.\d+$/", {"CI_COMMIT_TAG": "v1.2.3-rc1"}, False),
        (r"$CI_COMMIT_TAG =~ /^v\d+\.\d+\.\d+$/", {}, False),
        (r"$CI_COMMIT_TAG !~ /^v/", {"CI_COMMIT_TAG": "nightly"}, True),
        ('$A == "1" || $B == "1" && $C == "1"', {"A": "1"}, True),
        ('($A == "1" || $B == "1") && $C == "1"', {"A": "1"}, False),
    ],
)
def test_expressions(expression, variables, expected):
    assert evaluate(expression, variables) is expected


def test_first_matching_rule_decides():
    rules = [{"if": "$A", "when": "never"}, {"if": "$B", "when": "manual"}, {"if": "$B"}]
    assert decide(rules, {"A": "1", "B": "1"}) == "never"
    assert decide(rules, {"B": "1"}) == "manual"
    assert decide(rules, {}) == "never"
    assert decide(None, {}) == "on_success"


def test_garbage_is_an_error():
    with pytest.raises(ExpressionError):
        evaluate("$A === 1", {})
