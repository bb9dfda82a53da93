"""The owner alert: Lambda's record of a click it gave up on reaches the owner through SNS, and
the alarm is marked dropped in the ledger so that history shows it and retry can send it."""

from __future__ import annotations

import json

import boto3
import pytest
from notifier_support import (
    SERIAL,
    LambdaContext,
    button_event,
    click_config,
    messaging_config,
)

from iotbutton_cli.notifier_lambda import failures, handler
from iotbutton_cli.notifier_lambda import twilio as twilio_rest
from iotbutton_cli.notifier_lambda.contract import ALARM_TABLE, OWNER_TOPIC
from iotbutton_cli.sandbox.twilio import PlannedFailure

ALICE, BOB = "+15551230001", "+15551230002"
REQUEST_ID = LambdaContext().aws_request_id
NOTIFIER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:iotbutton-notifier"


@pytest.fixture
def owner(with_ledger, monkeypatch):
    """The owner topic, read through an SQS queue subscribed to it (what SNS delivers)."""
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name=OWNER_TOPIC)["TopicArn"]
    queue = sqs.create_queue(QueueName="owner-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("IOTBUTTON_OWNER_TOPIC", topic)

    def inbox() -> list[dict]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in got]

    with_ledger.inbox = inbox
    return with_ledger


def record(event, condition="RetriesExhausted", count=3, error="delivery failed"):
    """Lambda's invocation record of an asynchronous event it gave up on."""
    return {
        "version": "1.0",
        "timestamp": "2026-12-03T12:00:00.000Z",
        "requestContext": {
            "requestId": REQUEST_ID,
            "functionArn": f"{NOTIFIER_ARN}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": count,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": error, "errorType": "DeliveryIncomplete"},
    }


def alarm_item(dynamodb, alarm_id):
    return dynamodb.get_item(
        TableName=ALARM_TABLE, Key={"pk": {"S": alarm_id}, "sk": {"S": "alarm"}}
    )["Item"]


def test_a_click_twilio_never_took_tells_the_owner_and_marks_the_alarm(owner):
    owner.twilio.plan(PlannedFailure(status=503, times=3 * twilio_rest.MAX_ATTEMPTS, to=BOB))
    owner.write_config(messaging_config({"LONG": click_config(sms=[ALICE, BOB])}))
    event = button_event("LONG")
    for _attempt in range(3):  # Lambda's first attempt and its two retries
        with pytest.raises(handler.DeliveryIncomplete):
            handler.lambda_handler(event, LambdaContext())

    result = failures.failure_handler(record(event), LambdaContext("failures-request"))

    alarm_id = f"{SERIAL}-LONG-{event['clickedAt']}"
    assert result["alarm"] == alarm_id and result["owner"] == "told"
    [message] = owner.inbox()
    assert message["Subject"] == failures.SUBJECT
    text = message["Message"]
    assert text.startswith(f"An alarm from Grandma's button {SERIAL} (LONG, ")
    assert "could not be delivered after 3 attempt(s)." in text
    assert f"Not reached: {BOB}." in text and ALICE not in text  # Alice got hers
    assert text.endswith(f"Resend it: iotbutton notify retry {alarm_id}")
    item = alarm_item(owner.dynamodb, alarm_id)
    assert item["dropped"] == {"S": "RetriesExhausted"}
    assert item["invokeCount"] == {"N": "3"}
    assert "delivery failed" in item["dropError"]["S"]
    assert item["state"] == {"S": "alarm"}  # what the notifier wrote is kept
    assert item["ownerMessageId"] == {"S": result["messageId"]} and "N" in item["ownerToldAt"]


def test_a_click_too_old_to_try_is_an_alarm_the_ledger_never_saw(owner):
    owner.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    event = button_event("SINGLE", clickedAt=1_795_647_840_123)

    failures.failure_handler(record(event, "EventAgeExceeded", count=1), LambdaContext())

    [message] = owner.inbox()
    assert "could not be delivered in time (it waited too long to be tried)" in message["Message"]
    assert "Not reached" not in message["Message"]  # nobody was tried
    item = alarm_item(owner.dynamodb, f"{SERIAL}-SINGLE-1795647840123")
    assert item["serial"] == {"S": SERIAL} and item["click"] == {"S": "SINGLE"}
    assert item["state"] == {"S": "failed"} and item["dropped"] == {"S": "EventAgeExceeded"}


def test_a_click_without_its_time_is_named_by_its_request(owner):
    owner.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    event = {k: v for k, v in button_event().items() if k != "clickedAt"}

    result = failures.failure_handler(record(event), LambdaContext())

    assert result["alarm"] == f"{SERIAL}-SINGLE-req-{REQUEST_ID}"


def test_an_unreadable_config_still_tells_the_owner(owner, caplog):
    owner.s3.delete_object(Bucket="iotbutton-notifier-test", Key="notifier/config.json")

    failures.failure_handler(record(button_event()), LambdaContext())

    [message] = owner.inbox()
    assert message["Message"].startswith(f"An alarm from button {SERIAL} (SINGLE, ")
    assert "config unreadable" in caplog.text


def test_a_hostile_payload_is_shown_safely(owner):
    owner.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    event = button_event(topicSerial="<x>\u202e\n" * 40, clickType="LONG\x00")

    failures.failure_handler(record(event, error="\x1b[31m" + "e" * 5000), LambdaContext())

    [message] = owner.inbox()
    assert "<x>" not in message["Message"] and "\n" not in message["Message"]
    assert len(message["Message"]) < 600


@pytest.mark.parametrize(
    "event",
    [
        {"not": "a record"},
        "text",
        {"requestContext": {}, "requestPayload": {"iotbuttonRetry": {"alarm": "x"}}},
    ],
)
def test_anything_but_a_click_record_tells_nobody(owner, event):
    result = failures.failure_handler(event, LambdaContext())

    assert "ignored" in result and owner.inbox() == []


def test_without_an_owner_topic_the_log_says_so(owner, monkeypatch, caplog):
    monkeypatch.delenv("IOTBUTTON_OWNER_TOPIC")
    owner.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    result = failures.failure_handler(record(button_event()), LambdaContext())

    assert result["owner"] == "not told: no owner topic"
    assert owner.inbox() == []
    assert "ownerToldAt" not in alarm_item(owner.dynamodb, result["alarm"])


def test_sns_refusing_the_message_fails_the_invocation_so_lambda_retries_it(owner, monkeypatch):
    monkeypatch.setenv("IOTBUTTON_OWNER_TOPIC", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    owner.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    with pytest.raises(Exception, match=r"NotFound|not exist"):
        failures.failure_handler(record(button_event()), LambdaContext())


def test_notify_retry_sends_a_dropped_alarm_once_twilio_is_back(owner):
    owner.twilio.plan(PlannedFailure(status=503, times=3 * twilio_rest.MAX_ATTEMPTS, to=ALICE))
    owner.write_config(messaging_config({"LONG": click_config(sms=[ALICE])}))
    event = button_event("LONG")
    for _attempt in range(3):
        with pytest.raises(handler.DeliveryIncomplete):
            handler.lambda_handler(event, LambdaContext())
    result = failures.failure_handler(record(event), LambdaContext())
    before = len(owner.sent("Messages"))

    retried = handler.lambda_handler(
        {"iotbuttonRetry": {"alarm": result["alarm"], "deliveries": [["sms", ALICE]]}},
        LambdaContext("retry-request"),
    )

    assert [item["status"] for item in retried["results"]] == ["queued"]
    assert len(owner.sent("Messages")) == before + 1
