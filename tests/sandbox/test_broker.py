"""The sandbox's MQTT broker, driven by awsiotsdk devices whose certificates come from moto.

The broker runs its asyncio loop in a background thread; devices are made with moto in-process
(the ``iot`` fixture) after the broker has started, exactly as the sandbox will see them. Every
connect, publish and wait has a timeout so that a failure never hangs the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
    # What on_publish got on $aws topics (lifecycle events, shadow traffic), kept apart so
    # that ``published`` holds the clients' own publishes.
    reserved: queue.Queue[tuple[str, bytes, str]] = field(default_factory=queue.Queue)
    ingested: queue.Queue[tuple[str, str, bytes, str]] = field(default_factory=queue.Queue)

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
    reserved: queue.Queue[tuple[str, bytes, str]] = queue.Queue()
    ingested: queue.Queue[tuple[str, str, bytes, str]] = queue.Queue()

    def on_publish(topic: str, payload: bytes, client_id: str) -> None:
        (reserved if topic.startswith("$aws/") else published).put((topic, payload, client_id))

    broker = Broker(
        MotoDirectory(ACCOUNT, REGION),
        ca,
        region=REGION,
        account=ACCOUNT,
        on_publish=on_publish,
        on_basic_ingest=lambda *message: ingested.put(message),
    )
    port = asyncio.run_coroutine_threadsafe(broker.start(), loop).result(TIMEOUT)
    try:
        yield RunningBroker(broker, port, loop, published, reserved, ingested)
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


def test_connecting_with_another_client_id_is_refused(
    running, connect, make_device, button_policy, caplog
):
    device = make_device(BUTTON, button_policy)
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")

    # IoT Core hangs up without a CONNACK; awscrt reports the closed socket.
    with pytest.raises(Exception) as refused:
        connect(device, "someone-else")
    assert _connect_error_code(refused.value) == "connect-denied"

    assert running.clients() == []
    assert "closed the connection of someone-else without CONNACK" in caplog.text


@pytest.mark.parametrize("topic", [f"iotbutton/{OTHER_BUTTON}", f"iotbutton/{BUTTON}/extra"])
def test_publishing_where_the_policy_denies_closes_the_connection(
    running, connect, make_device, button_policy, caplog, topic
):
    make_device(OTHER_BUTTON, button_policy)
    button = connect(make_device(BUTTON, button_policy), BUTTON)
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")

    with contextlib.suppress(Exception):  # no PUBACK: the connection goes
        button.publish(topic, click())

    assert button.interrupted.wait(TIMEOUT)
    assert running.published.empty()
    assert f"closing the connection of {BUTTON}: iot:Publish denied" in caplog.text


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


def test_sni_is_required_as_iot_core_requires_it(running, make_device, button_policy, ca, caplog):
    """By name (SNI sent) a device gets in; by address Python sends no SNI, and IoT Core, which
    needs the server name, refuses the handshake: so does the sandbox, and says why."""
    device = make_device(BUTTON, button_policy)
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")

    assert _connack(running, ca, device, _connect_packet(BUTTON), server_hostname="localhost") == 0
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _connack(running, ca, device, _connect_packet(BUTTON), server_hostname="127.0.0.1")
    assert "refused a TLS ClientHello without SNI" in caplog.text


def test_certificate_of_several_things_connects_as_any_of_them(
    running, make_device, button_policy, ca, iot
):
    device = make_device(BUTTON, button_policy)
    iot.create_thing(thingName=OTHER_BUTTON)
    iot.attach_thing_principal(thingName=OTHER_BUTTON, principal=device.arn)

    assert _connack(running, ca, device, _connect_packet(OTHER_BUTTON)) == 0
    assert _connack(running, ca, device, _connect_packet(BUTTON)) == 0
    assert _connack(running, ca, device, _connect_packet("G030JF0553648AAA")) is None


def test_monitor_receives_clicks_but_a_button_that_subscribes_is_disconnected(
    running, connect, make_device, button_policy, monitor_policy
):
    monitor = connect(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    monitor.subscribe("iotbutton/+")
    button = connect(make_device(BUTTON, button_policy), BUTTON)
    other = connect(make_device(OTHER_BUTTON, button_policy), OTHER_BUTTON)

    button.publish(f"iotbutton/{BUTTON}", click())
    with pytest.raises(Exception):  # noqa: B017 - no SUBACK: IoT Core closes the connection
        other.subscribe(f"iotbutton/{OTHER_BUTTON}")

    assert monitor.next_message() == (f"iotbutton/{BUTTON}", click())
    assert other.interrupted.wait(TIMEOUT)
    assert not button.interrupted.is_set() and not monitor.interrupted.is_set()


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

    with pytest.raises(Exception):  # noqa: B017 - closed without CONNACK
        connect(device, "monitor-1")  # clean session, another's client id, not authorized
    button = connect(device, BUTTON)
    button.publish(f"iotbutton/{BUTTON}", click())

    assert monitor.next_message() == (f"iotbutton/{BUTTON}", click())
    assert not monitor.interrupted.is_set()


def test_refusals_are_answered_as_iot_core_answers(running, make_device, button_policy, ca):
    device = make_device(BUTTON, button_policy)

    assert _connack(running, ca, device, _connect_packet(BUTTON, level=5)) == 0x84  # MQTT 5
    assert _connack(running, ca, device, _connect_packet("")) == 2  # identifier rejected
    assert _connack(running, ca, device, _connect_packet("someone-else")) is None  # hung up
    assert _connack(running, ca, device, _connect_packet("x" * 129)) is None  # over 128 bytes


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
) -> int | None:
    """Send one CONNECT over a plain ``ssl`` client; the CONNACK's return (or MQTT 5 reason)
    code, or None when the broker hung up without one. A refused client is also disconnected."""
    context = ssl.create_default_context(cafile=str(ca.ca_cert))
    context.load_cert_chain(device.cert, device.key)
    with (
        socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(packet)
        connack = _recv_or_closed(tls, 5 if packet[8] == 5 else 4)
        if not connack:
            return None
        assert connack[:1] == b"\x20", connack
        if connack[3] != 0:
            assert _recv_or_closed(tls, 1) == b""
        return connack[3]


def _recv_or_closed(tls: ssl.SSLSocket, count: int) -> bytes:
    try:
        return tls.recv(count)
    except (ssl.SSLEOFError, ConnectionResetError):
        return b""


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


# -- IoT Core's limits and hang-ups, seen by clients we did not write (paho-mqtt, raw sockets) --


class Paho:
    """A paho-mqtt 2 client over mutual TLS: a device library iotbutton does not use itself."""

    def __init__(self, running: RunningBroker, ca: CaFiles, device: Device, client_id: str):
        import paho.mqtt.client as mqtt

        self.closed = threading.Event()
        self.acked: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.tls_set(ca_certs=str(ca.ca_cert), certfile=device.cert, keyfile=device.key)
        self.client.on_disconnect = lambda *args: self.closed.set()
        self.client.on_publish = lambda _c, _u, mid, *_: self.acked.put(mid)
        self.received: queue.Queue[Any] = queue.Queue()
        self.client.on_message = lambda _c, _u, message: self.received.put(message)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("localhost", running.port, keepalive=30)
        self.client.loop_start()
        connected.wait(TIMEOUT)  # the CONNACK, before the test goes on

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        return int(self.client.publish(topic, payload, qos=qos).mid)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def paho(running, ca) -> Iterator[Any]:
    opened: list[Paho] = []

    def open_client(device: Device, client_id: str) -> Paho:
        client = Paho(running, ca, device, client_id)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.stop()


def test_a_payload_of_128_kb_is_taken_and_one_byte_more_closes_the_connection(
    running, paho, make_device, button_policy, caplog
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    button = paho(make_device(BUTTON, button_policy), BUTTON)
    topic = f"iotbutton/{BUTTON}"

    first = button.publish(topic, b"x" * (128 * 1024))
    assert button.acked.get(timeout=TIMEOUT) == first
    assert running.next_publish()[0] == topic
    button.publish(topic, b"x" * (128 * 1024 + 1))

    assert button.closed.wait(TIMEOUT)
    assert running.published.empty()
    assert f"payload of {128 * 1024 + 1} bytes on {topic} (the limit is 128 KB)" in caplog.text


@pytest.mark.parametrize(
    ("topic", "logged"),
    [
        (f"iotbutton/{BUTTON}/a/b/c/d/e/f/g", "of 9 levels (the limit is 8)"),
        (f"iotbutton/{BUTTON}/" + "x" * 240, "topic of 267 bytes (the limit is 256)"),
        (f"$aws/things/{BUTTON}/jobs/get", "the sandbox does not emulate this $aws topic"),
    ],
)
def test_topics_over_the_limits_close_the_connection(
    running, paho, make_device, button_policy, caplog, topic, logged
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    button = paho(make_device(BUTTON, button_policy), BUTTON)

    button.publish(topic, click())

    assert button.closed.wait(TIMEOUT)
    assert logged in caplog.text
    assert running.published.empty()


def _raw_session(
    running: RunningBroker,
    ca: CaFiles,
    device: Device,
    client_id: str,
    keep_alive: int = 30,
    will: tuple[str, bytes] | None = None,
) -> ssl.SSLSocket:
    """A connected MQTT 3.1.1 session over a plain ``ssl`` socket (CONNACK 0 read)."""
    context = ssl.create_default_context(cafile=str(ca.ca_cert))
    context.load_cert_chain(device.cert, device.key)
    raw = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    flags = 0x02 | (0x04 if will else 0)
    body = _string("MQTT") + bytes([4, flags]) + keep_alive.to_bytes(2, "big")
    body += _string(client_id)
    if will:
        body += _string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    tls.sendall(bytes([0x10, len(body)]) + body)
    assert tls.recv(4) == bytes([0x20, 0x02, 0x00, 0x00])
    return tls


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _publish_packet(topic: str, payload: bytes, qos: int) -> bytes:
    body = _string(topic) + (b"\x00\x01" if qos else b"") + payload
    return bytes([0x30 | (qos << 1), len(body)]) + body


@pytest.mark.parametrize(
    ("packet", "logged"),
    [
        (_publish_packet("iotbutton/+", click(), 1), "wildcard in the PUBLISH topic"),
        (_publish_packet(f"iotbutton/{BUTTON}", click(), 2), "QoS 2, which AWS IoT Core"),
    ],
)
def test_a_wildcard_or_qos_2_publish_closes_the_connection_and_is_logged(
    running, make_device, button_policy, ca, caplog, packet, logged
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    tls = _raw_session(running, ca, make_device(BUTTON, button_policy), BUTTON)
    with tls:
        tls.sendall(packet)
        assert _recv_or_closed(tls, 4) == b""  # no PUBACK: closed
    assert logged in caplog.text
    assert running.published.empty()


def test_a_silent_client_is_disconnected_after_1_5_keep_alives_and_its_will_published(
    running, connect, make_device, button_policy, monitor_policy, ca, caplog
):
    """The rule at a 2 s keep-alive (the broker's 30 s floor lowered for the test)."""
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    running.broker.keep_alive_floor = 1
    monitor = connect(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    monitor.subscribe("iotbutton/+")
    will = (f"iotbutton/{BUTTON}", b'{"gone": true}')
    tls = _raw_session(
        running, ca, make_device(BUTTON, button_policy), BUTTON, keep_alive=2, will=will
    )

    with tls:
        assert monitor.next_message() == will  # within TIMEOUT (5 s) of a 3 s silence
        assert _recv_or_closed(tls, 1) == b""
    assert f"closing the connection of {BUTTON}: silent for 3 s (1.5 x its keep-alive)" in (
        caplog.text
    )


def test_keep_alive_is_what_iot_core_applies():
    from iotbutton_cli.sandbox.broker import effective_keep_alive

    assert [effective_keep_alive(k) for k in (0, 1, 29, 30, 600, 1200, 5000)] == [
        1200,
        30,
        30,
        30,
        600,
        1200,
        1200,
    ]


def test_a_refused_handshake_is_logged_with_its_reason(running, ca, caplog):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    with contextlib.suppress(ssl.SSLError, ConnectionError, EOFError):
        test_client_without_certificate_fails_the_tls_handshake(running, ca)

    deadline = __import__("time").monotonic() + TIMEOUT
    while "refused TLS from 127.0.0.1" not in caplog.text:
        assert __import__("time").monotonic() < deadline, caplog.text
        __import__("time").sleep(0.05)
    assert "the client sent no certificate" in caplog.text


def _connect_error_code(exc: BaseException) -> str:
    """What `sim` would tell the user about this connect failure."""
    from iotbutton_cli.device.simulator import DeviceCredentials, _connect_error
    from iotbutton_cli.provisioning.endpoint import Endpoint

    identity = DeviceCredentials("someone-else", "cert.pem", "key.pem")
    return _connect_error(Endpoint("localhost", 8883, "ca.pem"), identity, exc).code


@pytest.mark.parametrize("qos", [0, 1])
def test_a_message_arrives_at_the_lower_of_publish_and_subscription_qos(
    running, paho, make_device, button_policy, monitor_policy, qos
):
    monitor = paho(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    monitor.client.subscribe("iotbutton/+", qos=1)
    assert monitor.subscribed.wait(TIMEOUT)
    button = paho(make_device(BUTTON, button_policy), BUTTON)

    button.publish(f"iotbutton/{BUTTON}", click(), qos=qos)

    message = monitor.received.get(timeout=TIMEOUT)
    assert (message.topic, message.payload, message.qos) == (f"iotbutton/{BUTTON}", click(), qos)


def test_retaining_without_iot_retain_publish_closes_the_connection(
    running, paho, make_device, button_policy, caplog
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.broker")
    button = paho(make_device(BUTTON, button_policy), BUTTON)

    button.client.publish(f"iotbutton/{BUTTON}", click(), qos=1, retain=True)

    assert button.closed.wait(TIMEOUT)
    assert running.broker.retained() == []
    assert running.published.empty()
    assert "iot:RetainPublish denied for client" in caplog.text


def test_a_retained_message_goes_only_to_later_subscribers_that_may_receive_it(
    running, paho, make_device, iot, monitor_policy
):
    retainer = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/retainer"},
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:RetainPublish"],
                "Resource": f"{ARN}:topic/iotbutton/*",
            },
        ],
    }
    iot.create_policy(policyName="retainer", policyDocument=json.dumps(retainer))
    narrow = json.loads(json.dumps(MONITOR_POLICY))
    narrow["Statement"][0]["Resource"] = f"{ARN}:client/narrow"
    narrow["Statement"][2]["Resource"] = f"{ARN}:topic/iotbutton/{OTHER_BUTTON}"
    iot.create_policy(policyName="narrow", policyDocument=json.dumps(narrow))
    publisher = paho(make_device("retainer", "retainer", thing=False), "retainer")
    publisher.client.publish(f"iotbutton/{BUTTON}", click(), qos=1, retain=True)
    assert publisher.acked.get(timeout=TIMEOUT)

    allowed = paho(make_device("monitor-1", monitor_policy, thing=False), "monitor-1")
    denied = paho(make_device("narrow", "narrow", thing=False), "narrow")
    for subscriber in (allowed, denied):
        subscriber.client.subscribe("iotbutton/+", qos=1)
        assert subscriber.subscribed.wait(TIMEOUT)

    message = allowed.received.get(timeout=TIMEOUT)
    assert (message.topic, message.payload, message.retain) == (f"iotbutton/{BUTTON}", click(), 1)
    assert [m["topic"] for m in running.broker.retained()] == [f"iotbutton/{BUTTON}"]
    with pytest.raises(queue.Empty):
        denied.received.get(timeout=1)


def test_lifecycle_events_reach_subscribers_that_may_receive_them(
    running, paho, make_device, iot, button_policy
):
    presence = f"{ARN}:topic/$aws/events/presence"
    watcher_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/watcher"},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": f"{ARN}:topicfilter/$aws/events/presence/*",
            },
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{presence}/*"},
        ],
    }
    iot.create_policy(policyName="watcher", policyDocument=json.dumps(watcher_policy))
    watcher = paho(make_device("watcher", "watcher", thing=False), "watcher")
    watcher.client.subscribe("$aws/events/presence/+/+", qos=1)
    assert watcher.subscribed.wait(TIMEOUT)
    device = make_device(BUTTON, button_policy)

    button = paho(device, BUTTON)
    connected = watcher.received.get(timeout=TIMEOUT)
    paho(device, BUTTON)  # the same client id again: the first is closed
    kicked = [watcher.received.get(timeout=TIMEOUT) for _ in range(2)]
    button.client.loop_stop()

    assert connected.topic == f"$aws/events/presence/connected/{BUTTON}"
    event = json.loads(connected.payload)
    assert (event["clientId"], event["eventType"], event["principalIdentifier"]) == (
        BUTTON,
        "connected",
        device.certificate_id,
    )
    events = {m.topic.split("/")[3]: json.loads(m.payload) for m in kicked}
    assert events["disconnected"]["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert events["disconnected"]["clientInitiatedDisconnect"] is False
    assert events["connected"]["sessionIdentifier"] != event["sessionIdentifier"]


def test_a_clean_disconnect_is_client_initiated(running, paho, make_device, iot, button_policy):
    watcher_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/watcher"},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/*"},
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": f"{ARN}:topic/$aws/events/presence/disconnected/*",
            },
        ],
    }
    iot.create_policy(policyName="watcher", policyDocument=json.dumps(watcher_policy))
    watcher = paho(make_device("watcher", "watcher", thing=False), "watcher")
    watcher.client.subscribe("$aws/events/presence/#", qos=1)
    assert watcher.subscribed.wait(TIMEOUT)

    button = paho(make_device(BUTTON, button_policy), BUTTON)
    button.stop()

    message = watcher.received.get(timeout=TIMEOUT)  # not the connected one: no iot:Receive
    assert message.topic == f"$aws/events/presence/disconnected/{BUTTON}"
    event = json.loads(message.payload)
    assert event["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert event["clientInitiatedDisconnect"] is True
