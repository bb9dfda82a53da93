"""Nothing dropped silently, through the real background sandbox: a click's rule invokes a
function that fails, Lambda gives up as the function's event invoke config says, and the record
goes to an SNS topic, whose SMS subscriber's message is in the outbox that `iotbutton sandbox
outbox` shows (and that `--wait`, counting Twilio requests only, does not count)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

SERIAL = "G030JF0553648RUH"
CLICK = {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "SINGLE"}
OWNER = "+15551230009"


def client(sandbox: dict[str, Any], service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=sandbox["aws_url"],
        aws_access_key_id=sandbox["access_key_id"],
        aws_secret_access_key=sandbox["secret_access_key"],
    )


def failing_function(sandbox: dict[str, Any]) -> str:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("fn.py", "def handler(event, context):\n    raise ValueError('down')\n")
    role = client(sandbox, "iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
    created = client(sandbox, "lambda").create_function(
        FunctionName="clicker",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="fn.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return str(created["FunctionArn"])


def test_a_rule_s_failed_event_reaches_the_owner_through_sns(cli, sandbox):
    sns = client(sandbox, "sns")
    topic = sns.create_topic(Name="iotbutton-owner")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sms", Endpoint=OWNER)
    arn = failing_function(sandbox)
    lam = client(sandbox, "lambda")
    lam.put_function_event_invoke_config(
        FunctionName="clicker",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": topic}},
    )
    rule = client(sandbox, "iot").create_topic_rule(
        ruleName="clicks",
        topicRulePayload={
            "sql": "SELECT * FROM 'iotbutton/+'",
            "awsIotSqlVersion": "2016-03-23",
            "actions": [{"lambda": {"functionArn": arn}}],
        },
    )
    assert rule["ResponseMetadata"]["HTTPStatusCode"] == 200
    log = Path(sandbox["outbox"]).parent / "sandbox.log"
    data = client(sandbox, "iot-data")
    data.publish(topic=f"iotbutton/{SERIAL}", qos=1, payload=json.dumps(CLICK))
    deadline = time.monotonic() + 30
    while "rule clicks may not invoke clicker" not in log.read_text():  # no permission yet
        assert time.monotonic() < deadline, "the rule's missing permission was not logged"
        time.sleep(0.1)
    lam.add_permission(
        FunctionName="clicker",
        StatementId="iot",
        Action="lambda:InvokeFunction",
        Principal="iot.amazonaws.com",
        SourceArn="arn:aws:iot:us-east-1:123456789012:rule/clicks",
        SourceAccount="123456789012",
    )

    data.publish(topic=f"iotbutton/{SERIAL}", qos=1, payload=json.dumps(CLICK))
    deadline = time.monotonic() + 30
    while not (entries := cli.json("sandbox", "outbox")):
        assert time.monotonic() < deadline, "the record never reached the outbox"
        time.sleep(0.2)

    [entry] = entries
    assert (entry["kind"], entry["protocol"], entry["to"], entry["topic"]) == (
        "sns",
        "sms",
        OWNER,
        topic,
    )
    record = json.loads(entry["body"])
    assert record["requestPayload"] == CLICK
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    shown = cli("sandbox", "outbox").stdout
    assert f"SNS  sms -> {OWNER}: " in shown and '"condition": "RetriesExhausted"' in shown
    waited = cli("sandbox", "outbox", "--wait", "1", "--timeout", "0.5", code=1)
    assert "received 0 of the 1 SMS and calls" in waited.stderr
    assert (
        f"rule clicks: clicker dropped the event after 0 retries; its record goes to {topic} "
        "(RetriesExhausted)" in log.read_text()
    )
