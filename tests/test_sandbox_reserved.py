"""The sandbox's reserved topics end to end, as a device and a script see them: a shadow written
over MQTT is the one plain boto3 reads from the sandbox's AWS port, Basic Ingest and a Last Will
run the deployed notifier's rule (the click lands in the outbox). Devices are paho-mqtt clients
with certificates made through the sandbox's AWS API."""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from support import notify_init_args
from test_sandbox_dataplane import CLICK, SERIAL, client

TIMEOUT = 30.0
RULE = "iotbutton_notifier"  # the rule `notify deploy` makes


def device(sandbox: dict[str, Any], folder: Path, name: str, statements: list[Any]) -> Any:
    """A certificate allowed ``statements`` (and connecting as ``name``), as files; a thing
    ``name`` with the certificate attached."""
    iot = client("iot")
    arn = f"arn:aws:iot:{sandbox['region']}:{sandbox['account']}"
    connect = {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{name}"}
    policy = {"Version": "2012-10-17", "Statement": [connect, *statements]}
    iot.create_policy(policyName=f"test_{name}", policyDocument=json.dumps(policy))
    made = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName=f"test_{name}", target=made["certificateArn"])
    iot.create_thing(thingName=name)
    iot.attach_thing_principal(thingName=name, principal=made["certificateArn"])
    cert, key = folder / f"{name}.pem.crt", folder / f"{name}.private.key"
    cert.write_text(made["certificatePem"])
    key.write_text(made["keyPair"]["PrivateKey"])
    return cert, key


class Paho:
    """A paho-mqtt client over mutual TLS to the sandbox's broker."""

    def __init__(self, sandbox: dict[str, Any], files: Any, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        cert, key = files
        self.received: queue.Queue[Any] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.tls_set(ca_certs=sandbox["ca_file"], certfile=str(cert), keyfile=str(key))
        self.client.on_message = lambda _c, _u, message: self.received.put(message)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect(sandbox["mqtt_host"], sandbox["mqtt_port"], keepalive=30)
        self.client.loop_start()
        assert connected.wait(TIMEOUT)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_shadow_written_over_mqtt_is_what_boto3_reads(cli, sandbox, tmp_path):
    arn = f"arn:aws:iot:{sandbox['region']}:{sandbox['account']}"
    shadow = f"$aws/things/{SERIAL}/shadow"
    statements = [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/{shadow}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/{shadow}/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/{shadow}/*"},
    ]
    paho = Paho(sandbox, device(sandbox, tmp_path, SERIAL, statements), SERIAL)
    try:
        paho.client.subscribe(f"{shadow}/get/accepted", qos=1)
        assert paho.subscribed.wait(TIMEOUT)
        update = {"state": {"reported": {"battery": "1650mV"}, "desired": {"led": "on"}}}
        paho.client.publish(f"{shadow}/update", json.dumps(update), qos=1).wait_for_publish(5)
        paho.client.publish(f"{shadow}/get", b"", qos=1)
        over_mqtt = json.loads(paho.received.get(timeout=TIMEOUT).payload)
        data = client("iot-data")
        over_http = json.loads(data.get_thing_shadow(thingName=SERIAL)["payload"].read())
        # The other way: what HTTP writes (UpdateThingShadow, or a Publish to the update
        # topic) is what an MQTT get reads.
        data.update_thing_shadow(
            thingName=SERIAL, payload=b'{"state": {"desired": {"led": "off"}}}'
        )
        paho.client.publish(f"{shadow}/get", b"", qos=1)
        after_update = json.loads(paho.received.get(timeout=TIMEOUT).payload)
        data.publish(
            topic=f"{shadow}/update", qos=1, payload=b'{"state": {"reported": {"led": "off"}}}'
        )
        paho.client.publish(f"{shadow}/get", b"", qos=1)
        after_publish = json.loads(paho.received.get(timeout=TIMEOUT).payload)
    finally:
        paho.stop()

    assert over_http == over_mqtt
    assert over_http["state"]["delta"] == {"led": "on"} and over_http["version"] == 1
    assert after_update["state"]["desired"] == {"led": "off"} and after_update["version"] == 2
    assert after_publish["state"]["reported"]["led"] == "off" and after_publish["version"] == 3
    assert "delta" not in after_publish["state"]


def test_basic_ingest_over_mqtt_and_http_runs_the_notifier_rule(cli, sandbox, tmp_path):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", "+15551230001"))
    cli("--sandbox", "notify", "deploy")
    arn = f"arn:aws:iot:{sandbox['region']}:{sandbox['account']}"
    ingest = f"$aws/rules/{RULE}/iotbutton/{SERIAL}"
    rules = f"{arn}:topic/$aws/rules/*"  # any rule, as AWS's Basic Ingest docs write it
    statements = [{"Effect": "Allow", "Action": "iot:Publish", "Resource": rules}]
    paho = Paho(sandbox, device(sandbox, tmp_path, "ingester", statements), "ingester")
    try:
        # An unknown rule drops the message (logged); the known one runs.
        paho.client.publish(f"$aws/rules/no_such_rule/iotbutton/{SERIAL}", json.dumps(CLICK), 1)
        paho.client.publish(ingest, json.dumps(CLICK), qos=1).wait_for_publish(5)
        entries = cli.json("sandbox", "outbox", "--wait", "1", "--timeout", "30")
    finally:
        paho.stop()
    # Another click type: the same one within the debounce window would be one alarm.
    other = {**CLICK, "clickType": "LONG" if CLICK["clickType"] != "LONG" else "DOUBLE"}
    client("iot-data").publish(topic=ingest, qos=1, payload=json.dumps(other))
    both = cli.json("sandbox", "outbox", "--wait", "2", "--timeout", "30")

    assert [(e["resource"], e["fields"]["To"]) for e in entries] == [("Messages", "+15551230001")]
    assert len(both) == 2
    log = (Path(sandbox["outbox"]).parent / "sandbox.log").read_text()
    assert "Basic Ingest from ingester to rule no_such_rule dropped: no such rule" in log
    assert f"rule {RULE} got iotbutton/{SERIAL} by Basic Ingest from ingester" in log


def test_a_last_will_runs_the_notifier_rule(cli, sandbox, tmp_path):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", "+15551230001"))
    cli("--sandbox", "notify", "deploy")
    arn = f"arn:aws:iot:{sandbox['region']}:{sandbox['account']}"
    topic = f"iotbutton/{SERIAL}"
    statements = [{"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/{topic}"}]
    cert, key = device(sandbox, tmp_path, "willing", statements)
    context = ssl.create_default_context(cafile=sandbox["ca_file"])
    context.load_cert_chain(cert, key)
    will = json.dumps(CLICK).encode()
    body = _string(b"MQTT") + bytes([4, 0x02 | 0x04 | 0x08]) + (30).to_bytes(2, "big")
    body += _string(b"willing") + _string(topic.encode()) + _string(will)  # will QoS 1
    raw = socket.create_connection(("127.0.0.1", sandbox["mqtt_port"]), timeout=TIMEOUT)
    with context.wrap_socket(raw, server_hostname=sandbox["mqtt_host"]) as tls:
        tls.sendall(bytes([0x10]) + _length(len(body)) + body)
        assert tls.recv(4) == bytes([0x20, 0x02, 0x00, 0x00])
    # Closed without DISCONNECT: the connection is lost, so IoT Core publishes the will.

    entries = cli.json("sandbox", "outbox", "--wait", "1", "--timeout", "30")

    assert [(e["resource"], e["fields"]["To"]) for e in entries] == [("Messages", "+15551230001")]


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _length(value: int) -> bytes:
    """An MQTT remaining length (variable byte integer)."""
    out = b""
    while True:
        value, byte = divmod(value, 128)
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out
