"""Evaluate AWS IoT Core policies the way IoT Core does, for the sandbox's MQTT broker.

``is_allowed(policies, action, resource, variables)`` answers one question: may a connection whose
certificate carries ``policies`` perform ``action`` (``iot:Connect``, ``iot:Publish``,
``iot:Subscribe``, ``iot:Receive``, ...) on ``resource`` (a full ARN such as
``arn:aws:iot:us-east-1:123456789012:topic/iotbutton/G030JF0553648RUH``)?

The rules, as IoT Core applies them:

* an explicit ``Deny`` wins over any ``Allow``; with neither, the answer is no;
* ``Action`` and ``Resource`` are a string or a list; ``*`` matches any run of characters (``/``
  and ``:`` included) and ``?`` exactly one; actions compare case-insensitively, resources do not;
* ``+`` and ``#`` are ordinary characters in a policy: ``topicfilter/iotbutton/+`` matches only the
  filter ``iotbutton/+``, never the topic ``iotbutton/x``;
* policy variables (``${iot:Connection.Thing.ThingName}``, ``${iot:ClientId}``, ...) are replaced by
  the connection's values, which match literally (a ``*`` in a client id is not a wildcard). A
  variable the connection has no value for makes the statement match nothing: the broker gives
  ``iot:Connection.Thing.ThingName`` a value only for a thing the certificate is attached to
  exclusively, or (non-exclusively) the thing its client id names (see broker.py). ``${*}``,
  ``${?}`` and ``${$}`` stand for a literal ``*``, ``?`` and ``$``. Variables are only read in
  documents of ``Version`` 2012-10-17, as in IAM;
* conditions: ``Bool``, ``StringEquals`` and ``StringLike`` on the connection's variables (several
  keys: all must hold; several values for a key: any may). Any other operator is not understood,
  and the sandbox fails closed: such an ``Allow`` statement grants nothing and such a ``Deny``
  statement denies as if its condition held. Either way a warning is logged (once; DEBUG after).

``NotAction`` / ``NotResource`` are not supported either: an ``Allow`` using them grants nothing,
a ``Deny`` using them denies every request.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

VARIABLES_VERSION = "2012-10-17"
SUPPORTED_OPERATORS = ("Bool", "StringEquals", "StringLike")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


class _Unresolved(Exception):
    """A policy variable the connection has no value for."""


def is_allowed(
    policies: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    variables: Mapping[str, str],
) -> bool:
    """True if some statement allows ``action`` on ``resource`` and none denies it."""
    lookup = {name.lower(): value for name, value in variables.items()}
    allowed = False
    for policy in policies:
        for statement in _statements(policy):
            verdict = _statement_verdict(policy, statement, action, resource, lookup)
            if verdict == "Deny":
                return False
            if verdict == "Allow":
                allowed = True
    return allowed


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = policy.get("Statement", [])
    if isinstance(statements, Mapping):
        return [statements]
    return [s for s in statements if isinstance(s, Mapping)]


def _statement_verdict(
    policy: Mapping[str, Any],
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    variables: Mapping[str, str],
) -> str | None:
    """``"Allow"`` or ``"Deny"`` if the statement applies to this request, else None."""
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        return None
    unsupported = [key for key in ("NotAction", "NotResource", "NotPrincipal") if key in statement]
    if unsupported:
        return _fail_closed(effect, statement, f"unsupported element(s) {', '.join(unsupported)}")
    if not any(
        _glob(pattern, case_sensitive=False).fullmatch(action)
        for pattern in _as_list(statement.get("Action"))
    ):
        return None
    with_variables = policy.get("Version") == VARIABLES_VERSION
    if not any(
        _resource_matches(pattern, resource, variables, with_variables)
        for pattern in _as_list(statement.get("Resource"))
    ):
        return None
    condition = statement.get("Condition")
    if condition:
        if not isinstance(condition, Mapping):
            return _fail_closed(effect, statement, "a malformed Condition")
        unknown = sorted(op for op in condition if op not in SUPPORTED_OPERATORS)
        if unknown:
            return _fail_closed(effect, statement, f"condition operator(s) {', '.join(unknown)}")
        if not _conditions_hold(condition, variables, with_variables):
            return None
    return str(effect)


def _fail_closed(effect: str, statement: Mapping[str, Any], what: str) -> str | None:
    sid = statement.get("Sid", "(no Sid)")
    if effect == "Allow":
        _warn_once(f"policy statement {sid} grants nothing: the sandbox does not support {what}")
        return None
    _warn_once(f"policy statement {sid} denies regardless: the sandbox does not support {what}")
    return "Deny"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning the first time (per process), then DEBUG: policies are evaluated per message."""
    if message in _warned:
        logger.debug(message)
        return
    _warned.add(message)
    logger.warning(message)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _resource_matches(
    pattern: str, resource: str, variables: Mapping[str, str], with_variables: bool
) -> bool:
    try:
        regex = _pattern_regex(pattern, variables if with_variables else None)
    except _Unresolved as exc:
        logger.debug("resource %s matches nothing: no value for ${%s}", pattern, exc)
        return False
    return regex.fullmatch(resource) is not None


def _pattern_regex(pattern: str, variables: Mapping[str, str] | None) -> re.Pattern[str]:
    """Compile a policy pattern: ``*``/``?`` are wildcards, substituted values are literal."""
    if variables is None:
        return _glob(pattern, case_sensitive=True)
    parts: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(pattern):
        parts.append(_glob_source(pattern[position : match.start()]))
        parts.append(re.escape(_variable_value(match.group(1), variables)))
        position = match.end()
    parts.append(_glob_source(pattern[position:]))
    return re.compile("".join(parts), re.DOTALL)


def _variable_value(name: str, variables: Mapping[str, str]) -> str:
    if name in _ESCAPES:
        return _ESCAPES[name]
    value = variables.get(name.strip().lower())
    if value is None:
        raise _Unresolved(name)
    return value


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.compile(_glob_source(pattern), flags)


def _glob_source(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _conditions_hold(
    condition: Mapping[str, Any], variables: Mapping[str, str], with_variables: bool
) -> bool:
    """Every key of every operator must hold; a key holds if any of its values matches."""
    for operator, tests in condition.items():
        if not isinstance(tests, Mapping):
            return False
        for key, expected in tests.items():
            actual = variables.get(str(key).lower())
            if actual is None:
                return False
            values = expected if isinstance(expected, list) else [expected]
            if not any(
                _condition_test(operator, actual, str(value), variables, with_variables)
                for value in values
            ):
                return False
    return True


def _condition_test(
    operator: str, actual: str, expected: str, variables: Mapping[str, str], with_variables: bool
) -> bool:
    try:
        if operator == "StringLike":
            regex = _pattern_regex(expected, variables if with_variables else None)
            return regex.fullmatch(actual) is not None
        if with_variables:
            expected = _VARIABLE.sub(lambda m: _variable_value(m.group(1), variables), expected)
    except _Unresolved:
        return False
    if operator == "Bool":
        return actual.lower() == expected.lower()
    return actual == expected  # StringEquals
