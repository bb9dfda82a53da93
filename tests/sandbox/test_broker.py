"""The sandbox's MQTT broker, driven by awsiotsdk devices whose certificates come from moto.

The broker runs its asyncio loop in a background thread; devices are made with moto in-process
(the ``iot`` fixture) after the broker has started, exactly as the sandbox will see them. Every
connect, publish and wait has a timeout so that a failure never hangs the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iotbutton_cli.sandbox.broker import Broker, MotoDirectory
from iotbutton_cli.sandbox.tls import CaFiles, ensure_ca

ACCOUNT = "123456789012"
REGION = "us-east-1"
TIMEOUT = 5.0
BUTTON = "G030JF0553648RUH"
OTHER_BUTTON = "G030JF0553648XYZ"
CLICK = {"serialNumber": BUTTON, "batteryVoltage": "1650mV", "clickType": "SINGLE"}
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
MONITOR_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/monitor-*"},
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{ARN}:topicfilter/iotbutton/*",
        },
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN}:topic/iotbutton/*"},
    ],
}


@dataclass
class RunningBroker:
    broker: Broker
    port: int
    loop: asyncio.AbstractEventLoop
    published: queue.Queue[tuple[str, bytes, str]] = field(default_factory=queue.Queue)

    def clients(self) -> list[str]:
        async def read() -> list[str]:
            return self.broker.clients

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(TIMEOUT)

    def next_publish(self) -> tuple[str, bytes, str]:
        return self.published.get(timeout=TIMEOUT)


@dataclass
class Device:
    name: str
    certificate_id: str
    arn: str
    cert: Path
    key: Path


class Client:
    """An awsiotsdk MQTT 3.1.1 connection, as a button or a subscriber would open it."""

    def __init__(self, port: int, ca: CaFiles, device: Device, client_id: str) -> None:
        from awsiot import mqtt_connection_builder

        self.client_id = client_id
        self.interrupted = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connection = mqtt_connection_builder.mtls_from_path(
            endpoint="localhost",
            port=port,
            cert_filepath=str(device.cert),
            pri_key_filepath=str(device.key),
            ca_filepath=str(ca.ca_cert),
            client_id=client_id,
            clean_session=True,
            keep_alive_secs=30,
            # A kicked or refused test client must not come back by itself during the test.
            reconnect_min_timeout_secs=60,
            reconnect_max_timeout_secs=120,
            on_connection_interrupted=self._on_interrupted,
        )

    def _on_interrupted(self, connection: Any, error: Any, **kwargs: Any) -> None:
        self.interrupted.set()

    def connect(self) -> Client:
        self.connection.connect().result(TIMEOUT)
        return self

    def publish(self, topic: str, payload: bytes) -> None:
        from awscrt import mqtt

        future, _ = self.connection.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        future.result(TIMEOUT)

    def subscribe(self, topic_filter: str) -> None:
        from awscrt import mqtt

        def on_message(topic: str, payload: bytes, **kwargs: Any) -> None:
            self.messages.put((topic, payload))

        future, _ = self.connection.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE, on_message)
        future.result(TIMEOUT)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=TIMEOUT)

    def disconnect(self) -> None:
        try:
            closed = self.connection.disconnect()
            # An interrupted connection's disconnect resolves only when its reconnect timer
            # fires; the call itself is what stops the reconnecting, so do not wait for it.
            if not self.interrupted.is_set():
                closed.result(TIMEOUT)
        except Exception:
            pass


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CaFiles:
    return ensure_ca(tmp_path_factory.mktemp("state") / "ca")


@pytest.fixture
def running(iot: Any, ca: CaFiles) -> Iterator[RunningBroker]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="broker", daemon=True)
    thread.start()
    published: queue.Queue[tuple[str, bytes, str]] = queue.Queue()
    broker = Broker(
        MotoDirectory(ACCOUNT, REGION),
        ca,
        region=REGION,
        account=ACCOUNT,
        on_publish=lambda topic, payload, client_id: published.put((topic, payload, client_id)),
    )
    port = asyncio.run_coroutine_threadsafe(broker.start(), loop).result(TIMEOUT)
    try:
        yield RunningBroker(broker, port, loop, published)
    finally:
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(3 * TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


@pytest.fixture
def button_policy(iot: Any) -> str:
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning.policies import BUTTON_POLICY_NAME, button_policy_document

    document = button_policy_document(AppContext())
    iot.create_policy(policyName=BUTTON_POLICY_NAME, policyDocument=json.dumps(document))
    return BUTTON_POLICY_NAME


@pytest.fixture
def make_device(iot: Any, tmp_path: Path) -> Any:
    def make(name: str, policy: str, thing: bool = True) -> Device:
        response = iot.create_keys_and_certificate(setAsActive=True)
        folder = tmp_path / "devices" / name
        folder.mkdir(parents=True, exist_ok=True)
        device = Device(
            name,
            response["certificateId"],
            response["certificateArn"],
            folder / f"{response['certificateId'][:10]}.pem.crt",
            folder / f"{response['certificateId'][:10]}.private.key",
        )
        device.cert.write_text(response["certificatePem"])
        device.key.write_text(response["keyPair"]["PrivateKey"])
        iot.attach_policy(policyName=policy, target=device.arn)
        if thing:
            iot.create_thing(thingName=name)
            iot.attach_thing_principal(thingName=name, principal=device.arn)
        return device

    return make


@pytest.fixture
def monitor_policy(iot: Any) -> str:
    iot.create_policy(policyName="monitor", policyDocument=json.dumps(MONITOR_POLICY))
    return "monitor"


@pytest.fixture
def connect(running: RunningBroker, ca: CaFiles) -> Iterator[Any]:
    """Open a client (``connect(device, client_id)``); every client is closed after the test."""
    opened: list[Client] = []

    def open_client(device: Device, client_id: str) -> Client:
        client = Client(running.port, ca, device, client_id)
        opened.append(client)
        return client.connect()

    yield open_client
    for client in opened:
        client.disconnect()


def click(serial: str = BUTTON) -> bytes:
    return json.dumps({**CLICK, "serialNumber": serial}).encode()


def test_button_publishes_its_click_to_on_publish(running, connect, make_device, button_policy):
    button = connect(make_device(BUTTON, button_policy), BUTTON)

    button.publish(f"iotbutton/{BUTTON}", click())

    assert running.next_publish() == (f"iotbutton/{BUTTON}", click(), BUTTON)
    assert running.published.empty()
    assert running.clients() == [BUTTON]


def test_connecting_with_another_client_id_is_refused(running, connect, make_device, button_policy):
    device = make_device(BUTTON, button_policy)

    # awscrt reports a CONNACK refusal as a protocol error ("invalid connect return code 5").
    with pytest.raises(Exception, match="MQTT_PROTOCOL_ERROR"):
        connect(device, "someone-else")

    assert running.clients() == []


def test_publishing_to_another_buttons_topic_is_dropped(
    running, connect, make_device, button_policy
):
    make_device(OTHER_BUTTON, button_policy)
    button = connect(make_device(BUTTON, button_policy), BUTTON)

    button.publish(f"iotbutton/{OTHER_BUTTON}", click(OTHER_BUTTON))
    button.publish(f"iotbutton/{BUTTON}/extra", click())
    button.publish(f"iotbutton/{BUTTON}", click())

    # Publishes are handled in order: the first to reach on_publish is the allowed one.
    assert running.next_publish() == (f"iotbutton/{BUTTON}", click(), BUTTON)
    assert running.published.empty()
    assert not button.interrupted.is_set()


def test_deactivated_certificate_is_refused_on_next_connect(
    running, connect, make_device, button_policy, iot
):
    device = make_device(BUTTON, button_policy)
    connect(device, BUTTON).disconnect()

    iot.update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")

    with pytest.raises(Exception):  # noqa: B017 - the TLS handshake fails; awscrt names it variously
        connect(device, BUTTON)
    assert running.clients() == []


def test_certificate_deactivated_while_connected_can_no_longer_publish(
    running, connect, make_device, button_policy, iot
):
    device = make_device(BUTTON, button_policy)
    button = connect(device, BUTTON)

    iot.update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")
    with contextlib.suppress(Exception):  # PUBACK or a closed connection: either is fine
        button.publish(f"iotbutton/{BUTTON}", click())

    assert button.interrupted.wait(TIMEOUT)
    assert running.published.empty()


def test_new_certificate_works_without_restart(running, connect, make_device, button_policy):
    first = connect(make_device(BUTTON, button_policy), BUTTON)
    first.publish(f"iotbutton/{BUTTON}", click())
    assert running.next_publish()[0] == f"iotbutton/{BUTTON}"

    second = connect(make_device(OTHER_BUTTON, button_policy), OTHER_BUTTON)
    second.publish(f"iotbutton/{OTHER_BUTTON}", click(OTHER_BUTTON))

    assert running.next_publish() == (
        f"iotbutton/{OTHER_BUTTON}",
        click(OTHER_BUTTON),
        OTHER_BUTTON,
    )


def test_client_without_certificate_fails_the_tls_handshake(running, ca):
    context = ssl.create_default_context(cafile=str(ca.ca_cert))

    with (
        socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, EOFError)),
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        # TLS 1.3: the server's verdict on the (missing) certificate reaches the client after
        # the client's side of the handshake, on its first read.
        tls.sendall(_connect_packet(BUTTON))
        if not tls.recv(4):
            raise EOFError("closed without CONNACK")
    assert running.clients() == []


def test_devices_may_connect_by_name_or_by_address(running, make_device, button_policy, ca):
    """The server certificate names both; a client connecting by address sends no SNI, and its
    handshake must still get the current trust anchors."""
    device = make_device(BUTTON, button_policy)

    for name in ("localhost", "127.0.0.1"):
        assert _connack(running, ca, device, _connect_packet(BUTTON), server_hostname=name) == 0


def test_certificate_of_several_things_connects_as_any_of_them(
    running, make_device, button_policy, ca, iot
):
    device = make_device(BUTTON, button_policy)
    iot.create_thing(thingName=OTHER_BUTTON)
    iot.attach_thing_principal(thingName=OTHER_BUTTON, principal=device.arn)

    assert _connack(running, ca, device, _connect_packet(OTHER_BUTTON)) == 0
    assert _connack(running, ca, device, _connect_packet(BUTTON)) == 0
    assert _connack(running, ca, device, _connect_packet("G030JF0553648AAA")) == 5


def test_monitor_receives_clicks_but_a_button_cannot_subscribe(
    running, connect, make_device, button_policy, monitor_policy
):
    from awscrt.mqtt import SubscribeError

    monitor = connect(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    monitor.subscribe("iotbutton/+")
    button = connect(make_device(BUTTON, button_policy), BUTTON)

    with pytest.raises(SubscribeError):
        button.subscribe(f"iotbutton/{BUTTON}")
    button.publish(f"iotbutton/{BUTTON}", click())

    assert monitor.next_message() == (f"iotbutton/{BUTTON}", click())
    assert button.messages.empty()


def test_receive_is_checked_for_each_message(running, connect, make_device, button_policy, iot):
    policy = json.loads(json.dumps(MONITOR_POLICY))
    policy["Statement"][1]["Resource"] = f"{ARN}:topicfilter/*"
    policy["Statement"][2]["Resource"] = f"{ARN}:topic/iotbutton/{OTHER_BUTTON}"
    iot.create_policy(policyName="narrow-monitor", policyDocument=json.dumps(policy))
    monitor = connect(make_device("monitor-1", "narrow-monitor", thing=False), "monitor-1")
    monitor.subscribe("#")
    button = connect(make_device(BUTTON, button_policy), BUTTON)
    other = connect(make_device(OTHER_BUTTON, button_policy), OTHER_BUTTON)

    button.publish(f"iotbutton/{BUTTON}", click())
    other.publish(f"iotbutton/{OTHER_BUTTON}", click(OTHER_BUTTON))

    assert monitor.next_message() == (f"iotbutton/{OTHER_BUTTON}", click(OTHER_BUTTON))
    assert [running.next_publish()[2], running.next_publish()[2]] == [BUTTON, OTHER_BUTTON]
    assert monitor.messages.empty()


def test_second_connection_with_the_same_client_id_kicks_the_first(
    running, connect, make_device, button_policy
):
    device = make_device(BUTTON, button_policy)
    first = connect(device, BUTTON)

    second = connect(device, BUTTON)

    assert first.interrupted.wait(TIMEOUT)
    first.disconnect()
    second.publish(f"iotbutton/{BUTTON}", click())
    assert running.next_publish() == (f"iotbutton/{BUTTON}", click(), BUTTON)
    assert not second.interrupted.is_set()
    assert running.clients() == [BUTTON]


def test_refused_connect_does_not_wipe_another_clients_subscription(
    running, connect, make_device, button_policy, monitor_policy
):
    monitor = connect(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    monitor.subscribe("iotbutton/+")
    device = make_device(BUTTON, button_policy)

    with pytest.raises(Exception, match="MQTT_PROTOCOL_ERROR"):
        connect(device, "monitor-1")  # clean session, another's client id, not authorized
    button = connect(device, BUTTON)
    button.publish(f"iotbutton/{BUTTON}", click())

    assert monitor.next_message() == (f"iotbutton/{BUTTON}", click())
    assert not monitor.interrupted.is_set()


def test_refusals_are_answered_with_the_right_connack(running, make_device, button_policy, ca):
    device = make_device(BUTTON, button_policy)

    assert _connack(running, ca, device, _connect_packet(BUTTON, level=5)) == 1  # MQTT 5
    assert _connack(running, ca, device, _connect_packet("")) == 2  # identifier rejected
    assert _connack(running, ca, device, _connect_packet("someone-else")) == 5  # not authorized


def test_importing_the_broker_does_not_import_amqtt_or_cryptography():
    import subprocess
    import sys

    code = (
        "import sys, iotbutton_cli.sandbox.broker, iotbutton_cli.sandbox.tls, "
        "iotbutton_cli.sandbox.iot_auth; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('amqtt', 'cryptography')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_ca_files_are_private_and_reused(tmp_path):
    folder = tmp_path / "state" / "ca"
    files = ensure_ca(folder)
    first = files.ca_cert.read_bytes()

    assert ensure_ca(folder) == files and files.ca_cert.read_bytes() == first
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in (files.server_key, folder / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    files.server_key.write_text("not a key")
    ensure_ca(folder)
    assert files.ca_cert.read_bytes() != first  # broken set: made anew


def _connack(
    running: RunningBroker,
    ca: CaFiles,
    device: Device,
    packet: bytes,
    server_hostname: str = "localhost",
) -> int:
    """Send one CONNECT over a plain ``ssl`` client; the CONNACK return code. A refused client is
    also disconnected."""
    context = ssl.create_default_context(cafile=str(ca.ca_cert))
    context.load_cert_chain(device.cert, device.key)
    with (
        socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(packet)
        connack = tls.recv(4)
        assert connack[:3] == bytes([0x20, 0x02, 0x00]), connack
        if connack[3] != 0:
            assert tls.recv(1) == b""
        return connack[3]


def _connect_packet(client_id: str, level: int = 4) -> bytes:
    """A minimal MQTT CONNECT (clean session, keep-alive 30)."""

    def string(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    body = string("MQTT") + bytes([level, 0x02]) + (30).to_bytes(2, "big")
    if level == 5:
        body += b"\x00"  # no properties
    body += string(client_id)
    return bytes([0x10, len(body)]) + body
