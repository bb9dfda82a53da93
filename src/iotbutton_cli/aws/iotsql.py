"""The subset of AWS IoT SQL (version 2016-03-23) that iotbutton checks and the sandbox runs.

One parser for both: ``rules create --sql`` refuses what it cannot read before any AWS call, and
the sandbox's rules engine evaluates exactly what was parsed, so the two never disagree. The
subset:

* ``SELECT`` a comma-separated list of ``*``, payload fields (``a`` or ``a.b.c``, optionally
  ``AS name``), ``topic()`` / ``topic(n)`` (``AS name`` required; ``n`` counts topic levels
  from 1, as IoT does) and ``timestamp()`` (``AS name`` required: the time the broker received
  the message, in milliseconds since the epoch);
* ``FROM`` a single-quoted topic filter that MQTT accepts (``+`` a whole level, ``#`` only as the
  whole last level);
* optionally ``WHERE`` comparisons (``=``, ``<>``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) between
  fields, ``topic(n)``, ``timestamp()``, quoted strings (``''`` is a quote), numbers, ``TRUE``
  and ``FALSE``, joined by ``AND``, ``OR``, ``NOT`` and parentheses.

Keywords are case-insensitive. Errors carry the 1-based column where reading stopped. This module
imports only the standard library's ``re`` and ``dataclasses``: the CLI imports it on start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE"})
TOKEN = re.compile(
    r"(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<op><>|!=|<=|>=|=|<|>)"
    r"|(?P<punct>[(),*])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
)
SPACE = re.compile(r"\s+")
MAX_TOPIC_FILTER_BYTES = 65535  # MQTT's limit for any UTF-8 string


class IotSqlError(ValueError):
    """SQL outside the subset, with the 1-based column where reading stopped."""

    def __init__(self, reason: str, column: int) -> None:
        super().__init__(f"column {column}: {reason}")
        self.reason = reason
        self.column = column


@dataclass(frozen=True)
class Field:
    """A payload field; ``path`` is its dotted name split on the dots."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class Topic:
    """``topic()`` (the whole topic, ``level`` None) or ``topic(n)`` (level n, from 1)."""

    level: int | None


@dataclass(frozen=True)
class Timestamp:
    """``timestamp()``: when the broker received the message, in milliseconds since the epoch."""


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool


Operand = Field | Topic | Timestamp | Literal


@dataclass(frozen=True)
class Star:
    """``*`` in SELECT: every field of the payload."""


@dataclass(frozen=True)
class SelectItem:
    expression: Star | Field | Topic | Timestamp
    alias: str | None = None

    @property
    def name(self) -> str | None:
        """The key this item writes in the outgoing message (None for ``*``)."""
        if self.alias is not None:
            return self.alias
        if isinstance(self.expression, Field):
            return self.expression.path[-1]
        return None


@dataclass(frozen=True)
class Comparison:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class Junction:
    """``AND`` or ``OR`` of two conditions."""

    op: str
    left: Condition
    right: Condition


Condition = Comparison | Not | Junction


@dataclass(frozen=True)
class Statement:
    select: tuple[SelectItem, ...]
    topic_filter: str
    where: Condition | None
    select_end: int  # offset just after the last SELECT item, where more items can be added

    def item_named(self, name: str) -> SelectItem | None:
        return next((item for item in self.select if item.name == name), None)


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, op, punct, word, end
    text: str
    start: int
    end: int

    def is_word(self, word: str) -> bool:
        return self.kind == "word" and self.text.upper() == word

    def shown(self) -> str:
        if self.kind == "end":
            return "the end of the SQL"
        text = self.text if len(self.text) <= 20 else self.text[:19] + "…"
        return repr(text)


def tokenize(sql: str) -> list[_Token]:
    """The tokens of ``sql`` and a final ``end`` token; refuses characters outside the subset."""
    tokens, position = [], 0
    while True:
        space = SPACE.match(sql, position)
        if space:
            position = space.end()
        if position >= len(sql):
            tokens.append(_Token("end", "", len(sql), len(sql)))
            return tokens
        match = TOKEN.match(sql, position)
        if match is None:
            if sql[position] == "'":
                raise IotSqlError("a quoted string is not closed", position + 1)
            raise IotSqlError(f"unexpected character {sql[position]!r}", position + 1)
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(), position, match.end()))
        position = match.end()


def topic_filter_problem(topic_filter: str) -> tuple[str, int] | None:
    """Why MQTT would refuse ``topic_filter``, and where; None if it is a valid filter."""
    if not topic_filter:
        return "the topic filter is empty", 0
    if "\x00" in topic_filter:
        return "a topic filter may not contain the character U+0000", topic_filter.index("\x00")
    if len(topic_filter.encode("utf-8", "surrogatepass")) > MAX_TOPIC_FILTER_BYTES:
        return f"a topic filter holds at most {MAX_TOPIC_FILTER_BYTES} bytes", 0
    offset = 0
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        for wildcard in "+#":
            if wildcard in level and level != wildcard:
                return f"'{wildcard}' must be a whole topic level", offset + level.index(wildcard)
        if level == "#" and index != len(levels) - 1:
            return "'#' may only be the last topic level", offset
        offset += len(level) + 1
    return None


def parse(sql: str) -> Statement:
    """Parse ``sql``; raises IotSqlError (with a column) for anything outside the subset."""
    return _SqlParser(sql).statement()


class _SqlParser:
    """Recursive descent: ``condition := and (OR and)*``, ``and := not (AND not)*``,
    ``not := NOT not | '(' condition ')' | operand comparison operand``."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = tokenize(sql)
        self.position = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.position]

    def advance(self) -> _Token:
        token = self.token
        if token.kind != "end":
            self.position += 1
        return token

    def fail(self, expected: str, token: _Token | None = None) -> IotSqlError:
        token = token or self.token
        return IotSqlError(f"expected {expected}, found {token.shown()}", token.start + 1)

    def expect_word(self, word: str) -> None:
        if not self.token.is_word(word):
            raise self.fail(word)
        self.advance()

    def accept_punct(self, char: str) -> bool:
        if self.token.kind == "punct" and self.token.text == char:
            self.advance()
            return True
        return False

    def statement(self) -> Statement:
        self.expect_word("SELECT")
        select = [self.select_item()]
        while self.accept_punct(","):
            select.append(self.select_item())
        select_end = self.tokens[self.position - 1].end
        self.expect_word("FROM")
        topic_filter = self.topic_filter()
        where = None
        if self.token.is_word("WHERE"):
            self.advance()
            where = self.condition()
        if self.token.kind != "end":
            raise self.fail(
                "WHERE or the end of the SQL" if where is None else "AND, OR or the end"
            )
        return Statement(tuple(select), topic_filter, where, select_end)

    def select_item(self) -> SelectItem:
        if self.accept_punct("*"):
            return SelectItem(Star())
        token = self.token
        expression = self.field_or_topic()
        if expression is None:
            raise self.fail("*, a field name, topic(n) or timestamp()", token)
        alias = None
        if self.token.is_word("AS"):
            self.advance()
            alias = self.alias()
        elif isinstance(expression, Topic):
            raise self.fail("AS and a name for topic(...)")
        elif isinstance(expression, Timestamp):
            raise self.fail("AS and a name for timestamp()")
        return SelectItem(expression, alias)

    def alias(self) -> str:
        token = self.token
        if token.kind != "word" or "." in token.text or token.text.upper() in KEYWORDS:
            raise self.fail("a name (letters, digits and '_')")
        self.advance()
        return token.text

    def field_or_topic(self) -> Field | Topic | Timestamp | None:
        token = self.token
        if token.kind != "word" or token.text.upper() in KEYWORDS:
            return None
        self.advance()
        if token.text.lower() == "topic" and self.accept_punct("("):
            return self.topic_call()
        if token.text.lower() == "timestamp" and self.accept_punct("("):
            if not self.accept_punct(")"):
                raise self.fail("')': timestamp() takes no arguments")
            return Timestamp()
        return Field(tuple(token.text.split(".")))

    def topic_call(self) -> Topic:
        if self.accept_punct(")"):
            return Topic(None)
        token = self.token
        if token.kind != "number" or not token.text.isdigit():
            raise self.fail("a topic level number (1 for the first level) or ')'")
        level = int(token.text)
        if level < 1:
            raise IotSqlError("topic levels count from 1", token.start + 1)
        self.advance()
        if not self.accept_punct(")"):
            raise self.fail("')'")
        return Topic(level)

    def topic_filter(self) -> str:
        token = self.token
        if token.kind != "string":
            raise self.fail("a topic filter in single quotes, e.g. 'iotbutton/+'")
        self.advance()
        topic_filter = token.text[1:-1].replace("''", "'")
        problem = topic_filter_problem(topic_filter)
        if problem is not None:
            reason, offset = problem
            raise IotSqlError(reason, token.start + 2 + offset)
        return topic_filter

    def condition(self) -> Condition:
        node = self.conjunction()
        while self.token.is_word("OR"):
            self.advance()
            node = Junction("OR", node, self.conjunction())
        return node

    def conjunction(self) -> Condition:
        node = self.negation()
        while self.token.is_word("AND"):
            self.advance()
            node = Junction("AND", node, self.negation())
        return node

    def negation(self) -> Condition:
        if self.token.is_word("NOT"):
            self.advance()
            return Not(self.negation())
        if self.accept_punct("("):
            node = self.condition()
            if not self.accept_punct(")"):
                raise self.fail("')'")
            return node
        left = self.operand()
        if self.token.kind != "op":
            raise self.fail("a comparison (=, <>, <, <=, >, >=)")
        op = self.advance().text
        return Comparison(op, left, self.operand())

    def operand(self) -> Operand:
        token = self.token
        if token.kind == "string":
            self.advance()
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            self.advance()
            return Literal(float(token.text) if "." in token.text else int(token.text))
        if token.is_word("TRUE") or token.is_word("FALSE"):
            self.advance()
            return Literal(token.text.upper() == "TRUE")
        expression = self.field_or_topic()
        if expression is None:
            raise self.fail("a field, topic(n), timestamp(), a quoted string or a number", token)
        return expression


def item_text(item: SelectItem) -> str:
    """A SELECT item written back as SQL."""
    expression = item.expression
    if isinstance(expression, Star):
        text = "*"
    elif isinstance(expression, Field):
        text = ".".join(expression.path)
    elif isinstance(expression, Timestamp):
        text = "timestamp()"
    else:
        text = "topic()" if expression.level is None else f"topic({expression.level})"
    return f"{text} AS {item.alias}" if item.alias else text


def with_select_list(sql: str, statement: Statement, items: list[str]) -> str:
    """``sql`` with its SELECT list replaced by ``items``; FROM and WHERE kept as written."""
    return "SELECT " + ", ".join(items) + sql[statement.select_end :]
