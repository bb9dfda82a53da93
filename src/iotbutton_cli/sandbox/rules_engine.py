"""A small AWS IoT rules engine: the topic rules stored in moto, applied to published messages.

It understands what iotbutton's rules use, and says so when a rule uses more: ``SELECT`` of ``*``
or named fields (with ``AS``), ``FROM`` a topic filter with ``+`` and ``#``, and a ``WHERE`` made of
comparisons (``=``, ``<>``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) between payload fields, quoted
strings and numbers, joined by ``AND`` / ``OR`` with parentheses and ``NOT``. Lambda actions are
run; other actions are logged as not emulated.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("iotbutton.sandbox.rules")

STATEMENT = re.compile(
    r"^\s*SELECT\s+(?P<select>.+?)\s+FROM\s+'(?P<topic>[^']+)'(?:\s+WHERE\s+(?P<where>.+?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<op><>|!=|<=|>=|=|<|>)"
    r"|(?P<paren>[()])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


class RuleSyntaxError(ValueError):
    """A rule uses SQL this emulation does not understand."""


@dataclass(frozen=True)
class Rule:
    name: str
    sql: str
    topic_filter: str
    select: list[tuple[str, str]]  # (field, alias); [("*", "*")] for everything
    where: Any  # parsed condition tree, or None
    lambda_arns: list[str]
    other_actions: list[str]
    enabled: bool


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
    match = STATEMENT.match(payload.get("sql", ""))
    if match is None:
        raise RuleSyntaxError(f"rule {name}: cannot parse SQL {payload.get('sql')!r}")
    select = _parse_select(match.group("select"))
    where = _Parser(match.group("where")).parse() if match.group("where") else None
    lambdas, others = [], []
    for action in payload.get("actions", []):
        for kind, settings in action.items():
            if kind == "lambda":
                lambdas.append(settings["functionArn"])
            else:
                others.append(kind)
    return Rule(
        name=name,
        sql=payload["sql"],
        topic_filter=match.group("topic"),
        select=select,
        where=where,
        lambda_arns=lambdas,
        other_actions=others,
        enabled=not payload.get("ruleDisabled", False),
    )


def _parse_select(text: str) -> list[tuple[str, str]]:
    fields = []
    for part in text.split(","):
        pieces = re.split(r"\s+AS\s+", part.strip(), flags=re.IGNORECASE)
        field = pieces[0].strip()
        if field != "*" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", field):
            raise RuleSyntaxError(f"unsupported SELECT expression {field!r}")
        alias = pieces[1].strip() if len(pieces) > 1 else field.split(".")[-1]
        fields.append((field, alias))
    return fields


def evaluate(rule: Rule, topic: str, payload: bytes) -> dict[str, Any] | None:
    """The message the rule's actions receive, or None if the rule does not fire."""
    if not rule.enabled or not topic_matches(rule.topic_filter, topic):
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        log.info("rule %s: payload on %s is not JSON; skipped", rule.name, topic)
        return None
    if not isinstance(document, dict):
        return None
    if rule.where is not None and not _truthy(rule.where, document):
        return None
    if rule.select == [("*", "*")]:
        return document
    result: dict[str, Any] = {}
    for field, alias in rule.select:
        if field == "*":
            result.update(document)
        else:
            value = _lookup(document, field)
            if value is not None:
                result[alias] = value
    return result


def _lookup(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _truthy(node: Any, document: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "and":
        return _truthy(node[1], document) and _truthy(node[2], document)
    if kind == "or":
        return _truthy(node[1], document) or _truthy(node[2], document)
    if kind == "not":
        return not _truthy(node[1], document)
    _, op, left, right = node
    a, b = _value(left, document), _value(right, document)
    if a is None or b is None:
        return False  # IoT SQL: comparisons with an undefined field are not true
    try:
        return bool(
            {
                "=": a == b,
                "<>": a != b,
                "!=": a != b,
                "<": a < b,
                "<=": a <= b,
                ">": a > b,
                ">=": a >= b,
            }[op]
        )
    except TypeError:
        return False


def _value(operand: tuple[str, Any], document: dict[str, Any]) -> Any:
    kind, value = operand
    return _lookup(document, value) if kind == "field" else value


class _Parser:
    """Recursive descent over ``or := and (OR and)*``, ``and := not (AND not)*``,
    ``not := NOT not | '(' or ')' | comparison``."""

    def __init__(self, text: str) -> None:
        self.tokens = self._tokenize(text)
        self.position = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, position = [], 0
        text = text.rstrip()
        while position < len(text):
            match = TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise RuleSyntaxError(f"unsupported WHERE syntax near {text[position:]!r}")
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
            position = match.end()
        return tokens

    def parse(self) -> Any:
        node = self._or()
        if self.position != len(self.tokens):
            raise RuleSyntaxError(f"unexpected {self.tokens[self.position][1]!r} in WHERE")
        return node

    def _peek_word(self, word: str) -> bool:
        if self.position < len(self.tokens):
            kind, value = self.tokens[self.position]
            return kind == "word" and value.upper() == word
        return False

    def _or(self) -> Any:
        node = self._and()
        while self._peek_word("OR"):
            self.position += 1
            node = ("or", node, self._and())
        return node

    def _and(self) -> Any:
        node = self._not()
        while self._peek_word("AND"):
            self.position += 1
            node = ("and", node, self._not())
        return node

    def _not(self) -> Any:
        if self._peek_word("NOT"):
            self.position += 1
            return ("not", self._not())
        if self.position < len(self.tokens) and self.tokens[self.position] == ("paren", "("):
            self.position += 1
            node = self._or()
            if self.position >= len(self.tokens) or self.tokens[self.position] != ("paren", ")"):
                raise RuleSyntaxError("missing ')' in WHERE")
            self.position += 1
            return node
        left = self._operand()
        if self.position >= len(self.tokens) or self.tokens[self.position][0] != "op":
            raise RuleSyntaxError("expected a comparison in WHERE")
        op = self.tokens[self.position][1]
        self.position += 1
        return ("cmp", op, left, self._operand())

    def _operand(self) -> tuple[str, Any]:
        if self.position >= len(self.tokens):
            raise RuleSyntaxError("WHERE ends too early")
        kind, value = self.tokens[self.position]
        self.position += 1
        if kind == "string":
            return ("literal", value[1:-1].replace("''", "'"))
        if kind == "number":
            return ("literal", float(value) if "." in value else int(value))
        if kind == "word" and value.upper() in ("TRUE", "FALSE"):
            return ("literal", value.upper() == "TRUE")
        if kind == "word":
            return ("field", value)
        raise RuleSyntaxError(f"unexpected {value!r} in WHERE")


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
