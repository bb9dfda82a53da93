"""IoT Core policy evaluation: wildcards, literal MQTT wildcards, Deny, variables, conditions."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from iotbutton_cli.sandbox.iot_auth import is_allowed

ARN = "arn:aws:iot:us-east-1:123456789012"
SERIAL = "G030JF0553648RUH"
THING = "${iot:Connection.Thing.ThingName}"
ATTACHED = "iot:Connection.Thing.IsAttached"
BUTTON = {"iot:ClientId": SERIAL, "iot:Connection.Thing.ThingName": SERIAL, ATTACHED: "true"}


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": list(statements)}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def when(operator: str, key: str, value: Any) -> dict[str, Any]:
    return {"Condition": {operator: {key: value}}}


BUTTON_POLICY = policy(
    allow("iot:Connect", f"{ARN}:client/{THING}", **when("Bool", ATTACHED, "true")),
    allow("iot:Publish", f"{ARN}:topic/iotbutton/{THING}"),
)
ALL = allow("iot:*", "*")


def case(
    name: str,
    expected: bool,
    policies: list[Any],
    action: str,
    resource: str,
    variables: dict[str, str] | None = None,
) -> Any:
    """One row: may ``action`` be done on ``ARN:resource``?"""
    return pytest.param(policies, action, f"{ARN}:{resource}", variables or {}, expected, id=name)


# fmt: off
CASES = [
    case("no policy: default deny", False, [], "iot:Connect", "client/x"),
    case("exact match", True,
         [policy(allow("iot:Publish", f"{ARN}:topic/a/b"))], "iot:Publish", "topic/a/b"),
    case("another action", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/a/b"))], "iot:Subscribe", "topic/a/b"),
    case("iot:* matches any iot action", True,
         [policy(allow("iot:*", f"{ARN}:topic/a"))], "iot:Receive", "topic/a"),
    case("action list", True,
         [policy(allow(["iot:Subscribe", "iot:Receive"], "*"))], "iot:Receive", "topic/a"),
    case("actions compare case-insensitively", True,
         [policy(allow("IOT:publish", "*"))], "iot:Publish", "topic/a"),
    case("resource list", True,
         [policy(allow("iot:Publish", [f"{ARN}:topic/x", f"{ARN}:topic/a"]))],
         "iot:Publish", "topic/a"),
    case("* spans topic levels", True,
         [policy(allow("iot:Publish", f"{ARN}:topic/iotbutton/*"))],
         "iot:Publish", "topic/iotbutton/a/b/c"),
    case("? is one character", True,
         [policy(allow("iot:Publish", f"{ARN}:topic/a?c"))], "iot:Publish", "topic/abc"),
    case("? is exactly one character", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/a?c"))], "iot:Publish", "topic/abbc"),
    case("resources are case-sensitive", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/A"))], "iot:Publish", "topic/a"),
    case("+ is literal, not an MQTT wildcard", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/a/+"))], "iot:Publish", "topic/a/b"),
    case("+ matches a literal +", True,
         [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/a/+"))],
         "iot:Subscribe", "topicfilter/a/+"),
    case("# is literal, not an MQTT wildcard", False,
         [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/#"))],
         "iot:Subscribe", "topicfilter/a"),
    case("# matches a literal #", True,
         [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/#"))],
         "iot:Subscribe", "topicfilter/#"),
    case("* in a policy covers a + filter", True,
         [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/a/*"))],
         "iot:Subscribe", "topicfilter/a/+"),
    case("regex characters are literal", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/a.c"))], "iot:Publish", "topic/abc"),
    case("topic/ does not cover topicfilter/", False,
         [policy(allow("iot:Subscribe", f"{ARN}:topic/a"))], "iot:Subscribe", "topicfilter/a"),
    case("Deny wins over Allow", False,
         [policy(ALL), policy(deny("iot:Publish", f"{ARN}:topic/secret"))],
         "iot:Publish", "topic/secret"),
    case("a Deny elsewhere leaves the Allow", True,
         [policy(ALL, deny("iot:Publish", f"{ARN}:topic/x"))], "iot:Publish", "topic/secret"),
    case("Statement may be one object", True,
         [{"Version": "2012-10-17", "Statement": ALL}], "iot:Publish", "topic/a"),
    case("button connects as its thing", True,
         [BUTTON_POLICY], "iot:Connect", f"client/{SERIAL}", BUTTON),
    case("button cannot connect as another", False,
         [BUTTON_POLICY], "iot:Connect", "client/other", BUTTON),
    case("button connect needs IsAttached", False,
         [BUTTON_POLICY], "iot:Connect", f"client/{SERIAL}", {**BUTTON, ATTACHED: "false"}),
    case("button publishes to its topic", True,
         [BUTTON_POLICY], "iot:Publish", f"topic/iotbutton/{SERIAL}", BUTTON),
    case("button cannot publish to another's topic", False,
         [BUTTON_POLICY], "iot:Publish", "topic/iotbutton/OTHER", BUTTON),
    case("button cannot subscribe", False,
         [BUTTON_POLICY], "iot:Subscribe", f"topicfilter/iotbutton/{SERIAL}", BUTTON),
    case("unknown variable: the statement matches nothing", False,
         [BUTTON_POLICY], "iot:Publish", "topic/iotbutton/", {"iot:ClientId": SERIAL}),
    case("unknown variable does not match its own text", False,
         [BUTTON_POLICY], "iot:Publish", f"topic/iotbutton/{THING}", {"iot:ClientId": SERIAL}),
    case("unknown variable in a Deny does not deny", True,
         [policy(ALL, deny("iot:Publish", f"{ARN}:topic/${{iot:Nope}}"))],
         "iot:Publish", "topic/a"),
    case("substituted values are literal, not wildcards", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}"))],
         "iot:Publish", "topic/abc", {"iot:ClientId": "a*"}),
    case("any variable the caller gives", True,
         [policy(allow("iot:Publish", f"{ARN}:topic/${{iot:Connection.Thing.ThingTypeName}}/*"))],
         "iot:Publish", "topic/button/x", {"iot:Connection.Thing.ThingTypeName": "button"}),
    case("${*} is not a wildcard", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/a${{*}}"))], "iot:Publish", "topic/ab"),
    case("${*} is a literal *", True,
         [policy(allow("iot:Publish", f"{ARN}:topic/a${{*}}"))], "iot:Publish", "topic/a*"),
    case("no variables in 2008-10-17 documents", False,
         [policy(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}"), version="2008-10-17")],
         "iot:Publish", f"topic/{SERIAL}", BUTTON),
    case("StringEquals holds", True,
         [policy(allow("iot:Connect", "*", **when("StringEquals", "iot:ClientId", "abc")))],
         "iot:Connect", "client/abc", {"iot:ClientId": "abc"}),
    case("StringEquals fails", False,
         [policy(allow("iot:Connect", "*", **when("StringEquals", "iot:ClientId", "abc")))],
         "iot:Connect", "client/abd", {"iot:ClientId": "abd"}),
    case("StringEquals: any of several values", True,
         [policy(allow("iot:Connect", "*", **when("StringEquals", "iot:ClientId", ["x", "y"])))],
         "iot:Connect", "client/y", {"iot:ClientId": "y"}),
    case("StringEquals with a variable", True,
         [policy(allow("iot:Connect", "*", **when("StringEquals", "iot:ClientId", THING)))],
         "iot:Connect", f"client/{SERIAL}", BUTTON),
    case("StringLike globs", True,
         [policy(allow("iot:Connect", "*", **when("StringLike", "iot:ClientId", "mon-*")))],
         "iot:Connect", "client/mon-1", {"iot:ClientId": "mon-1"}),
    case("StringLike fails", False,
         [policy(allow("iot:Connect", "*", **when("StringLike", "iot:ClientId", "mon-*")))],
         "iot:Connect", "client/x", {"iot:ClientId": "x"}),
    case("a condition on a missing key fails", False,
         [policy(allow("iot:Connect", "*", **when("Bool", ATTACHED, "true")))],
         "iot:Connect", "client/x", {"iot:ClientId": "x"}),
    case("every operator must hold", False,
         [policy(allow("iot:Connect", "*", Condition={
             "StringEquals": {"iot:ClientId": "x"}, "Bool": {ATTACHED: "true"}}))],
         "iot:Connect", "client/x", {"iot:ClientId": "x", ATTACHED: "false"}),
    case("a Deny whose condition holds denies", False,
         [policy(ALL, deny("iot:Connect", "*", **when("Bool", ATTACHED, "false")))],
         "iot:Connect", "client/x", {ATTACHED: "false"}),
    case("a Deny whose condition fails does not", True,
         [policy(ALL, deny("iot:Connect", "*", **when("Bool", ATTACHED, "false")))],
         "iot:Connect", "client/x", {ATTACHED: "true"}),
    case("unsupported operator: an Allow grants nothing", False,
         [policy(allow("iot:*", "*", **when("IpAddress", "aws:SourceIp", "127.0.0.1")))],
         "iot:Connect", "client/x", {"aws:SourceIp": "127.0.0.1"}),
    case("unsupported operator: a Deny still denies", False,
         [policy(ALL, deny("iot:Connect", "*", **when("DateGreaterThan", "aws:CurrentTime", "1")))],
         "iot:Connect", "client/x"),
    case("NotResource unsupported: an Allow grants nothing", False,
         [policy({"Effect": "Allow", "Action": "iot:*", "NotResource": f"{ARN}:topic/x"})],
         "iot:Publish", "topic/a"),
]
# fmt: on


@pytest.mark.parametrize(("policies", "action", "resource", "variables", "expected"), CASES)
def test_is_allowed(policies, action, resource, variables, expected):
    assert is_allowed(policies, action, resource, variables) is expected


def test_unsupported_condition_operator_is_logged(caplog):
    statement = allow("iot:*", "*", Sid="OnlyFromHome", **when("IpAddress", "aws:SourceIp", "x"))

    with caplog.at_level(logging.WARNING, logger="iotbutton_cli.sandbox.iot_auth"):
        assert not is_allowed([policy(statement)], "iot:Connect", f"{ARN}:client/x", {})

    assert "OnlyFromHome" in caplog.text and "IpAddress" in caplog.text
