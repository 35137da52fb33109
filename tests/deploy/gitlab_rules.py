"""A small evaluator of GitLab CI `rules:` and `workflow:rules`, for tests.

Covers what .gitlab-ci.yml uses, as GitLab documents it: `$VAR` (unset is null, and
alone it is true when set and non-empty), string literals, `null`, `==`, `!=`, `=~`,
`!~` with /regex/ patterns, `&&` binding tighter than `||`, and parentheses.
The first rule whose `if` matches decides `when` (default on_success); when no rule
matches, the job is not added. A job without rules runs on_success.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
      | (?P<string>"[^"]*"|'[^']*')
      | (?P<regex>/(?:\\.|[^/\\])*/[a-z]*)
      | (?P<null>null\b)
      | (?P<op>==|!=|=~|!~|&&|\|\||\(|\))
    )""",
    re.VERBOSE,
)

KEYWORDS = {
    "stages",
    "workflow",
    "variables",
    "default",
    "include",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
    "spec",
}


class ExpressionError(ValueError):
    pass


def tokenize(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if not match or match.end() == position:
            raise ExpressionError(f"cannot parse {expression[position:]!r} in {expression!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, expression: str, variables: Mapping[str, str]):
        self.tokens = tokenize(expression)
        self.index = 0
        self.variables = variables
        self.expression = expression

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"unexpected end of {self.expression!r}")
        self.index += 1
        return token

    def parse(self) -> bool:
        value = self.or_expression()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.expression!r}")
        return value

    def or_expression(self) -> bool:
        value = self.and_expression()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_expression()
            value = value or right
        return value

    def and_expression(self) -> bool:
        value = self.primary()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.primary()
            value = value and right
        return value

    def primary(self) -> bool:
        if self.peek() == ("op", "("):
            self.take()
            value = self.or_expression()
            if self.take() != ("op", ")"):
                raise ExpressionError(f"missing ')' in {self.expression!r}")
            return value
        left = self.operand()
        token = self.peek()
        if token and token[0] == "op" and token[1] in {"==", "!=", "=~", "!~"}:
            operator = self.take()[1]
            right = self.operand()
            return self.compare(left, operator, right)
        kind, value = left
        return kind != "null" and bool(value)

    def operand(self) -> tuple[str, Any]:
        kind, text = self.take()
        if kind == "var":
            name = text.strip("${}")
            value = self.variables.get(name)
            return ("null", None) if value is None else ("string", value)
        if kind == "string":
            return ("string", text[1:-1])
        if kind == "regex":
            body, _, flags = text[1:].rpartition("/")
            return ("regex", re.compile(body, re.IGNORECASE if "i" in flags else 0))
        if kind == "null":
            return ("null", None)
        raise ExpressionError(f"expected a value, got {text!r} in {self.expression!r}")

    @staticmethod
    def compare(left, operator: str, right) -> bool:
        if operator in {"==", "!="}:
            equal = left[1] == right[1] if left[0] != "regex" and right[0] != "regex" else False
            return equal if operator == "==" else not equal
        pattern = right[1]
        if right[0] == "string":  # a variable holding a pattern
            pattern = re.compile(pattern.strip("/"))
        matched = left[0] == "string" and bool(pattern.search(left[1]))
        return matched if operator == "=~" else not matched


def evaluate(expression: str, variables: Mapping[str, str]) -> bool:
    return _Parser(expression, variables).parse()


def decide(rules: list[dict] | None, variables: Mapping[str, str]) -> str:
    """The job's `when` under these variables ('never' when it is not added)."""
    if rules is None:
        return "on_success"
    for rule in rules:
        if "if" not in rule or evaluate(rule["if"], variables):
            return rule.get("when", "on_success")
    return "never"


def merge(base: dict, override: dict) -> dict:
    """`extends:` merging: mappings deep-merge, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve(config: dict, name: str) -> dict:
    job = config[name]
    parents = job.get("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    resolved: dict = {}
    for parent in parents:
        resolved = merge(resolved, resolve(config, parent))
    return merge(resolved, {k: v for k, v in job.items() if k != "extends"})


def jobs(config: dict) -> dict[str, dict]:
    """Every visible job with its `extends:` resolved."""
    return {
        name: resolve(config, name)
        for name, value in config.items()
        if name not in KEYWORDS and not name.startswith(".") and isinstance(value, dict)
    }


def pipeline(config: dict, variables: Mapping[str, str]) -> dict[str, str] | None:
    """{job: when} for the jobs a pipeline with these variables gets, or None when
    workflow:rules create no pipeline."""
    workflow = (config.get("workflow") or {}).get("rules")
    if decide(workflow, variables) == "never":
        return None
    decided = {name: decide(job.get("rules"), variables) for name, job in jobs(config).items()}
    return {name: when for name, when in decided.items() if when != "never"}
