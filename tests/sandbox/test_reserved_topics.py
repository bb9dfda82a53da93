"""The broker's reserved topics as IoT Core serves them: the Device Shadow service on moto's shadow
store, Basic Ingest, and Last Wills and lifecycle events reaching the rules engine. Driven with
paho-mqtt (a client we did not write) and raw packets; boto3 reads the same moto in-process."""

# ruff: noqa: F811 - test_broker's fixtures are imported, and requested by name

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from test_broker import (  # noqa: F401 - fixtures
    ARN,
    BUTTON,
    TIMEOUT,
    _raw_session,
    button_policy,
    ca,
    click,
    make_device,
    monitor_policy,
    paho,
    running,
)

SHADOW = f"$aws/things/{BUTTON}/shadow"
CLIENT = "${iot:ClientId}"
# A device that may use its own shadows (named by its client id), as IoT Core's docs write it.
SHADOW_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{CLIENT}"},
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": f"{ARN}:topic/$aws/things/{CLIENT}/shadow/*",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{ARN}:topicfilter/$aws/things/{CLIENT}/shadow/*",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": f"{ARN}:topic/$aws/things/{CLIENT}/shadow/*",
        },
    ],
}
RULE = "iotbutton_notifier"
INGEST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{CLIENT}"},
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": [f"{ARN}:topic/$aws/rules/{RULE}/*", f"{ARN}:topic/iotbutton/*"],
        },
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/*"},
    ],
}


@pytest.fixture
def shadow_device(iot: Any, paho: Any, make_device: Any) -> Any:
    """A paho client for the thing BUTTON, subscribed to all of its shadow topics."""
    iot.create_policy(policyName="shadow", policyDocument=json.dumps(SHADOW_POLICY))
    device = paho(make_device(BUTTON, "shadow"), BUTTON)
    device.client.subscribe(f"{SHADOW}/#", qos=1)
    assert device.subscribed.wait(TIMEOUT)
    return device


def answers(device: Any, count: int) -> dict[str, Any]:
    """The next ``count`` messages, by topic, as JSON (a request that is not JSON: its bytes)."""
    seen = {}
    for _ in range(count):
        message = device.received.get(timeout=TIMEOUT)
        try:
            seen[message.topic] = json.loads(message.payload)
        except ValueError:
            seen[message.topic] = message.payload
    return seen


def data_plane() -> Any:
    import boto3

    return boto3.client("iot-data", region_name="us-east-1")


def stored(shadow_name: str | None = None) -> dict[str, Any]:
    """The shadow as GetThingShadow answers it."""
    extra = {"shadowName": shadow_name} if shadow_name else {}
    return json.loads(data_plane().get_thing_shadow(thingName=BUTTON, **extra)["payload"].read())


def test_an_update_is_accepted_its_delta_and_documents_published_and_boto3_reads_it(
    running, shadow_device
):
    state = {"desired": {"color": "red", "level": 3}, "reported": {"color": "blue", "level": 3}}
    shadow_device.publish(f"{SHADOW}/update", json.dumps({"state": state, "clientToken": "t-1"}))

    seen = answers(shadow_device, 4)  # the request itself (update/# matches it), then 3 answers
    accepted = seen[f"{SHADOW}/update/accepted"]
    delta = seen[f"{SHADOW}/update/delta"]
    documents = seen[f"{SHADOW}/update/documents"]
    assert seen[f"{SHADOW}/update"] == {"state": state, "clientToken": "t-1"}
    assert accepted["state"] == state and accepted["version"] == 1
    assert accepted["clientToken"] == delta["clientToken"] == documents["clientToken"] == "t-1"
    timestamp = accepted["timestamp"]
    assert accepted["metadata"]["desired"]["color"] == {"timestamp": timestamp}
    assert delta["state"] == {"color": "red"} and delta["version"] == 1
    assert delta["metadata"] == {"color": {"timestamp": timestamp}}
    assert "previous" not in documents  # the shadow did not exist before
    assert documents["current"]["state"] == state and documents["current"]["version"] == 1

    document = stored()
    assert document["state"] == {**state, "delta": {"color": "red"}}
    assert (document["version"], document["metadata"]) == (1, accepted["metadata"])

    shadow_device.publish(f"{SHADOW}/get", json.dumps({"clientToken": "t-2"}))
    got = answers(shadow_device, 2)[f"{SHADOW}/get/accepted"]
    assert got == {**document, "clientToken": "t-2"}


def test_a_second_update_merges_and_documents_show_previous_and_current(running, shadow_device):
    shadow_device.publish(f"{SHADOW}/update", json.dumps({"state": {"desired": {"color": "red"}}}))
    answers(shadow_device, 4)
    reported = {"state": {"reported": {"color": "red"}}, "version": 1}
    shadow_device.publish(f"{SHADOW}/update", json.dumps(reported))

    seen = answers(shadow_device, 3)  # the request, accepted, documents: no delta is left

    assert f"{SHADOW}/update/delta" not in seen
    documents = seen[f"{SHADOW}/update/documents"]
    assert documents["previous"]["state"] == {"desired": {"color": "red"}}
    assert documents["previous"]["version"] == 1
    both = {"desired": {"color": "red"}, "reported": {"color": "red"}}
    assert documents["current"]["state"] == both and documents["current"]["version"] == 2
    assert stored()["state"] == both


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"not json", 400, "Invalid JSON"),
        (b"[1, 2]", 400, "Invalid JSON"),
        (b'{"clientToken": "c-1"}', 400, "Missing required node: state"),
        (b'{"state": 3}', 400, "State node must be an object"),
        (b'{"state": {"desired": "on"}}', 400, "Desired node must be an object"),
        (b'{"state": {"reported": [1]}}', 400, "Reported node must be an object"),
        (b'{"state": {"delta": {}}}', 400, "State contains an invalid node: 'delta'"),
        (b'{"state": {"desired": {}}, "version": "1"}', 400, "Invalid version"),
        (
            json.dumps({"state": {"desired": {}}, "clientToken": "x" * 65}).encode(),
            400,
            "Invalid clientToken",
        ),
        (
            json.dumps(
                {"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}
            ).encode(),
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        (b'{"state": {"desired": {"on": true}}, "version": 4}', 409, "Version conflict"),
    ],
)
def test_a_bad_update_is_rejected_as_iot_core_rejects_it(
    running, shadow_device, payload, code, message
):
    shadow_device.publish(f"{SHADOW}/update", payload)

    rejected = answers(shadow_device, 2)[f"{SHADOW}/update/rejected"]

    assert (rejected["code"], rejected["message"]) == (code, message)
    assert isinstance(rejected["timestamp"], int)
    assert rejected.get("clientToken") == ("c-1" if b"c-1" in payload else None)
    assert not shadow_device.closed.is_set()  # a rejection is an answer, not a hang-up
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        stored()


def test_get_and_delete_of_a_missing_shadow_are_rejected_with_404(running, shadow_device):
    shadow_device.publish(f"{SHADOW}/get", b"")
    shadow_device.publish(f"{SHADOW}/delete", b'{"clientToken": "d"}')

    seen = answers(shadow_device, 4)

    missing = f"No shadow exists with name: '{BUTTON}'"
    got, deleted = seen[f"{SHADOW}/get/rejected"], seen[f"{SHADOW}/delete/rejected"]
    assert (got["code"], got["message"]) == (deleted["code"], deleted["message"]) == (404, missing)
    assert deleted["clientToken"] == "d"


def test_delete_removes_the_shadow_for_boto3_too(running, shadow_device):
    from botocore.exceptions import ClientError

    shadow_device.publish(f"{SHADOW}/update", json.dumps({"state": {"reported": {"on": True}}}))
    answers(shadow_device, 3)
    shadow_device.publish(f"{SHADOW}/delete", b"")

    deleted = answers(shadow_device, 2)[f"{SHADOW}/delete/accepted"]

    assert deleted["version"] == 2 and isinstance(deleted["timestamp"], int)
    with pytest.raises(ClientError) as missing:
        stored()
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_named_shadow_is_its_own_document(running, shadow_device):
    from botocore.exceptions import ClientError

    named = f"{SHADOW}/name/config"
    shadow_device.publish(f"{named}/update", json.dumps({"state": {"reported": {"mode": "a"}}}))

    accepted = answers(shadow_device, 3)[f"{named}/update/accepted"]

    assert accepted["state"] == {"reported": {"mode": "a"}}
    assert stored("config")["state"] == {"reported": {"mode": "a"}}
    with pytest.raises(ClientError):
        stored()  # the classic shadow was not made


def test_a_shadow_needs_a_registered_thing_here(running, iot, paho, make_device):
    iot.create_policy(policyName="shadow", policyDocument=json.dumps(SHADOW_POLICY))
    device = paho(make_device("unregistered", "shadow", thing=False), "unregistered")
    device.client.subscribe("$aws/things/unregistered/shadow/update/rejected", qos=1)
    assert device.subscribed.wait(TIMEOUT)

    device.publish("$aws/things/unregistered/shadow/update", b'{"state": {"reported": {}}}')

    rejected = json.loads(device.received.get(timeout=TIMEOUT).payload)
    assert (rejected["code"], rejected["message"]) == (404, "Thing not found")


def test_a_shadow_update_the_policy_does_not_allow_closes_the_connection(
    running, paho, make_device, button_policy, caplog
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    button = paho(make_device(BUTTON, button_policy), BUTTON)

    button.publish(f"{SHADOW}/update", b'{"state": {"reported": {"on": true}}}')

    assert button.closed.wait(TIMEOUT)
    assert f"iot:Publish denied for client {BUTTON} on {ARN}:topic/{SHADOW}/update" in caplog.text
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        stored()


def test_only_the_shadow_service_publishes_answers(running, shadow_device, caplog):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")

    shadow_device.publish(f"{SHADOW}/update/accepted", b"{}")

    assert shadow_device.closed.wait(TIMEOUT)
    assert "only the Device Shadow service publishes there" in caplog.text


def test_shadow_traffic_reaches_the_rules_engine(running, shadow_device):
    update = json.dumps({"state": {"reported": {"on": True}}}).encode()
    shadow_device.publish(f"{SHADOW}/update", update)
    answers(shadow_device, 3)

    topics = [running.reserved.get(timeout=TIMEOUT)[:2] for _ in range(3)]

    assert topics[0] == (f"$aws/events/presence/connected/{BUTTON}", topics[0][1])
    assert [topic for topic, _ in topics[1:]] == [f"{SHADOW}/update", f"{SHADOW}/update/accepted"]
    assert topics[1][1] == update


# -- Basic Ingest ---------------------------------------------------------------------------------


@pytest.fixture
def ingest_policy(iot: Any) -> str:
    iot.create_policy(policyName="ingest", policyDocument=json.dumps(INGEST_POLICY))
    return "ingest"


def test_basic_ingest_goes_to_its_rule_with_the_prefix_off_and_to_no_subscriber(
    running, paho, make_device, ingest_policy, monitor_policy
):
    monitor = paho(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    monitor.client.subscribe("iotbutton/+", qos=1)
    assert monitor.subscribed.wait(TIMEOUT)
    device = paho(make_device(BUTTON, ingest_policy), BUTTON)

    device.publish(f"$aws/rules/{RULE}/iotbutton/{BUTTON}", click())
    assert running.ingested.get(timeout=TIMEOUT) == (RULE, f"iotbutton/{BUTTON}", click(), BUTTON)
    device.publish(f"iotbutton/{BUTTON}", b'{"after": true}')

    # The first message the monitor gets, and the first publish the rules engine sees, is the
    # plain one that came after: the Basic Ingest message went to its rule only.
    first = monitor.received.get(timeout=TIMEOUT)
    assert (first.topic, first.payload) == (f"iotbutton/{BUTTON}", b'{"after": true}')
    assert running.next_publish()[:2] == (f"iotbutton/{BUTTON}", b'{"after": true}')
    assert running.ingested.empty()


def test_basic_ingest_to_a_rule_the_policy_does_not_name_closes_the_connection(
    running, paho, make_device, ingest_policy, caplog
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    device = paho(make_device(BUTTON, ingest_policy), BUTTON)

    device.publish(f"$aws/rules/other_rule/iotbutton/{BUTTON}", click())

    assert device.closed.wait(TIMEOUT)
    assert f"iot:Publish denied for client {BUTTON} on {ARN}:topic/$aws/rules/other_rule" in (
        caplog.text
    )
    assert running.ingested.empty()


def test_basic_ingest_topics_cannot_be_subscribed_to(
    running, paho, make_device, ingest_policy, caplog
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    device = paho(make_device(BUTTON, ingest_policy), BUTTON)

    device.client.subscribe(f"$aws/rules/{RULE}/#", qos=1)

    assert device.closed.wait(TIMEOUT)
    assert "Basic Ingest topics cannot be subscribed to" in caplog.text


def test_the_basic_ingest_prefix_does_not_count_toward_the_topic_limits(
    running, paho, make_device, ingest_policy
):
    device = paho(make_device(BUTTON, ingest_policy), BUTTON)
    seven_slashes = f"iotbutton/{BUTTON}/a/b/c/d/e/f"  # 8 levels, and the prefix 3 more

    device.publish(f"$aws/rules/{RULE}/{seven_slashes}", click())

    assert running.ingested.get(timeout=TIMEOUT)[1] == seven_slashes


# -- Last Will and lifecycle events reach the rules engine ---------------------------------------


def test_a_last_will_reaches_the_rules_engine(running, make_device, button_policy, ca):
    will = (f"iotbutton/{BUTTON}", b'{"clickType": "LONG"}')  # short: a one-byte length
    tls = _raw_session(running, ca, make_device(BUTTON, button_policy), BUTTON, will=will)

    tls.close()  # no DISCONNECT: the connection is lost, so the will is published

    assert running.next_publish() == (*will, BUTTON)


def test_a_clean_disconnect_publishes_no_will(running, make_device, button_policy, ca):
    will = (f"iotbutton/{BUTTON}", b'{"will": true}')
    tls = _raw_session(running, ca, make_device(BUTTON, button_policy), BUTTON, will=will)
    tls.sendall(bytes([0xE0, 0x00]))  # DISCONNECT
    tls.close()
    disconnected = f"$aws/events/presence/disconnected/{BUTTON}"

    while running.reserved.get(timeout=TIMEOUT)[0] != disconnected:
        pass  # the session is over once its lifecycle event is out

    assert running.published.empty()


def test_lifecycle_events_reach_the_rules_engine(running, paho, make_device, button_policy):
    paho(make_device(BUTTON, button_policy), BUTTON)

    topic, payload, client_id = running.reserved.get(timeout=TIMEOUT)

    assert (topic, client_id) == (f"$aws/events/presence/connected/{BUTTON}", BUTTON)
    assert json.loads(payload)["eventType"] == "connected"
