"""The IoT SQL parser `rules create` checks with and the sandbox runs: what it reads, where it
stops reading what it cannot, and what it adds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iotbutton_cli.aws import iotsql
from iotbutton_cli.aws.iotsql import (
    Comparison,
    Field,
    Junction,
    Literal,
    Not,
    SelectItem,
    Star,
    Timestamp,
    Topic,
)


def test_the_default_rule_reads_as_the_payload_plus_the_topics_serial_and_the_receive_time():
    from iotbutton_cli.notify.rules import DEFAULT_SQL

    statement = iotsql.parse(DEFAULT_SQL)

    assert statement.select == (
        SelectItem(Field(("serialNumber",))),
        SelectItem(Field(("clickType",))),
        SelectItem(Field(("batteryVoltage",))),
        SelectItem(Topic(2), "topicSerial"),
        SelectItem(Timestamp(), "clickedAt"),
    )
    assert statement.topic_filter == "iotbutton/+"
    assert statement.where is None
    assert statement.item_named("topicSerial") == SelectItem(Topic(2), "topicSerial")


def test_fields_aliases_and_a_where_clause():
    statement = iotsql.parse(
        "select serialNumber as serial, a.b.c, topic() AS t from 'x/#' "
        "where NOT (clickType = 'LONG' or battery >= -1.5) AND ok <> TRUE"
    )

    assert statement.select == (
        SelectItem(Field(("serialNumber",)), "serial"),
        SelectItem(Field(("a", "b", "c"))),
        SelectItem(Topic(None), "t"),
    )
    assert [item.name for item in statement.select] == ["serial", "c", "t"]
    assert statement.where == Junction(
        "AND",
        Not(
            Junction(
                "OR",
                Comparison("=", Field(("clickType",)), Literal("LONG")),
                Comparison(">=", Field(("battery",)), Literal(-1.5)),
            )
        ),
        Comparison("<>", Field(("ok",)), Literal(True)),
    )


def test_and_binds_tighter_than_or():
    statement = iotsql.parse("SELECT * FROM 'x' WHERE a = 1 OR b = 2 AND c = 3")

    assert isinstance(statement.where, Junction) and statement.where.op == "OR"
    assert isinstance(statement.where.right, Junction) and statement.where.right.op == "AND"


def test_strings_keep_their_quotes_and_spaces():
    statement = iotsql.parse(
        "SELECT * FROM 'it''s/+' WHERE name = 'O''Brien  x' AND topic(1) = 'a'"
    )

    assert statement.topic_filter == "it's/+"
    assert isinstance(statement.where, Junction)
    assert statement.where.left == Comparison("=", Field(("name",)), Literal("O'Brien  x"))
    assert statement.where.right == Comparison("=", Topic(1), Literal("a"))


@pytest.mark.parametrize(
    ("sql", "column", "reason"),
    [
        ("", 1, "expected SELECT, found the end of the SQL"),
        ("DROP TABLE x", 1, "expected SELECT, found 'DROP'"),
        ("SELECT FROM 'x'", 8, "expected *, a field name, topic(n) or timestamp(), found 'FROM'"),
        ("SELECT * FROM x", 15, "expected a topic filter in single quotes"),
        ("SELECT * FROM 'x", 15, "a quoted string is not closed"),
        ("SELECT *, FROM 'x'", 11, "expected *, a field name, topic(n) or timestamp()"),
        ("SELECT * 'x'", 10, "expected FROM, found \"'x'\""),
        ("SELECT upper(clickType) FROM 'x'", 13, "expected FROM, found '('"),
        (
            "SELECT 15 AS speed FROM 'x'",
            8,
            "expected *, a field name, topic(n) or timestamp(), found '15'",
        ),
        ("SELECT topic(2) FROM 'x'", 17, "expected AS and a name for topic(...)"),
        ("SELECT topic(0) AS t FROM 'x'", 14, "topic levels count from 1"),
        ("SELECT topic(1.5) AS t FROM 'x'", 14, "expected a topic level number"),
        ("SELECT topic(2 AS t FROM 'x'", 16, "expected ')'"),
        ("SELECT a AS b.c FROM 'x'", 13, "expected a name"),
        ("SELECT a AS FROM FROM 'x'", 13, "expected a name"),
        ("SELECT * FROM ''", 16, "the topic filter is empty"),
        ("SELECT * FROM 'a/#/b'", 18, "'#' may only be the last topic level"),
        ("SELECT * FROM 'a/b#'", 19, "'#' must be a whole topic level"),
        ("SELECT * FROM 'a/+b/c'", 18, "'+' must be a whole topic level"),
        ("SELECT * FROM 'a/\x00'", 18, "a topic filter may not contain the character U+0000"),
        (
            "SELECT * FROM 'x' WHERE",
            24,
            "expected a field, topic(n), timestamp(), a quoted string or a number",
        ),
        ("SELECT * FROM 'x' WHERE a LIKE 'b%'", 27, "expected a comparison (=, <>, <, <=, >, >=)"),
        ("SELECT * FROM 'x' WHERE (a = 1", 31, "expected ')', found the end of the SQL"),
        ("SELECT * FROM 'x' WHERE a = 1 b = 2", 31, "expected AND, OR or the end, found 'b'"),
        ("SELECT * FROM 'x' LIMIT 1", 19, "expected WHERE or the end of the SQL"),
        ("SELECT * FROM 'x';", 18, "unexpected character ';'"),
        ("SELECT * FROM 'x' WHERE a = \"b\"", 29, "unexpected character '\"'"),
        ("SELECT * FROM 'x' WHERE a = =", 29, "expected a field, topic(n)"),
    ],
)
def test_sql_outside_the_subset_is_refused_at_its_column(sql, column, reason):
    with pytest.raises(iotsql.IotSqlError) as raised:
        iotsql.parse(sql)

    assert raised.value.column == column
    assert raised.value.reason.startswith(reason), raised.value.reason
    assert 1 <= column <= len(sql) + 1  # inside the SQL, or just after its end


def test_a_long_token_is_shown_shortened():
    with pytest.raises(iotsql.IotSqlError) as raised:
        iotsql.parse("SELECT * FROM 'x' " + "z" * 500)

    assert (
        raised.value.reason == "expected WHERE or the end of the SQL, found 'zzzzzzzzzzzzzzzzzzz…'"
    )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT * FROM 'iotbutton/+'",
            "SELECT serialNumber, clickType, batteryVoltage, topic(2) AS topicSerial, "
            "timestamp() AS clickedAt FROM 'iotbutton/+'",
        ),
        (
            "select  clickType as c  from 'a/+' where c = 'x'",
            "SELECT clickType AS c, topic(2) AS topicSerial, timestamp() AS clickedAt  "
            "from 'a/+' where c = 'x'",
        ),
        (
            "SELECT *, clickType FROM 'x'\nWHERE a.b > 1",
            "SELECT serialNumber, batteryVoltage, clickType, topic(2) AS topicSerial, "
            "timestamp() AS clickedAt FROM 'x'\nWHERE a.b > 1",
        ),
    ],
)
def test_the_select_list_is_rewritten_to_what_the_notifier_can_trust(sql, expected):
    """``*`` becomes the fields the notifier reads (a payload must not be able to bring its own
    topicSerial), and topicSerial is taken from the topic."""
    from iotbutton_cli.notify.rules import trusted_select

    statement = iotsql.parse(sql)
    items, changed = trusted_select(statement)
    rewritten = iotsql.with_select_list(sql, statement, items)

    assert changed and rewritten == expected
    assert iotsql.parse(rewritten).item_named("topicSerial") == SelectItem(Topic(2), "topicSerial")
    assert iotsql.parse(rewritten).item_named("clickedAt") == SelectItem(Timestamp(), "clickedAt")
    assert not any(isinstance(item.expression, Star) for item in iotsql.parse(rewritten).select)


def test_timestamp_needs_a_name_and_no_arguments():
    assert iotsql.parse("SELECT timestamp() AS t FROM 'x' WHERE timestamp() > 5").where == (
        Comparison(">", Timestamp(), Literal(5))
    )
    with pytest.raises(iotsql.IotSqlError, match="AS and a name for timestamp"):
        iotsql.parse("SELECT timestamp() FROM 'x'")
    with pytest.raises(iotsql.IotSqlError, match="timestamp\\(\\) takes no arguments"):
        iotsql.parse("SELECT timestamp(1) AS t FROM 'x'")


@pytest.mark.parametrize(
    "topic_filter",
    ["iotbutton/+", "iotbutton/#", "#", "+", "+/+/#", "a//b", "/", "$aws/things/x", "ü/☃"],
)
def test_valid_mqtt_topic_filters(topic_filter):
    assert iotsql.topic_filter_problem(topic_filter) is None


def test_the_parser_is_light_enough_for_the_cli_to_import():
    probe = (
        "import sys; before = set(sys.modules); import iotbutton_cli.aws.iotsql; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    ours = [name for name in loaded if name.startswith("iotbutton_cli")]
    assert ours == ["iotbutton_cli", "iotbutton_cli.aws", "iotbutton_cli.aws.iotsql"]
    assert {name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names) == {
        "iotbutton_cli"
    }
