"""The sandbox's data plane as a third-party script finds it: DescribeEndpoint names the broker
(not a made-up ``*.amazonaws.com`` host), and an HTTP ``iot-data publish`` reaches subscribers
and the rules engine, as on AWS. Driven with plain boto3 and the sandbox's own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from support import notify_init_args

SERIAL = "G030JF0553648RUH"
WATCH = [sys.executable, "-m", "iotbutton_cli", "--sandbox", "sim", "subscribe"]
CLICK = {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "SINGLE"}


def client(service: str) -> Any:
    import boto3

    from iotbutton_cli.sandbox import client as sandbox_control

    env = sandbox_control.aws_environment()
    return boto3.client(
        service,
        region_name=env["AWS_REGION"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def watch_for_one() -> subprocess.Popen[str]:
    """`sim subscribe` for one message, as JSON, in a process of its own."""
    return subprocess.Popen(
        [*WATCH, "--count", "1", "--duration", "60", "--json"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def test_describe_endpoint_answers_the_sandbox_broker(cli, sandbox):
    iot = client("iot")
    ats = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    legacy = iot.describe_endpoint()["endpointAddress"]

    assert ats == legacy == sandbox["mqtt_host"] == "localhost"
    assert cli.json("--sandbox", "endpoint")["host"] == ats


def test_an_http_publish_reaches_a_subscriber(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    watcher = watch_for_one()
    assert watcher.stderr is not None
    assert "Watching" in watcher.stderr.readline()

    client("iot-data").publish(topic=f"iotbutton/{SERIAL}", qos=1, payload=json.dumps(CLICK))
    stdout, stderr = watcher.communicate(timeout=60)

    assert watcher.returncode == 0, stderr
    seen = json.loads(stdout.splitlines()[0])
    assert (seen["topic"], seen["payload"]) == (f"iotbutton/{SERIAL}", CLICK)


def test_an_http_publish_runs_the_topic_rule(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", "+15551230001"))
    cli("--sandbox", "notify", "deploy")

    client("iot-data").publish(topic=f"iotbutton/{SERIAL}", qos=1, payload=json.dumps(CLICK))
    entries = cli.json("sandbox", "outbox", "--wait", "1", "--timeout", "30")

    assert [(e["resource"], e["fields"]["To"]) for e in entries] == [("Messages", "+15551230001")]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [("iotbutton/+", b"{}"), (f"iotbutton/{SERIAL}", b"x" * (128 * 1024 + 1))],
)
def test_an_http_publish_over_the_limits_is_refused(cli, sandbox, topic, payload):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as refused:
        client("iot-data").publish(topic=topic, qos=1, payload=payload)
    assert refused.value.response["Error"]["Code"] == "InvalidRequestException"


def test_a_retained_message_is_listed_fetched_and_given_to_a_later_subscriber(cli, sandbox):
    import base64

    cli("--sandbox", "things", "create", SERIAL)
    data = client("iot-data")
    topic = f"iotbutton/{SERIAL}"
    data.publish(topic=topic, qos=1, retain=True, payload=json.dumps(CLICK))

    listed = data.list_retained_messages()["retainedTopics"]
    fetched = data.get_retained_message(topic=topic)
    watcher = watch_for_one()
    stdout, stderr = watcher.communicate(timeout=60)  # no publish after it subscribed

    assert [(t["topic"], t["payloadSize"], t["qos"]) for t in listed] == [
        (topic, len(json.dumps(CLICK)), 1)
    ]
    payload = fetched["payload"]
    payload = payload if isinstance(payload, bytes) else base64.b64decode(payload)
    assert json.loads(payload) == CLICK and fetched["lastModifiedTime"] > 0
    assert watcher.returncode == 0, stderr
    assert json.loads(stdout.splitlines()[0])["payload"] == CLICK

    data.publish(topic=topic, qos=1, retain=True, payload=b"")  # an empty payload deletes it
    assert data.list_retained_messages()["retainedTopics"] == []
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as missing:
        data.get_retained_message(topic=topic)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
