"""Be a button, or watch the buttons: MQTT over mutual TLS with the real awsiotsdk client.

A simulated button connects exactly as the hardware does: client id = serial, its own certificate
and key, the ATS endpoint on port 8883 with Amazon Root CA 1 (or the sandbox's broker and CA), or on
port 443 offering ALPN ``x-amzn-mqtt-ca`` (:class:`Endpoint` ``alpn``), and publishes
``{"serialNumber", "batteryVoltage", "clickType"}`` to ``iotbutton/<serial>`` (the payload the
notifier's contract describes: ``notifier_lambda.contract.button_payload``).

Watching uses a separate monitor identity (own certificate, own policy that may only subscribe to
and receive the button topics), so buttons' policies stay publish-only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from iotbutton_cli.aws import topics
from iotbutton_cli.context import AppContext, sandbox_gone_error
from iotbutton_cli.errors import IotButtonError, usage_error
from iotbutton_cli.notifier_lambda.contract import CLICK_TYPES, button_payload
from iotbutton_cli.provisioning import certs, policies
from iotbutton_cli.provisioning.endpoint import Endpoint, data_endpoint
from iotbutton_cli.provisioning.policies import MONITOR_CLIENT_PREFIX, MONITOR_POLICY, TOPIC_PREFIX
from iotbutton_cli.provisioning.serials import not_found, validate_serial
from iotbutton_cli.registry import keyfiles, kinds

CONNECT_TIMEOUT_SECONDS = 10.0
RECONNECT_FOR_SECONDS = 60.0  # how long `sim subscribe` keeps trying after losing the broker
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 5
MONITOR_ROLE = "monitor"


@dataclass
class Published:
    serial: str
    topic: str
    payload: dict[str, str]
    host: str
    port: int
    alpn: bool = False  # the TLS handshake offered ALPN x-amzn-mqtt-ca


@dataclass
class Received:
    topic: str
    payload: Any
    time: datetime  # when it arrived, timezone-aware (UTC)


# --- identities --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCredentials:
    client_id: str
    certificate: str
    private_key: str


def button_identity(ctx: AppContext, serial: str | None) -> tuple[str, DeviceCredentials]:
    """The button to act as: the given serial, or the only one recorded."""
    if serial is None:
        things = sorted(ctx.namespace.items(kinds.THINGS))
        if len(things) != 1:
            raise usage_error(
                "which-button",
                "Which button? " + (f"{len(things)} are recorded." if things else "None exists."),
                "Pass a SERIAL (see `iotbutton things list`)."
                if things
                else "Create one with `iotbutton things create`.",
            )
        serial = things[0]
    validate_serial(serial)
    if ctx.namespace.get(kinds.THINGS, serial) is None:
        raise not_found(serial)
    _, record = certs.current_certificate(ctx, serial)
    files = record.get("files") or {}
    if certs.key_on_device(record):
        raise IotButtonError(
            "no-private-key",
            f"Button {serial} has no private key on this machine: its key is on the device "
            "(its certificate came from a CSR), so iotbutton cannot connect as it.",
            "Press the device itself (`iotbutton sim subscribe` shows its clicks), or simulate "
            "with a button whose key is made here (`iotbutton things create`).",
        )
    if not files or not keyfiles.KeyFiles(**files).complete():
        raise IotButtonError(
            "key-files-missing",
            f"The certificate or private key of {serial} is missing on this machine.",
            f"Issue a new certificate with `iotbutton certs rotate {serial}`.",
        )
    return serial, DeviceCredentials(serial, files["certificate"], files["private_key"])


def monitor_identity(ctx: AppContext) -> DeviceCredentials:
    """The monitor's certificate, created (and recorded, so `clean` removes it) on first use."""
    for cert_id, record in ctx.namespace.items(certs.KIND).items():
        if record.get("role") == MONITOR_ROLE and certs.usable(record):
            files = record["files"]
            return DeviceCredentials(
                _monitor_client_id(), files["certificate"], files["private_key"]
            )
        if record.get("role") == MONITOR_ROLE:
            certs.retire_certificate(ctx, cert_id)
    ctx.before_changes()
    iot = ctx.client("iot")
    policies.ensure_policy(ctx, MONITOR_POLICY)
    # Guarded like a button's certificate: one whose answer is lost is found and retired.
    response = certs.create_certificate(ctx, {"thing": None, "role": MONITOR_ROLE})
    cert_id, arn = response["certificateId"], response["certificateArn"]
    iot.attach_policy(policyName=MONITOR_POLICY, target=arn)
    ctx.namespace.update(certs.KIND, cert_id, policies=[MONITOR_POLICY])
    files = keyfiles.key_files(ctx.namespace.key, MONITOR_ROLE, cert_id)
    assert files.private_key is not None  # made here
    return DeviceCredentials(_monitor_client_id(), files.certificate, files.private_key)


def _monitor_client_id() -> str:
    # One client id may be connected once: each watcher gets its own.
    return MONITOR_CLIENT_PREFIX + secrets.token_hex(4)


# --- MQTT ----------------------------------------------------------------------------------------


def _connect(endpoint: Endpoint, identity: DeviceCredentials, **callbacks: Any) -> Any:
    """Connected, or a one-line error. ``callbacks``: awscrt's ``on_connection_interrupted`` and
    ``on_connection_resumed``, for a client that stays connected (it then reconnects by itself,
    retrying every 1 to 5 s). With ``endpoint.alpn`` the TLS handshake offers ALPN
    ``x-amzn-mqtt-ca``, as on AWS IoT's port 443, on whatever port the endpoint has."""
    connection = _mqtt_connection(endpoint, identity, **callbacks)
    try:
        connection.connect().result(timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:
        raise _connect_error(endpoint, identity, exc) from exc
    return connection


def _mqtt_connection(endpoint: Endpoint, identity: DeviceCredentials, **callbacks: Any) -> Any:
    """An awscrt MQTT 3.1.1 connection over mutual TLS, as awsiotsdk's
    ``mqtt_connection_builder.mtls_from_path`` makes one, but with the ALPN list the endpoint
    asks for on any port (the builder offers ALPN only on port 443, and the sandbox's broker
    cannot listen there)."""
    from awscrt import io, mqtt

    tls = io.TlsContextOptions.create_client_with_mtls_from_path(
        identity.certificate, identity.private_key
    )
    tls.override_default_trust_store_from_path(None, endpoint.ca_file)
    if endpoint.alpn:
        if not io.is_alpn_available():
            raise IotButtonError(
                "alpn-unavailable",
                f"This machine's TLS library cannot offer ALPN, which port {endpoint.port} "
                "needs (x-amzn-mqtt-ca).",
                "Use port 8883 (the default).",
            )
        tls.alpn_list = endpoint.alpn_protocols
    socket = io.SocketOptions()
    socket.connect_timeout_ms = int(CONNECT_TIMEOUT_SECONDS * 1000)
    client = mqtt.Client(
        io.ClientBootstrap.get_or_create_static_default(), io.ClientTlsContext(tls)
    )
    return mqtt.Connection(
        client=client,
        host_name=endpoint.host,
        port=endpoint.port,
        client_id=identity.client_id,
        clean_session=True,
        keep_alive_secs=30,
        reconnect_min_timeout_secs=RECONNECT_MIN_SECONDS,
        reconnect_max_timeout_secs=RECONNECT_MAX_SECONDS,
        socket_options=socket,
        disable_metrics=True,
        **callbacks,
    )


def _connect_error(
    endpoint: Endpoint, identity: DeviceCredentials, exc: BaseException
) -> IotButtonError:
    text = f"{type(exc).__name__}: {exc}"
    where = f"{endpoint.host}:{endpoint.port}"
    if endpoint.alpn and "ALPN" in text.upper():
        return IotButtonError(
            "alpn-refused",
            f"{where} refused ALPN x-amzn-mqtt-ca in the TLS handshake.",
            "Use port 8883 (the default), or check that the endpoint is AWS IoT Core's.",
        )
    # A TLS server that rejects a client certificate ends the handshake, which the client
    # sees as a TLS error or as the socket closing under it.
    if any(mark in text.upper() for mark in ("TLS", "SSL", "CERT", "SOCKET_CLOSED")):
        return IotButtonError(
            "certificate-refused",
            f"{where} refused the certificate of {identity.client_id} "
            "(revoked, deleted, or unknown to this account).",
            "See `iotbutton certs show SERIAL`; `iotbutton certs rotate SERIAL` issues a new one.",
        )
    if "UNEXPECTED_HANGUP" in text.upper():  # IoT Core hangs up on a CONNECT it refuses
        return IotButtonError(
            "connect-denied",
            f"{where} closed the connection of client {identity.client_id} without answering: "
            "AWS IoT Core does that when the policy does not allow iot:Connect for this client "
            "id.",
            "The client id must be the thing name its certificate is attached to (the sandbox's "
            "log, `iotbutton sandbox status`, names the reason).",
        )
    if "PROTOCOL_ERROR" in text or ("CONNECTION_REFUSED" in text.upper() and "MQTT" in text):
        return IotButtonError(
            "connect-denied",
            f"{where} refused the MQTT connection of client {identity.client_id}: "
            "its policy does not allow it.",
            "The client id must be the thing name its certificate is attached to.",
        )
    if isinstance(exc, TimeoutError) or "TIMEOUT" in text.upper():
        return IotButtonError(
            "endpoint-timeout",
            f"No answer from {where} within {CONNECT_TIMEOUT_SECONDS:.0f} s.",
            "Check the network; for the sandbox, `iotbutton sandbox status`.",
        )
    return IotButtonError(
        "endpoint-unreachable",
        f"Cannot connect to {where}: {exc}",
        "Check the endpoint (`iotbutton endpoint`) and the network; for the sandbox, "
        "`iotbutton sandbox status`.",
    )


def _wait_for_puback(future: Any, endpoint: Endpoint, progress: str) -> None:
    """The broker's acknowledgement of one publish, or a one-line error if the connection went."""
    try:
        future.result(timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:
        where = f"{endpoint.host}:{endpoint.port}"
        waited = isinstance(exc, TimeoutError)
        raise IotButtonError(
            "publish-timeout" if waited else "connection-lost",
            f"{where} did not acknowledge a publish within {CONNECT_TIMEOUT_SECONDS:.0f} s "
            f"({progress})."
            if waited
            else f"The connection to {where} was lost ({progress}): {getattr(exc, 'name', exc)}.",
            "Check the endpoint (`iotbutton endpoint`); for the sandbox, `iotbutton sandbox "
            "status`, then run the command again.",
        ) from None


def _disconnect(connection: Any) -> None:
    # Leaving anyway: a client the broker kicked may never confirm its disconnect.
    with contextlib.suppress(Exception):
        connection.disconnect().result(timeout=2)


def click(
    ctx: AppContext,
    serial: str | None,
    click_type: str,
    battery_mv: int = 1650,
    count: int = 1,
    interval: float = 0.0,
    on_sent: Callable[[Published], None] | None = None,
    port: int | None = None,
) -> list[Published]:
    """Publish ``count`` clicks as the button would, on one connection (``port`` 443: with ALPN
    ``x-amzn-mqtt-ca``, see provisioning/endpoint.py)."""
    from awscrt import mqtt

    if click_type not in CLICK_TYPES:
        raise usage_error("bad-click", f"Unknown click type {click_type!r}.", "SINGLE/DOUBLE/LONG")
    serial, identity = button_identity(ctx, serial)
    endpoint = data_endpoint(ctx, port)
    topic = f"{TOPIC_PREFIX}/{serial}"
    payload = button_payload(serial, click_type, battery_mv)
    connection = _connect(endpoint, identity)
    sent: list[Published] = []
    try:
        for index in range(count):
            future, _ = connection.publish(topic, json.dumps(payload), mqtt.QoS.AT_LEAST_ONCE)
            _wait_for_puback(future, endpoint, f"{len(sent)} of {count} clicks were sent")
            published = Published(
                serial, topic, payload, endpoint.host, endpoint.port, endpoint.alpn
            )
            sent.append(published)
            if on_sent:
                on_sent(published)
            if interval and index + 1 < count:
                time.sleep(interval)
    finally:
        _disconnect(connection)
    return sent


def send(
    ctx: AppContext,
    topic: str | None,
    message: bytes,
    serial: str | None,
    port: int | None = None,
) -> Published:
    """Publish any payload as a button (its policy decides where it may publish)."""
    from awscrt import mqtt

    if topic is not None:
        topics.check_topic(topic)
    serial, identity = button_identity(ctx, serial)
    endpoint = data_endpoint(ctx, port)
    topic = topic or f"{TOPIC_PREFIX}/{serial}"
    connection = _connect(endpoint, identity)
    try:
        future, _ = connection.publish(topic, message, mqtt.QoS.AT_LEAST_ONCE)
        _wait_for_puback(future, endpoint, "the message may not have arrived")
    finally:
        _disconnect(connection)
    try:
        payload = json.loads(message)
    except ValueError:
        payload = message.decode(errors="replace")
    return Published(serial, topic, payload, endpoint.host, endpoint.port, endpoint.alpn)


def subscribe(
    ctx: AppContext,
    topic: str,
    on_message: Callable[[Received], None],
    duration: float | None = None,
    count: int | None = None,
    ready: Callable[[], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    reconnect_for: float = RECONNECT_FOR_SECONDS,
) -> int:
    """Print button traffic as the monitor until ``duration`` passes or ``count`` arrive.

    A lost connection is reported through ``on_status`` and retried (the subscription is made
    again on the new connection) for ``reconnect_for`` seconds; then ``connection-lost``.
    """
    from awscrt import mqtt

    topics.check_filter(topic)
    identity = monitor_identity(ctx)
    endpoint = data_endpoint(ctx)
    where = f"{endpoint.host}:{endpoint.port}"
    received = 0
    done = threading.Event()
    changed = threading.Event()  # the connection went or came back
    lock = threading.Lock()
    state: dict[str, Any] = {"lost_at": None, "why": "", "resumed": False}

    def status(text: str) -> None:
        if on_status:
            on_status(text)

    def interrupted(*_: Any, error: Any = None, **__: Any) -> None:
        with lock:
            state["lost_at"] = time.monotonic()
            state["why"] = getattr(error, "name", None) or str(error or "")
        changed.set()

    def resumed(*_: Any, **__: Any) -> None:
        with lock:
            state["resumed"] = True
        changed.set()

    def handle(topic: str, payload: bytes, **_: Any) -> None:
        nonlocal received
        try:
            body: Any = json.loads(payload)
        except ValueError:
            body = payload.decode(errors="replace")
        with lock:
            if done.is_set():
                return
            received += 1
            on_message(Received(topic, body, datetime.now(timezone.utc)))
            if count is not None and received >= count:
                done.set()
                changed.set()

    connection = _connect(
        endpoint, identity, on_connection_interrupted=interrupted, on_connection_resumed=resumed
    )
    try:
        _subscribe_once(connection, topic, handle, mqtt)
        if ready:
            ready()
        deadline = None if duration is None else time.monotonic() + duration
        while not done.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            with lock:
                lost_at, why, back = state["lost_at"], state["why"], state["resumed"]
                state["resumed"] = False
                changed.clear()
            if back:
                with lock:
                    state["lost_at"] = None
                # A clean session keeps no subscription: make it again on the new connection.
                try:
                    _subscribe_once(connection, topic, handle, mqtt)
                except IotButtonError:
                    raise
                except Exception:  # lost again meanwhile: the loss callback tells
                    with lock:
                        if state["lost_at"] is None:
                            state["lost_at"], state["why"] = time.monotonic(), "resubscribe failed"
                    continue
                status(f"Reconnected to {where}; watching {topic} again.")
                continue
            if lost_at is not None and why is not None:
                gone = sandbox_gone_error(ctx)  # no broker will come back: say so at once
                if gone is not None:
                    raise gone
                status(
                    f"Lost the connection to {where} ({why}); "
                    f"trying to reconnect for {reconnect_for:.0f} s…"
                )
                with lock:
                    state["why"] = None  # said once per loss
            if lost_at is not None and now - lost_at >= reconnect_for:
                raise IotButtonError(
                    "connection-lost",
                    f"Lost the connection to {where} and could not reconnect within "
                    f"{reconnect_for:.0f} s.",
                    "Check the endpoint (`iotbutton endpoint`); for the sandbox, `iotbutton "
                    "sandbox status`, then run the command again.",
                )
            waits = [0.5]
            if deadline is not None:
                waits.append(deadline - now)
            if lost_at is not None:
                waits.append(lost_at + reconnect_for - now)
            # Woken at once by a message count reached, a loss or a reconnection.
            changed.wait(timeout=max(0.0, min(waits)))
    finally:
        _disconnect(connection)
    return received


def _subscribe_once(connection: Any, topic: str, handle: Callable[..., None], mqtt: Any) -> None:
    future, _ = connection.subscribe(topic, mqtt.QoS.AT_LEAST_ONCE, callback=handle)
    try:
        granted = future.result(timeout=CONNECT_TIMEOUT_SECONDS)
    except mqtt.SubscribeError:  # the broker answered SUBACK failure (0x80)
        granted = {}
    except Exception as exc:  # IoT Core closes the connection over a denied subscription
        if "HANGUP" not in str(exc).upper() and "CANCELLED" not in str(exc).upper():
            raise
        granted = {}
    if granted.get("qos") is None or str(granted.get("qos")).endswith("FAILURE"):
        raise IotButtonError(
            "subscribe-denied",
            f"The endpoint refused the subscription to {topic} (AWS IoT Core closes the "
            "connection when the policy denies a subscription).",
            f"The monitor may watch only {TOPIC_PREFIX}/... topics.",
        )
