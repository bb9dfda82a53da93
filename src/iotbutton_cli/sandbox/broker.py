"""The sandbox's MQTT broker: an offline stand-in for AWS IoT Core's data plane.

MQTT 3.1.1 on 127.0.0.1 behind TLS with client certificates, authorized like IoT Core:

* **TLS.** The broker serves the sandbox CA's server certificate (``tls.ensure_ca``) and requires a
  client certificate. moto's device certificates are signed by their own keys under an issuer name
  no CA stands behind, so each ACTIVE certificate is its own trust anchor
  (``VERIFY_X509_PARTIAL_CHAIN``). The trust store is rebuilt from the directory for every
  handshake: the SNI callback, which OpenSSL runs for every ClientHello (with or without SNI),
  swaps the connection's context for one holding the certificates that are ACTIVE right now, so a
  certificate made a moment ago works at once and a deactivated one is refused at once.
* **Connect.** The broker reads the CONNECT packet itself, before amqtt sees the connection, and
  authorizes ``iot:Connect`` on ``client/<clientId>`` (plus ``iot:Publish`` on the will topic, if
  any) with the connection's policy variables. A refused client gets CONNACK 5 (not authorized) and
  is closed, and amqtt never hears of it. That order matters: amqtt resets a clean session *before*
  it authenticates a CONNECT, so a refused client claiming another's client id would otherwise
  wipe that client's subscriptions. An authorized connection is handed to amqtt through an
  ``external`` listener, with the CONNECT bytes replayed in front of the stream.
* **One connection per client id.** An authorized CONNECT with a client id already connected
  closes the earlier connection first (as IoT Core does), then proceeds.
* **Publish, Subscribe, Receive.** An amqtt plugin asks the broker for ``iot:Publish`` on
  ``topic/<topic>``, ``iot:Subscribe`` on ``topicfilter/<filter>`` and ``iot:Receive`` on
  ``topic/<topic>`` (per message and subscriber). A denied publish is dropped and logged; a denied
  subscription gets SUBACK 0x80. Policies are read from the directory at each decision, so policy
  changes apply at once; a certificate deactivated while connected is refused and its connection
  closed (IoT Core does that within minutes).
* ``on_publish(topic, payload, client_id)`` is called for every authorized publish, on the
  broker's event loop (it may be a coroutine function). The rules engine hooks in here.

Differences from IoT Core worth knowing: retained messages are delivered but not retained; will
messages reach subscribers but not ``on_publish``; QoS 2 is not downgraded to 1; topics starting
with ``$`` (``$aws/...``) close the connection (amqtt's rule); MQTT 5 clients are refused (CONNACK
1), so devices use awsiotsdk's ``mqtt_connection_builder``, not its MQTT 5 builder.

Every decision is logged at DEBUG, every refusal at INFO. amqtt and cryptography are imported only
when a broker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import secrets
import ssl
import struct
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from iotbutton_cli.sandbox.iot_auth import is_allowed
from iotbutton_cli.sandbox.protocol import SANDBOX_ACCOUNT as DEFAULT_ACCOUNT
from iotbutton_cli.sandbox.protocol import SANDBOX_REGION as DEFAULT_REGION
from iotbutton_cli.sandbox.tls import CaFiles

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LISTENER = "default"
PLUGIN_NAME = "IotCorePolicyPlugin"
HANDSHAKE_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0
KICK_TIMEOUT_SECONDS = 3.0
STOP_TIMEOUT_SECONDS = 5.0
MAX_CONNECT_BYTES = 256 * 1024
SESSION_EXPIRY_SECONDS = 3600  # IoT Core's default persistent-session expiry: one hour
MQTT_311_LEVEL = 4
CONNECT_PACKET = 0x10
CONNACK_UNACCEPTABLE_PROTOCOL = bytes([0x20, 0x02, 0x00, 0x01])
CONNACK_IDENTIFIER_REJECTED = bytes([0x20, 0x02, 0x00, 0x02])
CONNACK_NOT_AUTHORIZED = bytes([0x20, 0x02, 0x00, 0x05])

VAR_CLIENT_ID = "iot:ClientId"
VAR_THING_NAME = "iot:Connection.Thing.ThingName"
VAR_IS_ATTACHED = "iot:Connection.Thing.IsAttached"

OnPublish = Callable[[str, bytes, str], Any]

# Live brokers by id: amqtt builds the plugin from a dotted path; the plugin finds its broker here.
_BROKERS: weakref.WeakValueDictionary[str, Broker] = weakref.WeakValueDictionary()


class Directory(Protocol):
    """What the broker needs to know about certificates, answered now (moto's IoT backend).

    A directory may also offer ``principal_things(certificate_id) -> list[str]``; the broker then
    resolves a certificate attached to several things by the client id, as IoT Core does.
    """

    def active_certificates(self) -> list[str]:
        """PEMs of the ACTIVE certificates."""
        ...

    def certificate_id(self, pem_or_der: str | bytes) -> str | None:
        """The certificate's id, or None if the directory does not know it."""
        ...

    def principal_policies(self, certificate_id: str) -> list[dict[str, Any]]:
        """The documents of the policies attached to the certificate."""
        ...

    def principal_thing(self, certificate_id: str) -> str | None:
        """The thing attached to the certificate (None: none, or several)."""
        ...


@dataclass(frozen=True)
class ConnectRequest:
    """The parts of an MQTT CONNECT that authorization needs."""

    protocol: str
    level: int
    client_id: str
    clean_session: bool
    will_topic: str | None = None
    will_retain: bool = False


@dataclass(frozen=True)
class Identity:
    """Who an admitted connection is: its client id, certificate and policy variables."""

    client_id: str
    certificate_id: str
    certificate_der: bytes
    variables: dict[str, str]


@dataclass
class _Connection:
    identity: Identity
    writer: asyncio.StreamWriter
    task: asyncio.Task[Any] | None


@dataclass
class _TrustCache:
    anchors: frozenset[bytes] = frozenset()
    context: ssl.SSLContext | None = None


class Broker:
    """MQTT 3.1.1 over TLS on loopback, authorizing like AWS IoT Core (see the module docstring)."""

    def __init__(
        self,
        directory: Directory,
        ca: CaFiles,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        port: int = 0,
        on_publish: OnPublish | None = None,
    ) -> None:
        self.directory = directory
        self.ca = ca
        self.region = region
        self.account = account
        self.port = port
        self.on_publish = on_publish
        self._id = secrets.token_hex(8)
        self._server: asyncio.Server | None = None
        self._amqtt: Any = None
        self._trust = _TrustCache()
        self._connections: dict[str, _Connection] = {}
        self._identities: dict[str, Identity] = {}
        self._writers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._admit_lock: asyncio.Lock | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> int:
        """Listen on 127.0.0.1 (``port`` 0: any free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("broker already started")
        self._admit_lock = asyncio.Lock()
        _BROKERS[self._id] = self
        self._amqtt = _amqtt_broker_class()(self._amqtt_config())
        await self._amqtt.start()
        try:
            self._server = await asyncio.start_server(
                self._serve,
                host=LOOPBACK,
                port=self.port,
                ssl=self._listening_context(),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
            )
        except BaseException:
            amqtt, self._amqtt = self._amqtt, None
            _BROKERS.pop(self._id, None)
            await amqtt.shutdown()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info(
            "MQTT broker listening on %s:%d (TLS, client certificates)", LOOPBACK, self.port
        )
        return self.port

    async def stop(self) -> None:
        """Stop listening, end every connection and amqtt; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._amqtt is not None:
            amqtt, self._amqtt = self._amqtt, None
            try:
                await asyncio.wait_for(amqtt.shutdown(), STOP_TIMEOUT_SECONDS)
            except Exception:
                logger.exception("amqtt did not shut down cleanly")
        for writer in list(self._writers.values()):
            writer.transport.abort()
        tasks = list(self._writers)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in pending:
                task.cancel()
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT_SECONDS)
        self._connections.clear()
        self._identities.clear()
        _BROKERS.pop(self._id, None)
        logger.info("MQTT broker stopped")

    @property
    def clients(self) -> list[str]:
        """Client ids connected now."""
        return sorted(self._connections)

    def _amqtt_config(self) -> dict[str, Any]:
        return {
            "listeners": {LISTENER: {"type": "external"}},
            "session_expiry_interval": SESSION_EXPIRY_SECONDS,
            "plugins": {f"{__name__}.{PLUGIN_NAME}": {"broker_id": self._id}},
        }

    # -- TLS -------------------------------------------------------------------------------------

    def _listening_context(self) -> ssl.SSLContext:
        """Trusts nobody by itself: every handshake gets a context with the current anchors."""
        context = self._server_context(())
        context.sni_callback = self._on_client_hello
        return context

    def _server_context(self, anchors: Iterable[bytes]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.ca.server_cert, self.ca.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        # No session resumption: every connection presents its certificate and is checked anew.
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
        for der in anchors:
            try:
                context.load_verify_locations(cadata=der)
            except ssl.SSLError as exc:
                logger.warning(
                    "an ACTIVE certificate could not be loaded as a trust anchor: %s", exc
                )
        return context

    def _on_client_hello(
        self, sslobj: Any, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        try:
            sslobj.context = self._context_for_active_certificates()
        except Exception:
            logger.exception("could not build the TLS context for a handshake")
            return int(ssl.ALERT_DESCRIPTION_INTERNAL_ERROR)
        return None

    def _context_for_active_certificates(self) -> ssl.SSLContext:
        anchors = self._active_ders()
        if self._trust.context is None or anchors != self._trust.anchors:
            logger.debug("TLS trust store: %d ACTIVE certificate(s)", len(anchors))
            self._trust = _TrustCache(anchors, self._server_context(sorted(anchors)))
        assert self._trust.context is not None
        return self._trust.context

    def _active_ders(self) -> frozenset[bytes]:
        ders = (_pem_to_der(pem) for pem in self.directory.active_certificates())
        return frozenset(der for der in ders if der is not None)

    # -- connections -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._writers[task] = writer
        peer = writer.get_extra_info("peername")
        connection: _Connection | None = None
        try:
            connect = await self._read_connect(reader, peer)
            if connect is None:
                return
            packet, request = connect
            answer, identity = self._authorize_connect(writer, request, peer)
            if identity is None:
                await _send_and_close(writer, answer)
                return
            connection = _Connection(identity, writer, task)
            await self._admit(connection)
            amqtt = self._amqtt
            if amqtt is None:  # stopped meanwhile
                return
            reader_adapter, writer_adapter = _adapters(reader, writer, packet)
            await amqtt.external_connected(reader_adapter, writer_adapter, LISTENER)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("MQTT connection from %s failed", peer)
        finally:
            if connection is not None:
                client_id = connection.identity.client_id
                if self._connections.get(client_id) is connection:
                    del self._connections[client_id]
                logger.debug("client %s disconnected", client_id)
            if task is not None:
                self._writers.pop(task, None)
            if not writer.is_closing():
                writer.transport.abort()

    async def _read_connect(
        self, reader: asyncio.StreamReader, peer: Any
    ) -> tuple[bytes, ConnectRequest] | None:
        try:
            packet, body = await asyncio.wait_for(
                _read_first_packet(reader), CONNECT_TIMEOUT_SECONDS
            )
            return packet, parse_connect(body)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            logger.debug("no CONNECT from %s", peer)
        except ValueError as exc:
            logger.info("refused %s: %s", peer, exc)
        return None

    def _authorize_connect(
        self, writer: asyncio.StreamWriter, request: ConnectRequest, peer: Any
    ) -> tuple[bytes, Identity | None]:
        """``(CONNACK to send, None)`` for a refusal, ``(b"", identity)`` for an admission."""
        if request.protocol != "MQTT" or request.level != MQTT_311_LEVEL:
            logger.info(
                "refused %s: protocol %s level %d; the sandbox speaks MQTT 3.1.1 only",
                peer,
                request.protocol,
                request.level,
            )
            return CONNACK_UNACCEPTABLE_PROTOCOL, None
        if not request.client_id:
            logger.info("refused %s: empty client id", peer)
            return CONNACK_IDENTIFIER_REJECTED, None
        client_id = request.client_id
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if not der or der not in self._active_ders():
            logger.info("iot:Connect denied for %s: certificate not ACTIVE", client_id)
            return CONNACK_NOT_AUTHORIZED, None
        certificate_id = self.directory.certificate_id(der)
        if certificate_id is None:
            logger.info("iot:Connect denied for %s: unknown certificate", client_id)
            return CONNACK_NOT_AUTHORIZED, None
        identity = Identity(
            client_id, certificate_id, der, self._variables(certificate_id, client_id)
        )
        if not self._decide(identity, "iot:Connect", f"client/{client_id}"):
            return CONNACK_NOT_AUTHORIZED, None
        if request.will_topic is not None:
            will = f"topic/{request.will_topic}"
            if not self._decide(identity, "iot:Publish", will) or (
                request.will_retain and not self._decide(identity, "iot:RetainPublish", will)
            ):
                logger.info("iot:Connect denied for %s: will topic not allowed", client_id)
                return CONNACK_NOT_AUTHORIZED, None
        return b"", identity

    def _variables(self, certificate_id: str, client_id: str) -> dict[str, str]:
        """Policy variables of a connection, as IoT Core resolves them.

        The thing is the one named by the client id if it is attached to the certificate
        (``IsAttached`` true); otherwise the certificate's only thing, if it has exactly one.
        """
        several = getattr(self.directory, "principal_things", None)
        if callable(several):
            things = list(several(certificate_id))
        else:
            thing = self.directory.principal_thing(certificate_id)
            things = [thing] if thing else []
        variables = {VAR_CLIENT_ID: client_id, VAR_IS_ATTACHED: "false"}
        if client_id in things:
            variables[VAR_THING_NAME] = client_id
            variables[VAR_IS_ATTACHED] = "true"
        elif len(things) == 1:
            variables[VAR_THING_NAME] = things[0]
        return variables

    async def _admit(self, connection: _Connection) -> None:
        """Register an authorized connection, closing an earlier one with the same client id."""
        assert self._admit_lock is not None
        client_id = connection.identity.client_id
        async with self._admit_lock:
            earlier = self._connections.get(client_id)
            if earlier is not None:
                logger.info(
                    "client id %s connected again: closing its earlier connection", client_id
                )
                earlier.writer.transport.abort()
                if earlier.task is not None and not earlier.task.done():
                    _, pending = await asyncio.wait({earlier.task}, timeout=KICK_TIMEOUT_SECONDS)
                    if pending:
                        logger.warning("earlier connection of %s did not end in time", client_id)
            self._connections[client_id] = connection
            self._identities[client_id] = connection.identity
        logger.debug(
            "client %s admitted (certificate %s, %s)",
            client_id,
            connection.identity.certificate_id,
            connection.identity.variables,
        )

    # -- authorization (asked by the amqtt plugin) -----------------------------------------------

    def admitted(self, client_id: str | None) -> bool:
        return client_id is not None and client_id in self._connections

    def authorize(self, client_id: str | None, action: str, resource: str) -> bool:
        """May ``client_id``'s connection do ``action`` on ``resource`` (``topic/...`` etc.)?"""
        identity = self._identities.get(client_id or "")
        if identity is None:
            logger.info("%s denied for %s on %s: not connected", action, client_id, resource)
            return False
        if identity.certificate_der not in self._active_ders():
            logger.info(
                "%s denied for %s on %s: certificate %s is no longer ACTIVE; disconnecting",
                action,
                client_id,
                resource,
                identity.certificate_id,
            )
            connection = self._connections.get(identity.client_id)
            if connection is not None and connection.identity is identity:
                connection.writer.transport.abort()
            return False
        return self._decide(identity, action, resource)

    def _decide(self, identity: Identity, action: str, resource: str) -> bool:
        arn = f"arn:aws:iot:{self.region}:{self.account}:{resource}"
        policies = self.directory.principal_policies(identity.certificate_id)
        allowed = is_allowed(policies, action, arn, identity.variables)
        level = logging.DEBUG if allowed else logging.INFO
        logger.log(
            level,
            "%s %s for client %s on %s (certificate %s, %d policies)",
            action,
            "allowed" if allowed else "denied",
            identity.client_id,
            arn,
            identity.certificate_id,
            len(policies),
        )
        return allowed

    async def published(self, topic: str, payload: bytes, client_id: str) -> None:
        if self.on_publish is None:
            return
        try:
            result = self.on_publish(topic, payload, client_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_publish failed for a message on %s", topic)


async def _send_and_close(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send a last packet and close gracefully (an abort would drop the packet unsent)."""
    with contextlib.suppress(Exception):
        writer.write(data)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), KICK_TIMEOUT_SECONDS)


# -- MQTT framing ----------------------------------------------------------------------------------


async def _read_first_packet(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The first packet, whole and as its body; ValueError if it is not a sane CONNECT."""
    header = await reader.readexactly(1)
    if header[0] != CONNECT_PACKET:
        raise ValueError(f"first packet is not CONNECT (type byte 0x{header[0]:02x})")
    length_bytes = b""
    length = 0
    for index in range(4):
        byte = await reader.readexactly(1)
        length_bytes += byte
        length |= (byte[0] & 0x7F) << (7 * index)
        if not byte[0] & 0x80:
            break
    else:
        raise ValueError("malformed CONNECT length")
    if length > MAX_CONNECT_BYTES:
        raise ValueError(f"CONNECT of {length} bytes is too large")
    body = await reader.readexactly(length)
    return header + length_bytes + body, body


def parse_connect(body: bytes) -> ConnectRequest:
    """Parse a CONNECT packet's body (after the fixed header); ValueError if malformed."""
    position = 0

    def take(count: int) -> bytes:
        nonlocal position
        if position + count > len(body):
            raise ValueError("truncated CONNECT")
        chunk = body[position : position + count]
        position += count
        return chunk

    def string() -> str:
        (length,) = struct.unpack("!H", take(2))
        return take(length).decode("utf-8")  # UnicodeDecodeError is a ValueError

    protocol = string()
    level = take(1)[0]
    flags = take(1)[0]
    take(2)  # keep-alive
    client_id = string()
    will_topic = None
    if flags & 0x04:
        will_topic = string()
        take(struct.unpack("!H", take(2))[0])  # will message
    return ConnectRequest(
        protocol=protocol,
        level=level,
        client_id=client_id,
        clean_session=bool(flags & 0x02),
        will_topic=will_topic,
        will_retain=bool(flags & 0x20),
    )


@functools.lru_cache(maxsize=4096)
def _pem_to_der(pem: str) -> bytes | None:
    try:
        return ssl.PEM_cert_to_DER_cert(pem.strip())
    except (ValueError, UnicodeError):
        return None


def _to_der(pem_or_der: str | bytes) -> bytes | None:
    if isinstance(pem_or_der, str):
        return _pem_to_der(pem_or_der)
    if pem_or_der.lstrip().startswith(b"-----BEGIN"):
        return _pem_to_der(pem_or_der.decode("ascii", "replace"))
    return bytes(pem_or_der)


# -- amqtt glue (built on first use: importing this module must not import amqtt) --------------


def __getattr__(name: str) -> Any:
    """amqtt loads plugins by dotted path; the plugin class needs amqtt, so it is made on demand."""
    if name == PLUGIN_NAME:
        return _plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _plugin_class() -> type:
    from amqtt.contexts import Action
    from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

    iot_actions = {
        Action.PUBLISH: ("iot:Publish", "topic"),
        Action.SUBSCRIBE: ("iot:Subscribe", "topicfilter"),
        Action.RECEIVE: ("iot:Receive", "topic"),
    }

    class IotCorePolicyPlugin(BaseAuthPlugin, BaseTopicPlugin):
        """Hands amqtt's authentication, topic checks and publishes to the sandbox broker."""

        @dataclass
        class Config:
            broker_id: str = ""

        def _broker(self) -> Broker | None:
            return _BROKERS.get(self.config.broker_id)

        async def authenticate(self, *, session: Any) -> bool | None:
            broker = self._broker()
            return broker is not None and broker.admitted(session.client_id)

        async def topic_filtering(
            self, *, session: Any = None, topic: str | None = None, action: Any = None
        ) -> bool | None:
            broker = self._broker()
            if broker is None or session is None or topic is None or action not in iot_actions:
                return False
            iot_action, kind = iot_actions[action]
            try:
                return broker.authorize(session.client_id, iot_action, f"{kind}/{topic}")
            except Exception:
                logger.exception("%s on %s: authorization failed; denied", iot_action, topic)
                return False

        async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
            broker = self._broker()
            if broker is not None and message is not None:
                await broker.published(message.topic, bytes(message.data), client_id)

    IotCorePolicyPlugin.__module__ = __name__
    return IotCorePolicyPlugin


@functools.cache
def _amqtt_broker_class() -> type:
    from amqtt.broker import Broker as AmqttBroker

    class SandboxAmqttBroker(AmqttBroker):
        async def retain_message(
            self,
            source_session: Any,
            topic_name: str | None,
            data: bytes | bytearray | None,
            qos: int | None = None,
        ) -> None:
            # Retained messages would be handed to new subscribers without an iot:Receive check.
            if data:
                logger.info("retained message on %s delivered but not retained", topic_name)

    return SandboxAmqttBroker


def _adapters(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_packet: bytes
) -> tuple[Any, Any]:
    """amqtt's stream adapters, with the CONNECT this broker already read put back in front."""
    from amqtt.adapters import StreamWriterAdapter

    return _replaying_reader_class()(reader, first_packet), StreamWriterAdapter(writer)


@functools.cache
def _replaying_reader_class() -> type:
    from amqtt.adapters import StreamReaderAdapter

    class ReplayingReader(StreamReaderAdapter):
        def __init__(self, reader: asyncio.StreamReader, pending: bytes) -> None:
            super().__init__(reader)
            self._pending = pending

        async def read(self, n: int = -1) -> bytes:
            if not self._pending:
                return bytes(await super().read(n))
            if n < 0:
                data, self._pending = self._pending, b""
                return data
            data, self._pending = self._pending[:n], self._pending[n:]
            if len(data) < n:
                data += await super().read(n - len(data))
            return data

    return ReplayingReader


# -- moto as the directory -------------------------------------------------------------------------

T = TypeVar("T")


class MotoDirectory:
    """The directory the sandbox uses: moto's IoT backend in this process, read live."""

    def __init__(self, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> None:
        self.account = account
        self.region = region

    def _backend(self) -> Any:
        from moto.iot.models import iot_backends

        return iot_backends[self.account][self.region]

    def active_certificates(self) -> list[str]:
        certificates = _snapshot(lambda: self._backend().certificates.values())
        return [cert.certificate_pem for cert in certificates if cert.status == "ACTIVE"]

    def certificate_id(self, pem_or_der: str | bytes) -> str | None:
        der = _to_der(pem_or_der)
        if der is None:
            return None
        for cert in _snapshot(lambda: self._backend().certificates.values()):
            if _pem_to_der(cert.certificate_pem) == der:
                return str(cert.certificate_id)
        return None

    def principal_policies(self, certificate_id: str) -> list[dict[str, Any]]:
        arn = self._certificate_arn(certificate_id)
        if arn is None:
            return []
        attached = _snapshot(lambda: self._backend().principal_policies.items())
        documents = []
        for (target, name), (_, policy) in attached:
            if target != arn:
                continue
            try:
                document = policy.document
                documents.append(json.loads(document) if isinstance(document, str) else document)
            except ValueError:
                logger.warning("policy %s is not valid JSON: it grants nothing", name)
        return documents

    def principal_things(self, certificate_id: str) -> list[str]:
        arn = self._certificate_arn(certificate_id)
        if arn is None:
            return []
        keys = _snapshot(lambda: self._backend().principal_things.keys())
        return sorted(thing for target, thing in keys if target == arn)

    def principal_thing(self, certificate_id: str) -> str | None:
        things = self.principal_things(certificate_id)
        return things[0] if len(things) == 1 else None

    def _certificate_arn(self, certificate_id: str) -> str | None:
        cert = self._backend().certificates.get(certificate_id)
        return None if cert is None else str(cert.arn)


def _snapshot(view: Callable[[], Iterable[T]]) -> list[T]:
    """A copy of a moto dict view, taken while no moto request runs (see ``MOTO_LOCK``)."""
    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    with MOTO_LOCK:
        return list(view())
