"""SNS in the sandbox: every Publish moto accepts puts what each sms and email subscriber would
receive in the outbox (beside the Twilio stand-in's entries, written under its lock), and an
on-failure destination that is a topic gets the invocation record as its message. The sandbox's
AWS endpoint in-process, with a Twilio stand-in's outbox file wired to it as the sandbox does."""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from iotbutton_cli.sandbox import async_invoke
from iotbutton_cli.sandbox import client as sandbox_control
from iotbutton_cli.sandbox.async_invoke import AsyncEvent
from iotbutton_cli.sandbox.protocol import SandboxInfo
from iotbutton_cli.sandbox.twilio import TwilioStandIn

REGION = "us-east-1"
SMS = "+15551230001"
EMAIL = "owner@example.com"
EVENT = {"serialNumber": "G030JF0553648RUH", "batteryVoltage": "1650mV", "clickType": "LONG"}


@pytest.fixture
def outbox(sandbox_aws, tmp_path) -> Path:
    """The outbox file, written as the sandbox writes it: through the Twilio stand-in."""
    path = tmp_path / "outbox.jsonl"
    stand_in = TwilioStandIn(outbox_path=path)
    sandbox_aws.on_owner_messages = stand_in.add_to_outbox
    return path


def info(path: Path) -> SandboxInfo:
    """A sandbox's info naming this outbox (the rest is not read)."""
    return SandboxInfo(
        pid=0,
        aws_url="",
        mqtt_host="",
        mqtt_port=0,
        ca_file="",
        twilio_url="",
        outbox=str(path),
        region=REGION,
        account="123456789012",
        access_key_id="AKIA",
        secret_access_key="x",
    )


def entries(path: Path) -> list[dict[str, Any]]:
    return sandbox_control.outbox(info(path))


def topic_with(*subscriptions: tuple[str, str]) -> tuple[Any, str]:
    sns = boto3.client("sns", region_name=REGION)
    arn = sns.create_topic(Name="iotbutton-owner")["TopicArn"]
    for protocol, endpoint in subscriptions:
        sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint)
    return sns, arn


def test_a_publish_gives_one_entry_per_sms_and_email_subscription(outbox):
    sns, arn = topic_with(("sms", SMS), ("email", EMAIL))

    message_id = sns.publish(TopicArn=arn, Subject="Button alarm", Message="Grandma: no SMS")[
        "MessageId"
    ]

    found = entries(outbox)
    assert sorted((e["protocol"], e["to"]) for e in found) == [("email", EMAIL), ("sms", SMS)]
    by_protocol = {e["protocol"]: e for e in found}
    assert by_protocol["sms"] == {
        "kind": "sns",
        "time": by_protocol["sms"]["time"],
        "topic": arn,
        "protocol": "sms",
        "to": SMS,
        "subject": None,  # an SMS carries no subject
        "body": "Grandma: no SMS",
        "message_id": message_id,
    }
    assert by_protocol["email"]["subject"] == "Button alarm"
    assert by_protocol["email"]["body"] == "Grandma: no SMS"
    assert all(sandbox_control.is_owner_message(e) for e in found)
    with outbox.open("a") as handle:  # a Twilio request beside them
        handle.write(json.dumps({"method": "POST", "resource": "Messages"}) + "\n")
    assert len(entries(outbox)) == 3
    requests = sandbox_control.outbox(info(outbox), requests_only=True)
    assert requests == [{"method": "POST", "resource": "Messages"}]


def test_a_topic_without_subscriptions_records_nothing(outbox, caplog):
    sns, arn = topic_with()

    with caplog.at_level(logging.INFO, logger="iotbutton.sandbox"):
        sns.publish(TopicArn=arn, Message="nobody listens")

    assert entries(outbox) == []
    assert "no sms or email subscription, nothing delivered" in caplog.text


def test_a_refused_publish_records_nothing(outbox):
    sns, arn = topic_with(("sms", SMS))

    with pytest.raises(ClientError):
        sns.publish(TopicArn=arn + "-gone", Message="to no topic")
    with pytest.raises(ClientError):
        sns.publish(TopicArn=arn, Message="x", Subject="s" * 101)

    assert entries(outbox) == []


def test_a_direct_sms_and_a_structured_message(outbox):
    sns, arn = topic_with(("sms", SMS), ("email", EMAIL))

    sns.publish(PhoneNumber="+15551239999", Message="direct")
    sns.publish(
        TopicArn=arn,
        MessageStructure="json",
        Message=json.dumps({"default": "long text for email", "sms": "short"}),
    )

    found = [(e["topic"], e["protocol"], e["to"], e["subject"], e["body"]) for e in entries(outbox)]
    assert found[0] == (None, "sms", "+15551239999", None, "direct")
    assert sorted(found[1:]) == [
        (arn, "email", EMAIL, "AWS Notification Message", "long text for email"),
        (arn, "sms", SMS, None, "short"),
    ]


def test_a_filter_policy_that_does_not_match_delivers_nothing_there(outbox):
    sns, arn = topic_with()
    sns.subscribe(
        TopicArn=arn,
        Protocol="sms",
        Endpoint=SMS,
        Attributes={"FilterPolicy": json.dumps({"severity": ["high"]})},
    )
    sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=EMAIL)

    sns.publish(
        TopicArn=arn,
        Message="low",
        MessageAttributes={"severity": {"DataType": "String", "StringValue": "low"}},
    )

    assert [e["protocol"] for e in entries(outbox)] == ["email"]


def test_an_sns_on_failure_destination_puts_the_record_in_the_outbox(
    outbox, sandbox_aws, monkeypatch
):
    monkeypatch.setattr(async_invoke, "ASYNC_RETRY_DELAYS", (0.05, 0.05))
    _, arn = topic_with(("sms", SMS))
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("fn.py", "def handler(event, context):\n    raise RuntimeError('down')\n")
    lam = boto3.client("lambda", region_name=REGION)
    lam.create_function(
        FunctionName="notifier",
        Runtime="python3.13",
        Role=role,
        Handler="fn.handler",
        Code={"ZipFile": code.getvalue()},
    )
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": arn}},
    )

    sandbox_aws.async_invoker.submit(AsyncEvent("notifier", EVENT, source="rule clicks"))
    deadline = time.monotonic() + 30
    while not entries(outbox):
        assert time.monotonic() < deadline, "no record reached the topic"
        time.sleep(0.05)
    time.sleep(0.2)

    [entry] = entries(outbox)
    assert (entry["kind"], entry["protocol"], entry["to"], entry["topic"]) == (
        "sns",
        "sms",
        SMS,
        arn,
    )
    record = json.loads(entry["body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == EVENT
    assert record["responsePayload"]["errorMessage"] == "down"
