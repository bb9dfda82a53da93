"""A low battery is told once per period per button, not once per click; a retry of the click
that told it does not tell it twice."""

from __future__ import annotations

import pytest
from notifier_support import LambdaContext, button_event, messaging_config

from iotbutton_cli.notifier_lambda import contract, handler

ALICE, FIXER = "+15551230001", "+15551230007"


@pytest.fixture
def table(with_ledger):
    config = messaging_config(
        {"SINGLE": {"sms": [ALICE], "call": [], "message": "{person} pressed ({battery})."}},
        debounce_seconds=0,
    )
    config["battery"] = {"warn_below_mv": 1500, "notify": [FIXER], "every_seconds": 3600}
    with_ledger.write_config(config)
    return with_ledger


def warnings(deployment) -> list[str]:
    return [e["fields"]["Body"] for e in deployment.sent("Messages") if e["fields"]["To"] == FIXER]


def click(battery: str, at: int) -> dict:
    event = button_event("SINGLE", batteryVoltage=battery, clickedAt=at)
    return handler.lambda_handler(event, LambdaContext(f"click-{at}"))


def test_one_warning_per_period_per_button(table):
    first = click("1400mV", 1_796_000_000_000)
    second = click("1390mV", 1_796_000_060_000)
    fine = click("1650mV", 1_796_000_120_000)

    assert first["battery"] == {"low": True, "mv": 1400, "told": [FIXER]}
    assert second["battery"]["told"] == [] and "already" in second["battery"]["note"]
    assert "battery" not in fine
    [warning] = warnings(table)
    assert "Grandma's button G030JF0553648RUH is low (1400 mV, below 1500 mV)" in warning

    table.dynamodb.update_item(  # the period has passed
        TableName="iotbutton-alarms",
        Key={"pk": {"S": "battery#G030JF0553648RUH"}, "sk": {"S": "battery"}},
        UpdateExpression="SET notifiedAt = :long_ago",
        ExpressionAttributeValues={":long_ago": {"N": "0"}},
    )
    assert click("1380mV", 1_796_000_180_000)["battery"]["told"] == [FIXER]
    assert len(warnings(table)) == 2


def test_a_retry_of_the_click_that_told_it_tells_nobody_twice(table):
    click("1400mV", 1_796_000_000_000)
    click("1400mV", 1_796_000_000_000)  # Lambda delivers the same event again

    assert len(warnings(table)) == 1


@pytest.mark.parametrize(
    ("reading", "mv"),
    [
        ("1650mV", 1650),
        ("1650 mV", 1650),
        ("1.65V", 1650),
        ("1650", 1650),
        (1.65, 1650),
        ("a lot", None),
        (True, None),
        ("-5", None),
    ],
)
def test_battery_readings_are_normalised_to_millivolts(reading, mv):
    assert contract.battery_mv(reading) == mv


def test_a_warning_nobody_got_is_tried_again_on_the_next_low_click(table):
    from iotbutton_cli.sandbox.twilio import PlannedFailure

    table.twilio.plan(PlannedFailure(status=400, code=21211, resource="Messages", to=FIXER))
    first = click("1400mV", 1_796_000_000_000)
    assert first["battery"]["told"] == []

    second = click("1390mV", 1_796_000_060_000)

    assert second["battery"]["told"] == [FIXER]
