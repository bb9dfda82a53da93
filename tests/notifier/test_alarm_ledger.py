"""The alarm ledger in DynamoDB (moto): one click is one alarm and each recipient is sent once,
across Lambda's retries, new containers, duplicate deliveries and repeated publishes."""

from __future__ import annotations

import logging
import threading
import time

import boto3
import pytest
from notifier_support import (
    CLICKED_AT,
    SECRET_PARAMETER,
    SERIAL,
    LambdaContext,
    button_event,
    click_config,
    messaging_config,
)

from iotbutton_cli.notifier_lambda import alarms, handler
from iotbutton_cli.notifier_lambda import twilio as twilio_rest
from iotbutton_cli.notifier_lambda.contract import ALARM_TABLE
from iotbutton_cli.sandbox.twilio import PlannedFailure

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"


@pytest.fixture
def ledger(with_ledger):
    return with_ledger


def items(dynamodb) -> dict[tuple[str, str], dict]:
    found = dynamodb.scan(TableName=ALARM_TABLE)["Items"]
    return {(item["pk"]["S"], item["sk"]["S"]): item for item in found}


def new_container() -> None:
    """What a Lambda retry on another container starts with: nothing in memory."""
    handler.reset_caches()


def test_a_retry_in_a_new_container_sends_only_what_failed(ledger):
    ledger.twilio.plan(PlannedFailure(status=503, times=twilio_rest.MAX_ATTEMPTS, to=CAROL))
    ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE, CAROL], call=[BOB])}))

    with pytest.raises(handler.DeliveryIncomplete):
        handler.lambda_handler(button_event(), LambdaContext(aws_request_id="first"))
    new_container()
    retried = handler.lambda_handler(button_event(), LambdaContext(aws_request_id="first"))

    statuses = {(item["channel"], item["to"]): item["status"] for item in retried["results"]}
    assert statuses == {
        ("sms", ALICE): "skipped-duplicate",
        ("sms", CAROL): "queued",
        ("call", BOB): "skipped-duplicate",
    }
    assert sorted(e["fields"]["To"] for e in ledger.sent()) == [ALICE, BOB, CAROL]
    alarm = f"{SERIAL}-SINGLE-{CLICKED_AT}"
    assert retried["alarm"] == alarm
    stored = items(ledger.dynamodb)
    assert stored[(alarm, "alarm")]["state"] == {"S": "alarm"}
    carol = stored[(alarm, f"sms#{CAROL}")]
    assert carol["status"] == {"S": "sent"} and carol["attempts"] == {"N": "2"}
    assert int(carol["expiresAt"]["N"]) == CLICKED_AT // 1000 + 30 * 86400


class OneRequestAtATime:
    """DynamoDB applies each conditional write atomically; moto's in-process backend is not
    safe for threads (the sandbox holds a lock around it for that reason): so here too."""

    def __init__(self, client) -> None:
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name):
        call = getattr(self._client, name)

        def locked(*args, **kwargs):
            with self._lock:
                return call(*args, **kwargs)

        return locked


def test_one_event_delivered_twice_at_once_sends_once(ledger, monkeypatch):
    """Lambda may deliver one event to two containers at the same time."""
    ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE], call=[BOB])}))
    serial_dynamodb = OneRequestAtATime(boto3.client("dynamodb", region_name="us-east-1"))
    real_client = handler._client
    monkeypatch.setattr(
        handler,
        "_client",
        lambda name: serial_dynamodb if name == "dynamodb" else real_client(name),
    )
    results: list[dict] = []

    def invoke(request_id: str) -> None:
        results.append(handler.lambda_handler(button_event(), LambdaContext(request_id)))

    threads = [threading.Thread(target=invoke, args=(f"req-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(e["fields"]["To"] for e in ledger.sent()) == [ALICE, BOB]
    statuses = sorted(item["status"] for result in results for item in result["results"])
    assert statuses == ["queued"] * 2 + ["skipped-duplicate"] * 6


@pytest.mark.parametrize(
    ("second", "debounce", "alarms"),
    [
        ({"clickedAt": CLICKED_AT + 2_000}, 5, 1),  # a button publishing one press twice
        ({"clickedAt": CLICKED_AT - 2_000}, 5, 1),  # ... arriving out of order
        ({"clickedAt": CLICKED_AT + 6_000}, 5, 2),  # pressed again: a new alarm
        ({"clickedAt": CLICKED_AT + 2_000, "clickType": "LONG"}, 5, 2),  # another click type
        ({"clickedAt": CLICKED_AT + 2_000}, 0, 2),  # debounce off
    ],
)
def test_repeats_within_the_debounce_window_are_one_alarm(ledger, second, debounce, alarms):
    clicks = {"SINGLE": click_config(sms=[ALICE]), "LONG": click_config(sms=[ALICE])}
    ledger.write_config(messaging_config(clicks, debounce_seconds=debounce))

    first = handler.lambda_handler(button_event(), LambdaContext("one"))
    again = handler.lambda_handler(button_event(**second), LambdaContext("two"))

    assert len(ledger.sent()) == alarms
    if alarms == 1:
        assert again["results"] == []
        assert again["ignored"] == (
            f"a repeat of alarm {first['alarm']} (the same button and click type within 5 s)"
        )
        stored = items(ledger.dynamodb)[(again["alarm"], "alarm")]
        assert stored["state"] == {"S": "repeat"}
        assert stored["repeatOf"] == {"S": first["alarm"]}
        # Lambda retrying the repeat still finds it a repeat.
        new_container()
        assert handler.lambda_handler(button_event(**second), LambdaContext("two"))["ignored"]
        assert len(ledger.sent()) == 1


def test_a_delivery_whose_attempt_never_finished_is_not_sent_again(ledger):
    """A container that died mid-request left a claim: sending again could double the alarm."""
    ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE, BOB])}))
    alarm = f"{SERIAL}-SINGLE-{CLICKED_AT}"
    ledger.dynamodb.put_item(
        TableName=ALARM_TABLE,
        Item={"pk": {"S": alarm}, "sk": {"S": f"sms#{ALICE}"}, "status": {"S": "sending"}},
    )

    result = handler.lambda_handler(button_event(), LambdaContext("retry"))

    [alice, bob] = result["results"]
    assert alice["status"] == "skipped-duplicate" and "never finished" in alice["note"]
    assert bob["status"] == "queued"
    assert [e["fields"]["To"] for e in ledger.sent()] == [BOB]


def test_an_unreachable_table_still_sends_and_says_so(deployment, monkeypatch, caplog):
    """The table is missing (or throttled, or denied): the alarm goes out anyway."""
    monkeypatch.setenv("IOTBUTTON_ALARM_TABLE", "iotbutton-alarms-missing")
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE], call=[BOB])}))

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(button_event(), LambdaContext("x"))
        again = handler.lambda_handler(button_event(), LambdaContext("x"))  # same container

    assert [item["status"] for item in result["results"]] == ["queued", "queued"]
    assert [item["status"] for item in again["results"]] == ["skipped-duplicate"] * 2
    assert len(deployment.sent()) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "alarm ledger iotbutton-alarms-missing unavailable" in line
        and "sending without its duplicate protection" in line
        for line in errors
    )


def test_an_event_without_a_click_time_is_one_alarm_per_request_id(ledger):
    ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    event = button_event()
    del event["clickedAt"]

    first = handler.lambda_handler(event, LambdaContext("req-a"))
    new_container()
    retried = handler.lambda_handler(event, LambdaContext("req-a"))

    assert first["alarm"] == f"{SERIAL}-SINGLE-req-req-a" == retried["alarm"]
    assert retried["results"][0]["status"] == "skipped-duplicate"
    assert len(ledger.sent()) == 1


def test_a_lambda_retry_does_not_resend_what_a_receipt_says_arrived(ledger):
    """Twilio took the request but its answer was lost (recorded failed), then its receipt
    said delivered: the retry must not send again."""
    ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    alarm = f"{SERIAL}-SINGLE-{CLICKED_AT}"
    table = alarms.TableLedger(ALARM_TABLE, ledger.dynamodb)
    table.open(alarms.Click(SERIAL, "SINGLE", CLICKED_AT, "r"), 5)
    assert isinstance(table.claim(alarm, "sms", ALICE), alarms.Claimed)
    table.record(alarm, "sms", ALICE, twilio_rest.TwilioOutcome(ok=False, message="timed out"))
    table.receipt(alarm, channel="sms", to=ALICE, sid="SM1", status="delivered", rank=4)

    result = handler.lambda_handler(button_event(), LambdaContext("r"))

    assert result["results"][0]["status"] == "skipped-duplicate"
    assert ledger.sent() == []


def test_a_receipt_of_an_earlier_attempt_cannot_speak_for_the_retry(ledger):
    alarm = f"{SERIAL}-SINGLE-{CLICKED_AT}"
    table = alarms.TableLedger(ALARM_TABLE, ledger.dynamodb)
    table.open(alarms.Click(SERIAL, "SINGLE", CLICKED_AT, "r"), 5)
    first = table.claim(alarm, "sms", ALICE)
    assert first == alarms.Claimed(1)
    table.record(alarm, "sms", ALICE, twilio_rest.TwilioOutcome(ok=True, sid="SM1"))
    receipt = {"channel": "sms", "to": ALICE, "status": "undelivered", "rank": 4}
    assert table.receipt(alarm, sid="SM1", attempt=1, **receipt)

    again = table.claim_again(alarm, "sms", ALICE)

    assert again == alarms.Claimed(2)
    late = {**receipt, "status": "undelivered"}
    assert not table.receipt(alarm, sid="SM1", attempt=1, **late)  # the old attempt's, late
    assert table.receipt(alarm, sid="SM2", attempt=2, **{**receipt, "status": "delivered"})
    stored = items(ledger.dynamodb)[(alarm, f"sms#{ALICE}")]
    assert stored["twilioStatus"] == {"S": "delivered"} and "errorCode" not in stored


def test_retry_never_takes_over_a_send_in_progress(ledger):
    alarm = f"{SERIAL}-SINGLE-{CLICKED_AT}"
    table = alarms.TableLedger(ALARM_TABLE, ledger.dynamodb)
    table.open(alarms.Click(SERIAL, "SINGLE", CLICKED_AT, "r"), 5)
    assert isinstance(table.claim(alarm, "sms", ALICE), alarms.Claimed)  # sending, just now

    assert table.claim_again(alarm, "sms", ALICE) is None
    later = alarms.TableLedger(
        ALARM_TABLE, ledger.dynamodb, clock=lambda: time.time() + alarms.STALE_SENDING_SECONDS + 1
    )
    assert later.claim_again(alarm, "sms", ALICE) == alarms.Claimed(2)  # it never finished


def test_a_press_after_an_alarm_that_failed_before_sending_is_not_its_repeat(ledger, monkeypatch):
    """The first press's invocation could not read the secret: nothing went out, so the press
    made a few seconds later because nothing happened is an alarm of its own."""
    ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    monkeypatch.setenv("IOTBUTTON_SECRET_PARAMETER", "/iotbutton/no-such-parameter")
    with pytest.raises(Exception, match="ParameterNotFound"):
        handler.lambda_handler(button_event(), LambdaContext("first"))
    monkeypatch.setenv("IOTBUTTON_SECRET_PARAMETER", SECRET_PARAMETER)
    handler.reset_caches()

    again = handler.lambda_handler(button_event(clickedAt=CLICKED_AT + 3_000), LambdaContext("2"))

    assert "ignored" not in again and again["results"][0]["status"] == "queued"
    first = items(ledger.dynamodb)[(f"{SERIAL}-SINGLE-{CLICKED_AT}", "alarm")]
    assert first["state"] == {"S": "failed"}
