"""The sandbox's rules engine: topic filters, WHERE, SELECT and topic(n), as AWS IoT SQL defines
them, with the same parser `rules create` checks with."""

from __future__ import annotations

import json
import time

import pytest

from iotbutton_cli.notify.rules import DEFAULT_SQL
from iotbutton_cli.sandbox.rules_engine import (
    RuleSyntaxError,
    evaluate,
    parse_rule,
    rules_from_moto,
    topic_matches,
)

CLICK = {
    "serialNumber": "G030JF0553648RUH",
    "batteryVoltage": "1650mV",
    "clickType": "LONG",
    "battery": 1650,
    "nested": {"level": 2},
}


def rule(sql: str, disabled: bool = False):
    return parse_rule(
        "r",
        {
            "sql": sql,
            "ruleDisabled": disabled,
            "actions": [{"lambda": {"functionArn": "arn:f"}}, {"sns": {}}],
        },
    )


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("iotbutton/+", "iotbutton/G030", True),
        ("iotbutton/+", "iotbutton/G030/extra", False),
        ("iotbutton/+", "iotbutton", False),
        ("iotbutton/#", "iotbutton/a/b", True),
        ("iotbutton/#", "iotbutton", True),
        ("iotbutton/G030", "iotbutton/G030", True),
        ("iotbutton/G030", "iotbutton/G031", False),
        ("+/+", "a/b", True),
        ("#", "anything/at/all", True),
    ],
)
def test_topic_filters(topic_filter, topic, matches):
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize(
    ("where", "fires"),
    [
        ("clickType = 'LONG'", True),
        ("clickType = 'SINGLE'", False),
        ("clickType <> 'SINGLE'", True),
        ("clickType != 'LONG'", False),
        ("battery > 1600 AND clickType = 'LONG'", True),
        ("battery < 1600 OR clickType = 'LONG'", True),
        ("battery < 1600 OR clickType = 'SINGLE'", False),
        ("NOT (clickType = 'SINGLE')", True),
        ("(clickType = 'SINGLE' OR clickType = 'LONG') AND battery >= 1650", True),
        ("missing = 'x'", False),
        ("serialNumber = 'G030JF0553648RUH'", True),
        ("topic(1) = 'iotbutton'", True),
        ("topic(2) = 'G030'", True),
        ("topic(2) = 'iotbutton'", False),
        ("topic(3) = 'G030'", False),
        ("topic() = 'iotbutton/G030'", True),
        ("battery = '1650'", False),
        ("battery <> '1650'", False),
        ("clickType = TRUE", False),
        ("nested.level = 2", True),
    ],
)
def test_where(where, fires):
    result = evaluate(
        rule(f"SELECT * FROM 'iotbutton/+' WHERE {where}"),
        "iotbutton/G030",
        json.dumps(CLICK).encode(),
    )
    assert (result is not None) is fires


def test_select_named_fields_and_aliases():
    result = evaluate(
        rule("SELECT serialNumber AS serial, clickType FROM 'iotbutton/+'"),
        "iotbutton/G030",
        json.dumps(CLICK).encode(),
    )
    assert result == {"serial": "G030JF0553648RUH", "clickType": "LONG"}


def test_the_default_rule_takes_the_serial_from_the_topic_whatever_the_payload_says():
    """A stolen certificate publishes to its own topic with any payload: the rule's topicSerial
    is the topic's level 2, counted from 1 as IoT does, and the payload's own topicSerial is not
    even selected (the rule names its fields instead of ``*``); nor is its clickedAt: the time
    is the broker's."""
    forged = {
        **CLICK,
        "serialNumber": "G030VICTIM000001",
        "topicSerial": "G030VICTIM000001",
        "clickedAt": 1,
    }

    message = evaluate(
        rule(DEFAULT_SQL), "iotbutton/G030OWN", json.dumps(forged).encode(), 1795647840123
    )

    assert message == {
        "serialNumber": "G030VICTIM000001",
        "clickType": forged["clickType"],
        "batteryVoltage": forged["batteryVoltage"],
        "topicSerial": "G030OWN",
        "clickedAt": 1795647840123,
    }


def test_timestamp_is_the_receive_time_in_milliseconds():
    before = int(time.time() * 1000)
    message = evaluate(rule("SELECT timestamp() AS t FROM '#'"), "a", b"{}")
    assert message is not None and before <= message["t"] <= int(time.time() * 1000)
    assert evaluate(rule("SELECT * FROM '#' WHERE timestamp() > 5"), "a", b"{}", 6) == {}
    assert evaluate(rule("SELECT * FROM '#' WHERE timestamp() > 5"), "a", b"{}", 5) is None


@pytest.mark.parametrize(
    ("select", "topic", "expected"),
    [
        ("topic() AS t", "a/b/c", {"t": "a/b/c"}),
        ("topic(1) AS t", "a/b/c", {"t": "a"}),
        ("topic(3) AS t", "a/b/c", {"t": "c"}),
        ("topic(4) AS t", "a/b/c", {}),
        ("topic(2) AS t, clickType AS t", "a/b/c", {"t": "LONG"}),
        ("clickType AS t, topic(2) AS t", "a/b/c", {"t": "b"}),
        ("nested.level, missing", "a/b/c", {"level": 2}),
    ],
)
def test_select_items_apply_in_order_and_undefined_ones_are_left_out(select, topic, expected):
    message = evaluate(rule(f"SELECT {select} FROM '#'"), topic, json.dumps(CLICK).encode())

    assert message == expected


def test_select_star_passes_the_payload_and_actions_are_read():
    parsed = rule("SELECT * FROM 'iotbutton/+'")
    assert parsed.lambda_arns == ["arn:f"] and parsed.other_actions == ["sns"]
    assert evaluate(parsed, "iotbutton/x", json.dumps(CLICK).encode()) == CLICK


def test_disabled_rules_and_non_json_payloads_do_not_fire():
    assert evaluate(rule("SELECT * FROM '#'", disabled=True), "a", b"{}") is None
    assert evaluate(rule("SELECT * FROM '#'"), "a", b"not json") is None
    assert evaluate(rule("SELECT * FROM '#'"), "a", b"[1]") is None


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM 'x'",
        "SELECT * FROM x",
        "SELECT upper(clickType) FROM 'x'",
        "SELECT * FROM 'x' WHERE clickType LIKE 'L%'",
        "SELECT * FROM 'x' WHERE (clickType = 'LONG'",
        "SELECT * FROM 'x' WHERE clickType =",
        "SELECT * FROM 'a/#/b'",
        "SELECT topic(0) AS t FROM 'x'",
        "SELECT topic(2) FROM 'x'",
    ],
)
def test_unsupported_sql_is_refused_not_guessed(sql):
    with pytest.raises(RuleSyntaxError):
        rule(sql)


def test_rules_from_moto_reads_the_stored_rules(iot):
    iot.create_topic_rule(
        ruleName="long_only",
        topicRulePayload={
            "sql": "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'",
            "awsIotSqlVersion": "2016-03-23",
            "ruleDisabled": False,
            "actions": [
                {"lambda": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}}
            ],
        },
    )
    iot.create_topic_rule(
        ruleName="odd",
        topicRulePayload={
            "sql": "SELECT * FROM 'x' WHERE a LIKE 'b'",
            "ruleDisabled": False,
            "actions": [],
        },
    )

    [parsed] = rules_from_moto("123456789012", "us-east-1")

    assert parsed.name == "long_only" and parsed.topic_filter == "iotbutton/+"
    assert parsed.lambda_arns == ["arn:aws:lambda:us-east-1:123456789012:function:f"]
