"""Delivery receipts: Twilio's status callbacks reach the function URL, are checked as Twilio's
own library checks them, and move each delivery's status forward in the alarm ledger only."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from notifier_support import (
    API_KEY_SID,
    CLICKED_AT,
    SECRET,
    SERIAL,
    LambdaContext,
    button_event,
    click_config,
    messaging_config,
)
from twilio.request_validator import RequestValidator

from iotbutton_cli.notifier_lambda import handler
from iotbutton_cli.notifier_lambda.contract import ALARM_TABLE

ALICE, BOB = "+15551230001", "+15551230002"
CALLBACK_URL = "https://abc123.lambda-url.us-east-1.on.aws/"
ALARM = f"{SERIAL}-SINGLE-{CLICKED_AT}"


@pytest.fixture
def ledger(with_ledger, monkeypatch):
    monkeypatch.setenv("IOTBUTTON_CALLBACK_URL", CALLBACK_URL)
    with_ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE], call=[BOB])}))
    return with_ledger


def delivery(ledger, channel: str, to: str) -> dict:
    item = ledger.dynamodb.get_item(
        TableName=ALARM_TABLE, Key={"pk": {"S": ALARM}, "sk": {"S": f"{channel}#{to}"}}
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def callback_event(params: dict, query: str, signature: str | None, method: str = "POST") -> dict:
    """What Lambda gives the function for Twilio's POST to its URL."""
    headers = {"content-type": "application/x-www-form-urlencoded", "host": "abc123.lambda-url"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    body = urllib.parse.urlencode(params)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": "/"}},
        "body": base64.b64encode(body.encode()).decode(),
        "isBase64Encoded": True,
    }


def signed(params: dict, query: str, token: str = SECRET) -> dict:
    """Signed by Twilio's own library, over the URL the notifier gave Twilio."""
    url = f"{CALLBACK_URL}?{query}"
    return callback_event(params, query, RequestValidator(token).compute_signature(url, params))


def message_status(sid: str, status: str, **more: str) -> dict:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": ALICE,
        "From": "+15005550006",
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        **more,
    }


def clicked(ledger) -> tuple[str, str, str]:
    """Click once; (the query Twilio was given, the SMS sid, the call sid)."""
    result = handler.lambda_handler(button_event(), LambdaContext("click"))
    [sms] = ledger.sent("Messages")
    [call] = ledger.sent("Calls")
    callback = sms["fields"]["StatusCallback"]
    assert callback == call["fields"]["StatusCallback"]
    # The attempt is named too: a late receipt of one attempt cannot speak for a later one.
    assert callback == f"{CALLBACK_URL}?alarm={urllib.parse.quote(result['alarm'])}&attempt=1"
    sids = {item["channel"]: item["sid"] for item in result["results"]}
    return urllib.parse.urlsplit(callback).query, sids["sms"], sids["call"]


def test_a_signed_receipt_records_the_final_status(ledger):
    query, sms_sid, call_sid = clicked(ledger)
    assert delivery(ledger, "sms", ALICE)["twilioStatus"] == "queued"

    answer = handler.lambda_handler(signed(message_status(sms_sid, "delivered"), query), None)
    call = {
        "CallSid": call_sid,
        "CallStatus": "no-answer",
        "To": BOB,
        "From": "+15005550006",
        "AccountSid": "AC" + "0" * 32,
    }
    handler.lambda_handler(signed(call, query), None)

    assert answer["statusCode"] == 204
    assert delivery(ledger, "sms", ALICE)["twilioStatus"] == "delivered"
    assert delivery(ledger, "call", BOB)["twilioStatus"] == "no-answer"


@pytest.mark.parametrize(
    "forge",
    [
        lambda params, query: callback_event(params, query, None),  # unsigned
        lambda params, query: signed(params, query, token="x" * 32),  # another key
        lambda params, query: (
            signed(params, "alarm=someone-else", token=SECRET) | {"rawQueryString": query}
        ),  # signed for another URL
        lambda params, query: (
            signed({**params, "MessageStatus": "sent"}, query)
            | {"body": base64.b64encode(urllib.parse.urlencode(params).encode()).decode()}
        ),
        lambda params, query: (
            signed(params, query) | {"requestContext": {"http": {"method": "GET"}}}
        ),
    ],
    ids=["unsigned", "wrong-token", "other-url", "changed-body", "get"],
)
def test_anything_but_twilio_is_refused_and_changes_nothing(ledger, forge):
    query, sms_sid, _ = clicked(ledger)

    answer = handler.lambda_handler(forge(message_status(sms_sid, "undelivered"), query), None)

    assert answer["statusCode"] == 403
    assert delivery(ledger, "sms", ALICE)["twilioStatus"] == "queued"


def test_late_and_repeated_receipts_never_move_a_status_back(ledger):
    query, sms_sid, _ = clicked(ledger)
    for status in ("delivered", "sent", "delivered", "queued"):
        answer = handler.lambda_handler(signed(message_status(sms_sid, status), query), None)
        assert answer["statusCode"] == 204

    assert delivery(ledger, "sms", ALICE)["twilioStatus"] == "delivered"


def test_a_receipt_for_another_sid_or_alarm_changes_nothing(ledger):
    query, sms_sid, _ = clicked(ledger)
    handler.lambda_handler(signed(message_status("SM" + "f" * 32, "undelivered"), query), None)
    other = urllib.parse.urlencode({"alarm": f"{SERIAL}-SINGLE-1"})
    handler.lambda_handler(signed(message_status(sms_sid, "undelivered"), other), None)

    assert delivery(ledger, "sms", ALICE)["twilioStatus"] == "queued"


def test_an_undelivered_receipt_keeps_twilios_error_code(ledger):
    query, sms_sid, _ = clicked(ledger)
    receipt = message_status(sms_sid, "undelivered", ErrorCode="30003")

    handler.lambda_handler(signed(receipt, query), None)

    stored = delivery(ledger, "sms", ALICE)
    assert (stored["twilioStatus"], stored["receiptErrorCode"]) == ("undelivered", "30003")


def test_with_an_api_key_no_receipts_are_asked_for_or_accepted(ledger):
    ledger.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE])}, api_key_sid=API_KEY_SID)
    )
    handler.lambda_handler(button_event(), LambdaContext("click"))
    [sms] = ledger.sent("Messages")
    assert "StatusCallback" not in sms["fields"]

    query = urllib.parse.urlencode({"alarm": ALARM})
    answer = handler.lambda_handler(signed(message_status("SMx", "delivered"), query), None)

    assert answer["statusCode"] == 403
