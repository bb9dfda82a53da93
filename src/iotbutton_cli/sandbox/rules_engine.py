"""A small AWS IoT rules engine: the topic rules stored in moto, applied to published messages.

The SQL is read by :mod:`iotbutton_cli.aws.iotsql`, the same parser ``rules create`` checks with, so
a rule iotbutton accepts is a rule the sandbox runs. Evaluation follows IoT SQL: ``topic(n)`` is the
topic's n-th level counted from 1 (``topic()`` the whole topic); a field or level that does not
exist is undefined, leaves its key out of the message and makes a comparison not true; values of
different types (string, number, boolean) compare as not true; SELECT items are applied in order, so
``SELECT *, topic(2) AS topicSerial`` sets ``topicSerial`` from the topic even when the payload has
one; ``timestamp()`` is when the broker received the message (milliseconds since the epoch), the
same value for every rule the message matches. A rule the parser refuses is logged and skipped.
Lambda actions are run; other actions are logged as not emulated.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.aws import iotsql

log = logging.getLogger("iotbutton.sandbox.rules")


class _Undefined:
    """IoT SQL's Undefined: a field or topic level that is not there."""


UNDEFINED = _Undefined()


class RuleSyntaxError(ValueError):
    """A rule uses SQL this emulation does not understand."""


@dataclass(frozen=True)
class Rule:
    name: str
    sql: str
    statement: iotsql.Statement
    lambda_arns: list[str]
    other_actions: list[str]
    enabled: bool

    @property
    def topic_filter(self) -> str:
        return self.statement.topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching: ``+`` is one level, ``#`` the rest (at the end)."""
    filter_levels, topic_levels = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def parse_rule(name: str, payload: dict[str, Any]) -> Rule:
    sql = payload.get("sql", "")
    try:
        statement = iotsql.parse(sql)
    except iotsql.IotSqlError as exc:
        raise RuleSyntaxError(f"rule {name}: cannot parse SQL {sql!r} at {exc}") from None
    lambdas, others = [], []
    for action in payload.get("actions", []):
        for kind, settings in action.items():
            if kind == "lambda":
                lambdas.append(settings["functionArn"])
            else:
                others.append(kind)
    return Rule(
        name=name,
        sql=sql,
        statement=statement,
        lambda_arns=lambdas,
        other_actions=others,
        enabled=not payload.get("ruleDisabled", False),
    )


def evaluate(
    rule: Rule, topic: str, payload: bytes, received_ms: int | None = None
) -> dict[str, Any] | None:
    """The message the rule's actions receive, or None if the rule does not fire.
    ``received_ms`` is the broker's receive time (now, if not given)."""
    if not rule.enabled or not topic_matches(rule.topic_filter, topic):
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        log.info("rule %s: payload on %s is not JSON; skipped", rule.name, topic)
        return None
    if not isinstance(document, dict):
        return None
    message = _Message(document, topic, received_ms or int(time.time() * 1000))
    where = rule.statement.where
    if where is not None and not _truthy(where, message):
        return None
    return _selected(rule.statement.select, message)


@dataclass(frozen=True)
class _Message:
    """What a rule's expressions read: the payload, its topic and when it arrived."""

    document: dict[str, Any]
    topic: str
    received_ms: int


def _selected(select: tuple[iotsql.SelectItem, ...], message: _Message) -> dict[str, Any]:
    selected: dict[str, Any] = {}
    for item in select:
        if isinstance(item.expression, iotsql.Star):
            selected.update(message.document)
            continue
        value = _value(item.expression, message)
        if value is not UNDEFINED and item.name is not None:
            selected[item.name] = value
    return selected


def topic_level(topic: str, level: int | None) -> str | _Undefined:
    """``topic(level)`` as IoT computes it: levels count from 1; None is the whole topic."""
    if level is None:
        return topic
    levels = topic.split("/")
    return levels[level - 1] if level <= len(levels) else UNDEFINED


def _value(operand: iotsql.Operand, message: _Message) -> Any:
    if isinstance(operand, iotsql.Literal):
        return operand.value
    if isinstance(operand, iotsql.Topic):
        return topic_level(message.topic, operand.level)
    if isinstance(operand, iotsql.Timestamp):
        return message.received_ms
    value: Any = message.document
    for part in operand.path:
        if not isinstance(value, dict) or part not in value:
            return UNDEFINED
        value = value[part]
    return value


def _truthy(node: iotsql.Condition, message: _Message) -> bool:
    if isinstance(node, iotsql.Junction):
        left = _truthy(node.left, message)
        if node.op == "AND":
            return left and _truthy(node.right, message)
        return left or _truthy(node.right, message)
    if isinstance(node, iotsql.Not):
        return not _truthy(node.operand, message)
    left, right = _value(node.left, message), _value(node.right, message)
    return _compare(node.op, left, right)


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _compare(op: str, left: Any, right: Any) -> bool:
    """IoT SQL: undefined values, nulls and values of different types are never comparable."""
    kind = _kind(left)
    if kind is None or kind != _kind(right):
        return False
    if op == "=":
        return bool(left == right)
    if op in ("<>", "!="):
        return bool(left != right)
    if kind == "boolean":
        return False
    return bool(
        {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    )


def rules_from_moto(account: str, region: str) -> list[Rule]:
    """The topic rules moto stores now (read on every message, so new rules apply at once)."""
    from moto.iot.models import iot_backends

    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    backend = iot_backends[account][region]
    rules = []
    with MOTO_LOCK:
        stored_rules = list(backend.rules.items())
    for name, stored in stored_rules:
        payload = {
            "sql": stored.sql,
            "actions": stored.actions,
            "ruleDisabled": stored.rule_disabled,
        }
        try:
            rules.append(parse_rule(name, payload))
        except RuleSyntaxError as exc:
            log.warning("%s; the sandbox skips this rule", exc)
    return rules
