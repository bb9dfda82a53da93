"""The sandbox's MQTT broker: an offline stand-in for AWS IoT Core's data plane.

MQTT 3.1.1 on 127.0.0.1 behind TLS with client certificates, authorized like IoT Core:

* **TLS.** The broker serves the sandbox CA's server certificate (``tls.ensure_ca``) and requires a
  client certificate. moto's device certificates are signed by their own keys under an issuer name
  no CA stands behind, so each ACTIVE certificate is its own trust anchor
  (``VERIFY_X509_PARTIAL_CHAIN``). The trust store is rebuilt from the directory for every
  handshake: the SNI callback, which OpenSSL runs for every ClientHello (with or without SNI),
  swaps the connection's context for one holding the certificates that are ACTIVE right now, so a
  certificate made a moment ago works at once and a deactivated one is refused at once. A
  ClientHello without SNI is refused, as IoT Core refuses it. TLS is started by the broker on
  each accepted socket (``StreamWriter.start_tls``), so a refused handshake is logged with its
  reason. The listener speaks ALPN ``x-amzn-mqtt-ca`` (what a device offers on IoT Core's port
  443; the sandbox has one port for both) and takes clients that offer no ALPN. A client that
  offers only other protocols is taken too, without ALPN (IoT Core refuses it): Python's ``ssl``
  does not tell a server what was offered.
* **Connect.** The broker reads the CONNECT packet itself, before amqtt sees the connection, and
  authorizes ``iot:Connect`` on ``client/<clientId>`` (plus ``iot:Publish`` on the will topic, if
  any) with the connection's policy variables. ``${iot:Connection.Thing.ThingName}`` is the thing
  the certificate is attached to exclusively (``EXCLUSIVE_THING``), whatever the client id; with
  non-exclusive attachments, the client id if it names one of the certificate's things; otherwise it
  does not resolve (``IsAttached`` is then ``false``). A refused client is closed without a CONNACK,
  as IoT Core hangs up (so is a client id over 128 bytes); an MQTT 5 CONNECT gets an MQTT 5 CONNACK
  with reason 0x84 (unsupported protocol version). amqtt never hears of a refused client. That order
  matters: amqtt resets a clean session *before* it authenticates a CONNECT, so a refused client
  claiming another's client id would otherwise wipe that client's subscriptions. An authorized
  connection is handed to amqtt through an ``external`` listener, with the CONNECT bytes replayed in
  front of the stream.
* **One connection per client id.** An authorized CONNECT with a client id already connected
  closes the earlier connection first (as IoT Core does), then proceeds.
* **Publish, Subscribe, Receive.** An amqtt plugin asks the broker for ``iot:Publish`` on
  ``topic/<topic>``, ``iot:Subscribe`` on ``topicfilter/<filter>`` and ``iot:Receive`` on
  ``topic/<topic>`` (per message and subscriber). A denied publish or subscription closes the
  connection, as IoT Core does (a denied receive only skips that subscriber).
* **Limits.** Every packet is read whole before amqtt sees it (``packet_refusal``): a payload over
  128 KB, a topic or filter over 256 bytes or 8 levels, a wildcard in a PUBLISH topic, QoS 2, or
  a ``$`` topic not emulated closes the connection with an INFO line naming the reason. A client
  silent for 1.5 x its keep-alive (IoT Core's: at least 30 s, at most and for 0 1200 s) is
  disconnected and its will published. Policies are read from the directory at each decision,
  so policy changes apply at once; a certificate deactivated while connected is refused and its
  connection closed (IoT Core does that within minutes).
* ``on_publish(topic, payload, client_id)`` is called for every authorized publish, a Last Will
  and every lifecycle event included, on the broker's event loop (it may be a coroutine
  function). The rules engine hooks in here.
* **Reserved topics.** The Device Shadow service's topics (:mod:`.shadow`, on moto's shadow
  store) and Basic Ingest: a publish to ``$aws/rules/<rule>/<topic>`` (``iot:Publish`` on that
  topic) reaches no subscriber and goes to ``on_basic_ingest(rule, topic, payload, client_id)``
  with the prefix taken off, as IoT Core hands it to that one rule. Lifecycle events are
  published on ``$aws/events/presence/...``. Other ``$aws`` topics are refused.

Retained messages are stored (``iot:RetainPublish`` checked as well as ``iot:Publish``; a denial
closes the connection) and given to a later subscriber only if it may receive the topic.

Differences from IoT Core worth knowing: of the ``$aws/...`` topics, jobs, fleet provisioning
and the rest are not emulated (lifecycle events, shadows and Basic Ingest are); MQTT 5 is not
spoken, so devices use awsiotsdk's ``mqtt_connection_builder``, not its MQTT 5 builder.

Every decision is logged at DEBUG, every refusal at INFO. amqtt and cryptography are imported only
when a broker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import json
import logging
import re
import secrets
import ssl
import struct
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from iotbutton_cli.sandbox import shadow
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
MQTT_5_LEVEL = 5
CONNECT_PACKET = 0x10
PUBLISH_TYPE = 3
SUBSCRIBE_TYPE = 8
DISCONNECT_TYPE = 14
PRESENCE_PREFIX = "$aws/events/presence/"  # lifecycle events, published by the broker
BASIC_INGEST_PREFIX = "$aws/rules/"  # $aws/rules/<ruleName>/<topic>: straight to that rule
RULE_NAME = re.compile(r"^[a-zA-Z0-9_]+$")
CONNACK_UNACCEPTABLE_PROTOCOL = bytes([0x20, 0x02, 0x00, 0x01])
CONNACK_IDENTIFIER_REJECTED = bytes([0x20, 0x02, 0x00, 0x02])
# An MQTT 5 CONNACK (session present 0, reason 0x84 Unsupported Protocol Version, no properties):
# what an MQTT 5 client can read, instead of a 3.1.1-shaped answer it would call malformed.
CONNACK_V5_UNSUPPORTED_PROTOCOL = bytes([0x20, 0x03, 0x00, 0x84, 0x00])
CLOSE_WITHOUT_CONNACK = b""  # IoT Core hangs up on a CONNECT it does not authorize
# AWS IoT Core's message broker limits (docs: "AWS IoT Core endpoints and quotas").
MAX_CLIENT_ID_BYTES = 128
MAX_TOPIC_BYTES = 256
MAX_TOPIC_LEVELS = 8  # seven slashes
MAX_PAYLOAD_BYTES = 128 * 1024
MIN_KEEP_ALIVE_SECONDS = 30  # IoT Core treats anything less (but 0) as 30
MAX_KEEP_ALIVE_SECONDS = 1200  # and 0, or anything more, as 1200
TLS_IN_SERVE = hasattr(asyncio.StreamWriter, "start_tls")  # Python 3.11+
KEEP_ALIVE_FACTOR = 1.5  # silent for 1.5 x keep-alive: disconnected, its will published

ALPN_PROTOCOL = "x-amzn-mqtt-ca"  # MQTT with a client certificate, on IoT Core's port 443
VAR_CLIENT_ID = "iot:ClientId"
VAR_THING_NAME = "iot:Connection.Thing.ThingName"
VAR_IS_ATTACHED = "iot:Connection.Thing.IsAttached"

OnPublish = Callable[[str, bytes, str], Any]
OnBasicIngest = Callable[[str, str, bytes, str], Any]  # rule name, topic, payload, client id

# Live brokers by id: amqtt builds the plugin from a dotted path; the plugin finds its broker here.
_BROKERS: weakref.WeakValueDictionary[str, Broker] = weakref.WeakValueDictionary()


class Directory(Protocol):
    """What the broker needs to know about certificates, answered now (moto's IoT backend).

    A directory may also offer ``principal_things(certificate_id) -> list[str]``, every thing
    attached to the certificate, and ``exclusive_thing(certificate_id) -> str | None``, the thing
    it is attached to exclusively: the broker resolves the connection's thing from them as IoT
    Core does (see the module docstring).
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
        """The thing attached to the certificate (None: none, or several). Attached how is not
        said: it counts as non-exclusive."""
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
    keep_alive: int = 0


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
    admitted: bool = False
    # What the disconnected lifecycle event will say, as IoT Core's disconnectReason does.
    disconnect_reason: str = "CONNECTION_LOST"
    session: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


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
        keep_alive_floor: int = MIN_KEEP_ALIVE_SECONDS,
        on_basic_ingest: OnBasicIngest | None = None,
    ) -> None:
        self.directory = directory
        # IoT Core's 30 s; tests lower it to see the 1.5 x rule without waiting 45 s.
        self.keep_alive_floor = keep_alive_floor
        self.ca = ca
        self.region = region
        self.account = account
        self.port = port
        self.on_publish = on_publish
        self.on_basic_ingest = on_basic_ingest
        self._id = secrets.token_hex(8)
        self._server: asyncio.Server | None = None
        self._amqtt: Any = None
        self._trust = _TrustCache()
        self._tls_context: ssl.SSLContext | None = None
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
        self._amqtt.reserved_publish = self._reserved_publish
        self._amqtt.on_will = self._will
        await self._amqtt.start()
        try:
            # TLS is started by _serve itself, so that a refused handshake can be logged.
            loop = asyncio.get_running_loop()
            self._tls_context = self._listening_context()
            if TLS_IN_SERVE:
                self._server = await loop.create_server(
                    lambda: _PausedUntilTls(asyncio.StreamReader(), self._serve),
                    host=LOOPBACK,
                    port=self.port,
                )
            else:  # Python 3.10: no StreamWriter.start_tls, so refused handshakes go unlogged
                self._server = await asyncio.start_server(
                    self._serve,
                    host=LOOPBACK,
                    port=self.port,
                    ssl=self._tls_context,
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
        # Set on every context: the one the SNI callback swaps in is the one that answers ALPN.
        context.set_alpn_protocols([ALPN_PROTOCOL])
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
        if not server_name:
            logger.info(
                "refused a TLS ClientHello without SNI: AWS IoT Core requires the server name "
                "(connect to localhost, not 127.0.0.1)"
            )
            return int(ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME)
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
            if not await self._handshake(writer, peer):
                return
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
            await self._presence(connection, "connected", peer)
            amqtt = self._amqtt
            if amqtt is None:  # stopped meanwhile
                return
            reader_adapter, writer_adapter = _adapters(
                reader,
                writer,
                packet,
                self._silence_limit(request),
                identity.client_id,
                lambda topic: self.authorize(
                    identity.client_id, "iot:RetainPublish", f"topic/{topic}"
                ),
                functools.partial(setattr, connection, "disconnect_reason"),
            )
            await amqtt.external_connected(reader_adapter, writer_adapter, LISTENER)
        except asyncio.CancelledError:
            raise
        except ConnectionError as exc:  # the client went while amqtt was taking it on
            logger.debug("MQTT connection from %s ended early: %s", peer, exc)
        except Exception:
            logger.exception("MQTT connection from %s failed", peer)
        finally:
            if connection is not None:
                client_id = connection.identity.client_id
                if self._connections.get(client_id) is connection:
                    del self._connections[client_id]
                logger.debug("client %s disconnected", client_id)
                if connection.admitted:
                    with contextlib.suppress(Exception):
                        await self._presence(connection, "disconnected", peer)
            if task is not None:
                self._writers.pop(task, None)
            if not writer.is_closing():
                writer.transport.abort()

    async def _handshake(self, writer: asyncio.StreamWriter, peer: Any) -> bool:
        """TLS with a client certificate; a refusal is logged with its reason (IoT Core's logs
        would name it too; a device that cannot connect otherwise leaves no trace)."""
        if not TLS_IN_SERVE:
            return True
        try:
            await writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
                self._tls_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS
            )
        except (ssl.SSLError, ConnectionError, asyncio.TimeoutError, OSError) as exc:
            logger.info("refused TLS from %s: %s", _address(peer), _tls_reason(exc))
            return False
        return True

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
        if request.protocol == "MQTT" and request.level == MQTT_5_LEVEL:
            logger.info(
                "refused %s: MQTT 5; the sandbox speaks MQTT 3.1.1 only (CONNACK reason 0x84)",
                peer,
            )
            return CONNACK_V5_UNSUPPORTED_PROTOCOL, None
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
        if len(client_id.encode("utf-8")) > MAX_CLIENT_ID_BYTES:
            logger.info(
                "refused %s: a client id of %d bytes (the limit is %d); closed without CONNACK",
                peer,
                len(client_id.encode("utf-8")),
                MAX_CLIENT_ID_BYTES,
            )
            return CLOSE_WITHOUT_CONNACK, None
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if not der or der not in self._active_ders():
            logger.info("iot:Connect denied for %s: certificate not ACTIVE; closed", client_id)
            return CLOSE_WITHOUT_CONNACK, None
        certificate_id = self.directory.certificate_id(der)
        if certificate_id is None:
            logger.info("iot:Connect denied for %s: unknown certificate; closed", client_id)
            return CLOSE_WITHOUT_CONNACK, None
        identity = Identity(
            client_id, certificate_id, der, self._variables(certificate_id, client_id)
        )
        alpn = sslobj.selected_alpn_protocol()
        if alpn:
            logger.info("client %s connects with ALPN %s", client_id, alpn)
        if not self._decide(identity, "iot:Connect", f"client/{client_id}"):
            logger.info("closed the connection of %s without CONNACK, as IoT Core does", client_id)
            return CLOSE_WITHOUT_CONNACK, None
        if request.will_topic is not None:
            will = f"topic/{request.will_topic}"
            if not self._decide(identity, "iot:Publish", will) or (
                request.will_retain and not self._decide(identity, "iot:RetainPublish", will)
            ):
                logger.info("iot:Connect denied for %s: will topic not allowed; closed", client_id)
                return CLOSE_WITHOUT_CONNACK, None
        return b"", identity

    def _silence_limit(self, request: ConnectRequest) -> float:
        """How long the client may be silent: 1.5 x the keep-alive IoT Core applies."""
        keep_alive = effective_keep_alive(request.keep_alive)
        if 0 < request.keep_alive < MIN_KEEP_ALIVE_SECONDS:
            keep_alive = max(request.keep_alive, self.keep_alive_floor)
        return KEEP_ALIVE_FACTOR * keep_alive

    def _variables(self, certificate_id: str, client_id: str) -> dict[str, str]:
        """Policy variables of a connection, as IoT Core resolves them (thing policy variables:
        "If non-exclusive thing association is in place ... the value of clientId ... must
        exactly match the thing name").

        The thing is the one the certificate is attached to exclusively, whatever the client id;
        otherwise the one the client id names, if the certificate is attached to it. Without a
        thing, ``ThingName`` has no value (a statement using it matches nothing) and
        ``IsAttached`` is ``false``.
        """
        variables = {VAR_CLIENT_ID: client_id, VAR_IS_ATTACHED: "false"}
        exclusive = getattr(self.directory, "exclusive_thing", None)
        thing = exclusive(certificate_id) if callable(exclusive) else None
        if thing is None and client_id in self._things(certificate_id):
            thing = client_id
        if thing is not None:
            variables[VAR_THING_NAME] = thing
            variables[VAR_IS_ATTACHED] = "true"
        return variables

    def _things(self, certificate_id: str) -> list[str]:
        several = getattr(self.directory, "principal_things", None)
        if callable(several):
            return list(several(certificate_id))
        thing = self.directory.principal_thing(certificate_id)
        return [thing] if thing else []

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
                earlier.disconnect_reason = "DUPLICATE_CLIENTID"
                earlier.writer.transport.abort()
                if earlier.task is not None and not earlier.task.done():
                    _, pending = await asyncio.wait({earlier.task}, timeout=KICK_TIMEOUT_SECONDS)
                    if pending:
                        logger.warning("earlier connection of %s did not end in time", client_id)
            self._connections[client_id] = connection
            self._identities[client_id] = connection.identity
            connection.admitted = True
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
            self.disconnect(identity.client_id, identity, "AUTHORIZATION_FAILURE")
            return False
        allowed = self._decide(identity, action, resource)
        if not allowed and action in ("iot:Publish", "iot:Subscribe", "iot:RetainPublish"):
            logger.info(
                "closing the connection of %s: %s denied, as IoT Core closes it", client_id, action
            )
            self.disconnect(identity.client_id, identity, "AUTHORIZATION_FAILURE")
        return allowed

    def disconnect(
        self, client_id: str, identity: Identity | None = None, reason: str = "SERVER_ERROR"
    ) -> None:
        """Close a client's connection now (only if it is still ``identity``'s, when given)."""
        connection = self._connections.get(client_id)
        if connection is not None and (identity is None or connection.identity is identity):
            connection.disconnect_reason = reason
            connection.writer.transport.abort()

    async def _presence(self, connection: _Connection, event: str, peer: Any) -> None:
        """IoT Core's lifecycle event on ``$aws/events/presence/<event>/<clientId>``, to the
        subscribers allowed to receive it (amqtt checks iot:Receive per subscriber)."""
        if self._amqtt is None:
            return
        identity = connection.identity
        body: dict[str, Any] = {
            "clientId": identity.client_id,
            "timestamp": int(time.time() * 1000),
            "eventType": event,
            "sessionIdentifier": connection.session,
            "principalIdentifier": identity.certificate_id,
        }
        if isinstance(peer, tuple) and peer:
            body["ipAddress"] = peer[0]
        if event == "disconnected":
            reason = connection.disconnect_reason
            body["clientInitiatedDisconnect"] = reason == "CLIENT_INITIATED_DISCONNECT"
            body["disconnectReason"] = reason
        body["versionNumber"] = 0
        topic = f"{PRESENCE_PREFIX}{event}/{identity.client_id}"
        payload = json.dumps(body).encode()
        await self._amqtt.internal_message_broadcast(topic, payload, 1)
        await self.published(topic, payload, identity.client_id)  # a rule may select them

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

    async def publish_from_http(
        self, topic: str, payload: bytes, qos: int, retain: bool = False
    ) -> str | None:
        """An iot-data Publish: to the subscribers allowed to receive it and the rules engine;
        why it is refused, or None. (IoT Core takes it on the same limits as MQTT.)"""
        refusal = _publish_topic_refusal(topic)
        if refusal is None and ("+" in topic or "#" in topic):
            refusal = f"wildcard in the topic {topic!r}"
        if refusal is None and len(payload) > MAX_PAYLOAD_BYTES:
            refusal = f"payload of {len(payload)} bytes (the limit is 128 KB)"
        if refusal is None and qos not in (0, 1):
            refusal = f"QoS {qos} (iot-data takes 0 or 1)"
        if refusal or self._amqtt is None:
            return refusal or "the broker is not running"
        if topic.startswith("$"):
            await self._reserved_publish("iot-data", topic, payload)
            return None
        await self._amqtt.internal_message_broadcast(topic, payload, qos)
        if retain:
            await self._amqtt.retain_message(None, topic, payload, qos)
        await self.published(topic, payload, "iot-data")
        return None

    def retained(self) -> list[dict[str, Any]]:
        """The retained messages (topic, payload, qos, lastModifiedTime in ms), for the
        ListRetainedMessages and GetRetainedMessage APIs."""
        amqtt = self._amqtt
        if amqtt is None:
            return []
        return [
            {
                "topic": topic,
                "payload": bytes(message.data or b""),
                "qos": int(message.qos or 0),
                "lastModifiedTime": int(amqtt.retained_at.get(topic, 0) * 1000),
            }
            for topic, message in list(amqtt._retained_messages.items())
        ]

    async def _reserved_publish(self, client_id: str, topic: str, payload: bytes) -> None:
        """An authorized publish to a ``$aws`` topic that ``_publish_topic_refusal`` let through:
        Basic Ingest goes to its rule alone; a shadow request reaches its subscribers and the
        rules engine like any publish, then the shadow service publishes its answers."""
        ingest = basic_ingest(topic)
        if ingest is not None:
            rule, rest = ingest
            logger.debug("Basic Ingest from %s to rule %s on %s", client_id, rule, rest)
            await self._call(self.on_basic_ingest, rule, rest, payload, client_id)
            return
        request = shadow.request_topic(topic)
        if request is None or self._amqtt is None:
            return
        await self._amqtt.internal_message_broadcast(topic, payload)
        await self.published(topic, payload, client_id)
        try:
            answers = shadow.answer(request, payload, self.account, self.region)
        except Exception:
            logger.exception("the shadow request on %s failed", topic)
            return
        for answer_topic, body in answers:
            logger.info("shadow: %s answered on %s", topic, answer_topic)
            await self._amqtt.internal_message_broadcast(answer_topic, body)
            await self.published(answer_topic, body, shadow.SERVICE_CLIENT)

    async def _will(self, client_id: str, topic: str, payload: bytes) -> None:
        """A Last Will is a publish like any other on IoT Core: the rules engine sees it too
        (amqtt sends it to the subscribers)."""
        if not topic.startswith("$"):
            await self.published(topic, payload, client_id)

    async def published(self, topic: str, payload: bytes, client_id: str) -> None:
        await self._call(self.on_publish, topic, payload, client_id)

    @staticmethod
    async def _call(hook: Callable[..., Any] | None, *args: Any) -> None:
        """Run a hook (maybe a coroutine function); its failure is logged, never raised."""
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            name = getattr(hook, "__name__", hook)
            logger.exception("%s failed for a message (%s)", name, args[0])


class _PausedUntilTls(asyncio.StreamReaderProtocol):
    """A stream whose bytes wait for TLS: reading is paused before the first byte arrives, so
    the ClientHello reaches the TLS layer that ``start_tls`` puts in, not the plain stream."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # type: ignore[attr-defined]
        super().connection_made(transport)


def _address(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


def _tls_reason(exc: BaseException) -> str:
    """Why a handshake failed, in the words a device's developer needs."""
    text = str(exc)
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in text:
        return "the client sent no certificate"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (
            "its certificate is not an ACTIVE certificate of this account "
            f"(unknown, INACTIVE, REVOKED or deleted): {text}"
        )
    if "UNRECOGNIZED_NAME" in text or "callback failed" in text.lower():
        return "no SNI server name"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no TLS handshake within {HANDSHAKE_TIMEOUT_SECONDS:.0f} s"
    return f"{type(exc).__name__}: {text}"


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
    length_bytes, length = await _read_remaining_length(reader, "CONNECT")
    if length > MAX_CONNECT_BYTES:
        raise ValueError(f"CONNECT of {length} bytes is too large")
    body = await reader.readexactly(length)
    return header + length_bytes + body, body


async def _read_remaining_length(reader: asyncio.StreamReader, what: str) -> tuple[bytes, int]:
    """A fixed header's remaining length, as its bytes and its value; ValueError if malformed."""
    length_bytes = b""
    length = 0
    for index in range(4):
        byte = await reader.readexactly(1)
        length_bytes += byte
        length |= (byte[0] & 0x7F) << (7 * index)
        if not byte[0] & 0x80:
            return length_bytes, length
    raise ValueError(f"malformed {what} length")


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
    (keep_alive,) = struct.unpack("!H", take(2))
    if level == MQTT_5_LEVEL:
        take(_variable_int(take))  # MQTT 5 CONNECT properties: read past them
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
        keep_alive=keep_alive,
    )


def _variable_int(take: Callable[[int], bytes]) -> int:
    """An MQTT variable byte integer (a length), read one byte at a time."""
    value = 0
    for index in range(4):
        byte = take(1)[0]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value
    raise ValueError("malformed variable byte integer")


def effective_keep_alive(requested: int) -> int:
    """The keep-alive IoT Core applies: at least 30 s, at most (and for 0) 1200 s."""
    if requested <= 0:
        return MAX_KEEP_ALIVE_SECONDS
    return min(max(requested, MIN_KEEP_ALIVE_SECONDS), MAX_KEEP_ALIVE_SECONDS)


def packet_refusal(first_byte: int, body: bytes) -> str | None:
    """Why IoT Core would close the connection over this packet, or None to let it through.

    PUBLISH: QoS 2 (not supported), a wildcard in the topic, a topic over 256 bytes or 8 levels,
    a payload over 128 KB, a reserved ``$`` topic that is not emulated (``_publish_topic_refusal``).
    SUBSCRIBE: a filter over 256 bytes or 8 levels, a Basic Ingest filter, or a ``$`` filter
    outside the lifecycle events and shadows."""
    kind = first_byte >> 4
    try:
        if kind == PUBLISH_TYPE:
            qos = (first_byte >> 1) & 0x03
            (length,) = struct.unpack("!H", body[:2])
            topic = body[2 : 2 + length].decode("utf-8")
            payload = len(body) - 2 - length - (2 if qos else 0)
            if qos == 3:
                return "PUBLISH with QoS 3 (malformed)"
            if qos == 2:
                return "PUBLISH with QoS 2, which AWS IoT Core does not support"
            if "+" in topic or "#" in topic:
                return f"wildcard in the PUBLISH topic {topic!r}"
            if payload > MAX_PAYLOAD_BYTES:
                return f"payload of {payload} bytes on {topic} (the limit is 128 KB)"
            return _publish_topic_refusal(topic)
        if kind == SUBSCRIBE_TYPE:
            position = 2  # packet identifier
            while position < len(body):
                (length,) = struct.unpack("!H", body[position : position + 2])
                topic_filter = body[position + 2 : position + 2 + length].decode("utf-8")
                position += 2 + length + 1  # and the requested QoS
                refusal = _filter_refusal(topic_filter)
                if refusal:
                    return refusal
    except (struct.error, UnicodeDecodeError):
        return "malformed packet"
    return None


def basic_ingest(topic: str) -> tuple[str, str] | None:
    """``(rule name, topic the rule sees)`` for a Basic Ingest topic, else None."""
    if not topic.startswith(BASIC_INGEST_PREFIX):
        return None
    rule, _, rest = topic[len(BASIC_INGEST_PREFIX) :].partition("/")
    return (rule, rest) if RULE_NAME.match(rule) else None


def _publish_topic_refusal(topic: str) -> str | None:
    """Why IoT Core would not take a publish on this topic (its limits, reserved topics)."""
    if not topic.startswith("$"):
        return _topic_refusal(topic, "topic")
    ingest = basic_ingest(topic)
    if ingest is not None:  # $aws/rules/<rule>/ does not count toward the limits
        return _topic_refusal(ingest[1], "topic") if ingest[1] else None
    if shadow.request_topic(topic) is not None:
        return _limits(topic, "topic")
    if topic.startswith(BASIC_INGEST_PREFIX):
        return f"Basic Ingest topic {topic!r} without a valid rule name"
    if shadow.answer_topic(topic):
        return f"reserved topic {topic!r}: only the Device Shadow service publishes there"
    return f"reserved topic {topic!r}: the sandbox does not emulate this $aws topic"


def _filter_refusal(topic_filter: str) -> str | None:
    if topic_filter.startswith(PRESENCE_PREFIX) or shadow.shadow_filter(topic_filter):
        return _limits(topic_filter, "topic filter")  # emulated: Broker._presence, .shadow
    if topic_filter.startswith(BASIC_INGEST_PREFIX):
        return f"topic filter {topic_filter!r}: Basic Ingest topics cannot be subscribed to"
    return _topic_refusal(topic_filter, "topic filter")


def _topic_refusal(topic: str, what: str) -> str | None:
    if topic.startswith("$"):
        return f"reserved {what} {topic!r}: the sandbox does not emulate this $aws topic"
    return _limits(topic, what)


def _limits(topic: str, what: str) -> str | None:
    """IoT Core's size and depth limits for a topic or filter."""
    size = len(topic.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        return f"{what} of {size} bytes (the limit is {MAX_TOPIC_BYTES})"
    levels = topic.count("/") + 1
    if levels > MAX_TOPIC_LEVELS:
        return f"{what} {topic!r} of {levels} levels (the limit is {MAX_TOPIC_LEVELS})"
    return None


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

# The QoS of the client publish being handled (in its task), so its broadcast keeps QoS 0.
_PUBLISH_QOS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "publish_qos", default=None
)


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
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.retained_at: dict[str, float] = {}  # when each retained message was stored
            # Set by Broker.start: where $aws publishes and Last Wills go.
            self.reserved_publish: Callable[[str, str, bytes], Any] | None = None
            self.on_will: Callable[[str, str, bytes], Any] | None = None

        async def _reserved_delivery(self, session: Any, message: Any) -> bool:
            """A publish to a ``$aws`` topic the gate let through (amqtt refuses every ``$``
            topic): authorized as any publish, then handed to the sandbox broker."""
            from amqtt.contexts import Action

            topic = str(message.topic)
            if not await self._topic_filtering(session, topic=topic, action=Action.PUBLISH):
                return True  # Broker.authorize logged it and closed the connection
            if self.reserved_publish is not None:
                await self.reserved_publish(session.client_id, topic, bytes(message.data or b""))
            return True

        async def _handle_disconnect(
            self, client_session: Any, handler: Any, disconnect_waiter: Any
        ) -> None:
            # amqtt publishes the will to subscribers only; IoT Core's rules see it too.
            from amqtt.mqtt.disconnect import DisconnectPacket

            result = disconnect_waiter.result() if disconnect_waiter.done() else None
            if (
                not isinstance(result, DisconnectPacket)
                and client_session.will_flag
                and client_session.will_topic
                and self.on_will is not None
            ):
                try:
                    await self.on_will(
                        client_session.client_id,
                        client_session.will_topic,
                        bytes(client_session.will_message or b""),
                    )
                except Exception:
                    logger.exception("the will of %s failed", client_session.client_id)
            await super()._handle_disconnect(client_session, handler, disconnect_waiter)

        async def _handle_message_delivery(
            self, client_session: Any, handler: Any, wait_deliver: Any
        ) -> bool:
            # IoT Core delivers at the lower of the publish's and the subscription's QoS; amqtt
            # would deliver a QoS 0 publish at the subscriber's QoS 1.
            message = wait_deliver.result() if wait_deliver.done() else None
            token = _PUBLISH_QOS.set(getattr(message, "qos", None))
            try:
                if str(getattr(message, "topic", None) or "").startswith("$aws/"):
                    return await self._reserved_delivery(client_session, message)
                return bool(
                    await super()._handle_message_delivery(client_session, handler, wait_deliver)
                )
            finally:
                _PUBLISH_QOS.reset(token)

        async def _broadcast_message(
            self, session: Any, topic: Any, data: Any, force_qos: int | None = None
        ) -> None:
            if force_qos is None and _PUBLISH_QOS.get() == 0:
                force_qos = 0
            await super()._broadcast_message(session, topic, data, force_qos)

        async def retain_message(
            self,
            source_session: Any,
            topic_name: str | None,
            data: bytes | bytearray | None,
            qos: int | None = None,
        ) -> None:
            # Stored as IoT Core stores it (an empty payload deletes it); iot:RetainPublish was
            # checked before the publish reached amqtt (GateReader).
            await super().retain_message(source_session, topic_name, data, qos)
            if topic_name is None:
                return
            if data:
                self.retained_at[topic_name] = time.time()
            else:
                self.retained_at.pop(topic_name, None)

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            # A retained message goes to a new subscriber only if it may receive that topic.
            from amqtt.contexts import Action

            topic_filter, qos = subscription
            handler = self._get_handler(session)
            tasks = []
            for topic, retained in list(self._retained_messages.items()):
                if not self._matches(topic, topic_filter) or handler is None:
                    continue
                if not await self._topic_filtering(session, topic=topic, action=Action.RECEIVE):
                    continue
                level = min(qos, retained.qos or qos)
                tasks.append(
                    asyncio.ensure_future(
                        handler.mqtt_publish(topic, retained.data, level, retain=True)
                    )
                )
            if tasks:
                await asyncio.wait(tasks)

        async def _publish_session_retained_messages(self, session: Any) -> None:
            # Messages queued for an offline persistent session are ordinary messages, not
            # retained ones: delivered with retain=0, as IoT Core delivers them.
            handler = self._get_handler(session)
            tasks = []
            while handler is not None and not session.retained_messages.empty():
                queued = await session.retained_messages.get()
                tasks.append(
                    asyncio.ensure_future(
                        handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
                    )
                )
            if tasks:
                await asyncio.wait(tasks)

    return SandboxAmqttBroker


def _adapters(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    first_packet: bytes,
    silence_limit: float,
    client_id: str,
    may_retain: Callable[[str], bool],
    set_reason: Callable[[str], None],
) -> tuple[Any, Any]:
    """amqtt's stream adapters: the CONNECT this broker already read put back in front, then
    every packet read whole and checked against IoT Core's limits before amqtt sees it."""
    from amqtt.adapters import StreamWriterAdapter

    gate = _gate_reader_class()(
        reader, writer, first_packet, silence_limit, client_id, may_retain, set_reason
    )
    return gate, StreamWriterAdapter(writer)


@functools.cache
def _gate_reader_class() -> type:
    from amqtt.adapters import StreamReaderAdapter

    class GateReader(StreamReaderAdapter):
        """Hands amqtt whole packets that IoT Core would accept. A packet it would not
        (``packet_refusal``), or silence past 1.5 x the keep-alive, closes the connection: amqtt
        then reads end of stream, ends the session as abnormal and publishes the will."""

        def __init__(
            self,
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            pending: bytes,
            silence_limit: float,
            client_id: str,
            may_retain: Callable[[str], bool],
            set_reason: Callable[[str], None],
        ) -> None:
            super().__init__(reader)
            self._may_retain = may_retain
            self._set_reason = set_reason
            self._source = reader
            self._writer = writer
            self._pending = pending
            self._silence_limit = silence_limit
            self._client_id = client_id
            self._deadline: float | None = None
            self._reading: asyncio.Future[tuple[bytes, bytes]] | None = None

        async def read(self, n: int = -1) -> bytes:
            if not self._pending:
                self._pending = await self._next_packet()
            if n < 0 or n >= len(self._pending):
                data, self._pending = self._pending, b""
                return data
            data, self._pending = self._pending[:n], self._pending[n:]
            return data

        async def _next_packet(self) -> bytes:
            # amqtt cancels a read at its own keep-alive and reads again, so the silence is
            # measured from the last packet, and the packet being read survives (shielded) a
            # cancelled read: its bytes are never lost between two reads.
            loop = asyncio.get_running_loop()
            if self._deadline is None:
                self._deadline = loop.time() + self._silence_limit
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read_packet())
                self._reading.add_done_callback(_retrieve)
            try:
                packet, body = await asyncio.wait_for(
                    asyncio.shield(self._reading), max(0.0, self._deadline - loop.time())
                )
            except asyncio.TimeoutError:
                self._reading.cancel()
                self._set_reason("MQTT_KEEP_ALIVE_TIMEOUT")
                self._close(
                    f"silent for {self._silence_limit:.0f} s (1.5 x its keep-alive); "
                    "disconnected, its will published"
                )
                return b""
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
                return b""
            self._reading = None
            self._deadline = loop.time() + self._silence_limit
            if packet[0] >> 4 == DISCONNECT_TYPE:
                self._set_reason("CLIENT_INITIATED_DISCONNECT")
            refusal = packet_refusal(packet[0], body)
            if refusal:
                self._set_reason("CLIENT_ERROR")
                self._close(refusal)
                return b""
            retained = _retained_topic(packet[0], body)
            if retained is not None and not self._may_retain(retained):
                return b""  # authorize() logged it and closed the connection
            return packet

        async def _read_packet(self) -> tuple[bytes, bytes]:
            """One whole packet and its body."""
            header = await self._source.readexactly(1)
            try:
                length_bytes, length = await _read_remaining_length(self._source, "packet")
            except ValueError as exc:
                self._close(str(exc))
                raise
            if length > MAX_PAYLOAD_BYTES + 4 + MAX_TOPIC_BYTES:
                self._close(f"a packet of {length} bytes (payloads are limited to 128 KB)")
                raise ValueError("too large")
            body = await self._source.readexactly(length)
            return header + length_bytes + body, body

        def _close(self, why: str) -> None:
            logger.info("closing the connection of %s: %s", self._client_id, why)
            self._writer.transport.abort()

    return GateReader


def _retained_topic(first_byte: int, body: bytes) -> str | None:
    """The topic of a PUBLISH with the retain flag, else None."""
    if first_byte >> 4 != PUBLISH_TYPE or not first_byte & 0x01:
        return None
    (length,) = struct.unpack("!H", body[:2])
    return body[2 : 2 + length].decode("utf-8")


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a packet read's failure as seen (the connection it belonged to has gone)."""
    if not task.cancelled():
        task.exception()


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

    def exclusive_thing(self, certificate_id: str) -> str | None:
        """The thing the certificate is attached to with ``EXCLUSIVE_THING`` (moto drops the
        type; :mod:`.moto_fixes` keeps it)."""
        from iotbutton_cli.sandbox import moto_fixes
        from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

        arn = self._certificate_arn(certificate_id)
        if arn is None:
            return None
        with MOTO_LOCK:
            return moto_fixes.exclusive_thing(self._backend(), arn)

    def _certificate_arn(self, certificate_id: str) -> str | None:
        cert = self._backend().certificates.get(certificate_id)
        return None if cert is None else str(cert.arn)


def _snapshot(view: Callable[[], Iterable[T]]) -> list[T]:
    """A copy of a moto dict view, taken while no moto request runs (see ``MOTO_LOCK``)."""
    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    with MOTO_LOCK:
        return list(view())
