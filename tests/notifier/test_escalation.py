"""The escalation's state machine, driven as Twilio drives it: signed callbacks to the function
URL in any order, posted again, or late; and Twilio refusing calls. moto holds the alarm table;
the Twilio stand-in takes the calls (its own callbacks go nowhere: the tests post them)."""

from __future__ import annotations

import urllib.parse

import pytest
from notifier_support import (
    CLICKED_AT,
    SECRET,
    SERIAL,
    LambdaContext,
    button_event,
    messaging_config,
)
from test_receipts import CALLBACK_URL, callback_event
from twilio.request_validator import RequestValidator

from iotbutton_cli.notifier_lambda import handler
from iotbutton_cli.sandbox.twilio import PlannedFailure

ALICE, BOB, TEXTED = "+15551230001", "+15551230002", "+15551230009"
ALARM = f"{SERIAL}-LONG-{CLICKED_AT}"


def escalating(steps: list[list[str]]) -> dict:
    return messaging_config(
        {
            "LONG": {
                "sms": [TEXTED],
                "call": [],
                "message": "{person} needs help.",
                "escalation": {
                    "steps": [{"call": step, "ring_seconds": 20} for step in steps],
                    "rounds": 1,
                    "exhausted": "Nobody came for {person}.",
                },
            }
        },
        debounce_seconds=0,
    )


@pytest.fixture
def table(with_ledger, monkeypatch):
    monkeypatch.setenv("IOTBUTTON_CALLBACK_URL", CALLBACK_URL)
    with_ledger.write_config(escalating([[ALICE], [BOB]]))
    return with_ledger


def calls(deployment) -> list[dict]:
    return [e for e in deployment.sent("Calls") if e["path"].endswith("/Calls.json")]


def post(url: str, params: dict) -> dict:
    """Twilio's signed POST to ``url`` (a StatusCallback or Gather action), as Lambda hands it
    to the function."""
    bare = url.split("#", 1)[0]
    query = urllib.parse.urlsplit(bare).query
    signature = RequestValidator(SECRET).compute_signature(bare, params)
    return handler.lambda_handler(callback_event(params, query, signature), LambdaContext("cb"))


def ended(call: dict, status: str = "no-answer", **more: str) -> dict:
    params = {
        "CallSid": call["sid"],
        "CallStatus": status,
        "To": call["fields"]["To"],
        "From": call["fields"]["From"],
        "AccountSid": "AC" + "0" * 32,
        **more,
    }
    return post(call["fields"]["StatusCallback"], params)


def pressed(call: dict, digits: str = "1") -> dict:
    action = call["fields"]["Twiml"].split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    params = {
        "CallSid": call["sid"],
        "CallStatus": "in-progress",
        "Digits": digits,
        "To": call["fields"]["To"],
        "From": call["fields"]["From"],
        "AccountSid": "AC" + "0" * 32,
    }
    return post(action, params)


def state(deployment) -> dict:
    item = deployment.dynamodb.get_item(
        TableName="iotbutton-alarms", Key={"pk": {"S": ALARM}, "sk": {"S": "alarm"}}
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def texts(deployment) -> list[tuple[str, str]]:
    return [(e["fields"]["To"], e["fields"]["Body"]) for e in deployment.sent("Messages")]


def test_a_one_after_the_last_call_ended_still_tells_everyone(table):
    """The last callee presses 1 and hangs up; Twilio's end of the call comes first and the list
    runs out, then the 1 arrives: it counts, and everyone hears who is coming."""
    handler.lambda_handler(button_event("LONG"), LambdaContext("click"))
    [alice] = calls(table)
    ended(alice)
    [_, bob] = calls(table)
    ended(bob, "completed", AnsweredBy="human")
    assert state(table)["esc"] == "exhausted"

    answer = pressed(bob)

    assert answer["statusCode"] == 200 and "Thank you" in answer["body"]
    assert state(table)["esc"] == "acknowledged" and state(table)["ackBy"] == BOB
    told = [to for to, body in texts(table) if "acknowledged" in body]
    assert sorted(told) == sorted([TEXTED, ALICE])


def test_the_same_end_posted_again_moves_on_once(table):
    handler.lambda_handler(button_event("LONG"), LambdaContext("click"))
    [alice] = calls(table)

    for _ in range(3):
        assert ended(alice)["statusCode"] == 204

    assert [c["fields"]["To"] for c in calls(table)] == [ALICE, BOB]
    assert (state(table)["escRound"], state(table)["escStep"]) == ("0", "1")


def test_a_late_end_of_an_earlier_step_changes_nothing(table):
    handler.lambda_handler(button_event("LONG"), LambdaContext("click"))
    [alice] = calls(table)
    ended(alice)
    ended(alice, "completed")  # out of order and late: a lower rank than what is known

    assert [c["fields"]["To"] for c in calls(table)] == [ALICE, BOB]
    assert state(table)["esc"] == "ringing"


def test_twilio_refusing_every_call_fails_the_click_and_a_retry_calls_again(table):
    table.twilio.plan(PlannedFailure(status=503, resource="Calls", times=6))
    with pytest.raises(handler.DeliveryIncomplete, match="Twilio took none"):
        handler.lambda_handler(button_event("LONG"), LambdaContext("click"))
    assert state(table)["esc"] == "ringing"  # not "nobody acknowledged"
    assert not [body for _, body in texts(table) if "Nobody came" in body]

    handler.lambda_handler(button_event("LONG"), LambdaContext("retry"))  # Lambda's retry

    assert [c["fields"]["To"] for c in calls(table)] == [BOB]  # its step is called again
    assert state(table)["esc"] == "ringing"


def test_a_key_other_than_one_is_not_an_acknowledgement(table):
    handler.lambda_handler(button_event("LONG"), LambdaContext("click"))
    [alice] = calls(table)

    answer = pressed(alice, "7")

    assert "You pressed 7, not 1" in answer["body"]
    ended(alice, "completed", AnsweredBy="human")
    assert [c["fields"]["To"] for c in calls(table)] == [ALICE, BOB]
