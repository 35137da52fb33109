"""A ValidatingAdmissionPolicy evaluated as the API server does, with a real CEL
implementation (common-expression-language 0.10.0: Python bindings of the Rust
cel-interpreter; the CEL spec's standard definitions and macros). Not cel-python 0.5.0:
it has no `!=` between a map and null (`object != null` fails to evaluate), which CEL's
heterogeneous equality, and so Kubernetes' cel-go, defines.

What the API server does, and what this follows (Kubernetes 1.35):
- matchConstraints.resourceRules select the request by group, version, operation and
  resource ("*" matches any); a request no rule selects is not the policy's business.
- matchConditions all true, or the policy does not apply to the request.
- every validation must evaluate to true; false denies with its message. An expression
  that fails to evaluate follows failurePolicy (Fail: deny).
- the variables (admissionregistration/v1 Validation.expression; apiserver
  pkg/admission/plugin/cel/activation.go, newActivation): `object` (null on DELETE),
  `oldObject` (null on CREATE), `request` (an admission/v1 AdmissionRequest:
  staging/src/k8s.io/api/admission/v1/types.go), `namespaceObject` (null for a
  cluster-scoped resource).

Not modelled: `params`, `variables`, `authorizer` and Kubernetes' CEL extension libraries
(strings, lists, regex, quantity, ...; kubernetes.io/docs/reference/using-api/cel,
"CEL options, language features, and libraries"): CEL_STANDARD_FUNCTIONS says which
functions a policy may call to be evaluated here, and `functions_called` lists what an
expression calls, from the compiled program.
Kubernetes also type-checks expressions against the resources' OpenAPI schemas; here
objects are plain maps, so a field the schema lacks is an evaluation error, not a
compile error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import cel

# CEL's standard operators and functions (github.com/google/cel-spec, langdef.md,
# "Standard Definitions"), as the compiled program names them; macros such as has() and
# all() are expanded by the parser and name no function.
CEL_STANDARD_FUNCTIONS = frozenset(
    {"_==_", "_!=_", "_&&_", "_||_", "!_", "@in", "@not_strictly_false", "_<_", "_<=_",
     "_>_", "_>=_", "_+_", "_-_", "_[_]", "_?_:_", "size", "contains", "startsWith",
     "endsWith", "matches", "int", "uint", "double", "string", "bool", "type"}
)  # fmt: skip


def functions_called(expression: str) -> set[str]:
    """The functions and operators an expression calls (ValueError: it does not parse)."""
    return set(cel.compile(expression).functions())


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""  # why it was denied
    applied: bool = True  # False: the policy does not select this request


def admission_request(
    operation: str,
    *,
    group: str,
    version: str,
    resource: str,
    kind: str,
    username: str,
    groups: tuple[str, ...] = (),
    name: str = "",
    namespace: str = "",
    obj: dict | None = None,
    old: dict | None = None,
) -> dict:
    """An AdmissionRequest (admission/v1) as the API server builds it for this write."""
    return {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": username, "uid": str(uuid.uuid4()), "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }


def _selects(rules: list[dict], request: dict) -> bool:
    def has(values: list[str], value: str) -> bool:
        return "*" in values or value in values

    resource = request["resource"]
    return any(
        has(rule.get("apiGroups", []), resource["group"])
        and has(rule.get("apiVersions", []), resource["version"])
        and has(rule.get("operations", []), request["operation"])
        and has(rule.get("resources", []), resource["resource"])
        for rule in rules
    )


def _evaluate(expression: str, activation: dict) -> bool:
    result = cel.compile(expression).execute(activation)
    if not isinstance(result, bool):
        raise TypeError(f"{expression!r} gave {result!r}, not a bool")
    return result


def admit(policy: dict, request: dict, namespace_object: dict | None) -> Decision:
    """The policy's decision on one request (its binding's validationActions: Deny)."""
    spec = policy["spec"]
    if not _selects(spec["matchConstraints"]["resourceRules"], request):
        return Decision(True, applied=False)
    activation = {
        "object": request["object"],
        "oldObject": request["oldObject"],
        "request": request,
        "namespaceObject": namespace_object,
    }
    fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
    for condition in spec.get("matchConditions", []):
        try:
            matched = _evaluate(condition["expression"], activation)
        except Exception as error:  # any evaluation error follows failurePolicy
            return Decision(not fail_closed, f"matchCondition {condition['name']}: {error}")
        if not matched:
            return Decision(True, applied=False)
    for validation in spec["validations"]:
        try:
            valid = _evaluate(validation["expression"], activation)
        except Exception as error:
            if fail_closed:
                return Decision(False, f"expression failed: {error}")
            continue
        if not valid:
            return Decision(False, validation.get("message", validation["expression"]))
    return Decision(True)
