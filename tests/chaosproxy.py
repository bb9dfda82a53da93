"""A real HTTP proxy in front of a moto server that kills its client, or fails its calls.

Crash tests arm it to SIGKILL the client process at a chosen AWS call, in one of two places:

- ``arrival``: when request N+1 arrives (it is dropped, never reaching AWS): the client had the
  Nth answer and ran until its next call;
- ``response``: right after the proxy has written the Nth answer: AWS acted and answered, but the
  client most likely had no time to record what it was told.

Fault tests give it a seeded random share of requests to fail, each in the format the service's
protocol uses (so botocore parses the error code as it would AWS's): throttling, 500 and 503
errors, and closed connections, either before the request reaches AWS (``reset``) or after AWS
acted on it (``lost``, the answer never arrives).

No product code is patched: the CLI talks HTTP to the proxy exactly as it would to AWS.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "expect",
    "proxy-connection",
}
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")

# Fault kinds, and what each service's throttling error looks like.
THROTTLE, INTERNAL, UNAVAILABLE, RESET, LOST = "throttle", "500", "503", "reset", "lost"
FAULT_KINDS = (THROTTLE, INTERNAL, UNAVAILABLE, RESET, LOST)
THROTTLING = {
    "iot": (400, "ThrottlingException"),
    "lambda": (429, "TooManyRequestsException"),
    "ssm": (400, "ThrottlingException"),
    "logs": (400, "ThrottlingException"),
    "sts": (400, "Throttling"),
    "iam": (400, "Throttling"),
    "s3": (503, "SlowDown"),
}


@dataclass
class Call:
    """One HTTP request the proxy saw: its arrival number, service, operation and fate."""

    number: int
    service: str
    operation: str
    outcome: str = "forwarded"


@dataclass
class FaultPlan:
    """Fail ``rate`` of the requests (seeded), choosing among ``kinds`` with equal odds."""

    rate: float
    seed: int
    kinds: tuple[str, ...] = FAULT_KINDS
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self) -> str | None:
        if self.rng.random() >= self.rate:
            return None
        return self.rng.choice(self.kinds)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client killed mid-request resets its connections: expected here, not news."""


class ChaosProxy:
    """Forward every request to ``upstream`` (a moto server), counting them; kill or fail some."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        # Bumped by reset(): a connection opened before it (a killed client's) forwards nothing.
        self.generation = 0
        self.calls: list[Call] = []
        self.victim: int | None = None
        self.kill_at: tuple[str, int] | None = None
        self.killed: Call | None = None
        self.faults: FaultPlan | None = None
        self.scripted: list[list] = []  # [operation pattern, fault kind, times left]
        self.server: ThreadingHTTPServer | None = None
        # Called with each request as it arrives, before it is forwarded (the client waits).
        self.on_arrival: Callable[[], None] | None = None

    # -- control --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the calls seen and any kill or fault plan."""
        with self._lock:
            self.generation += 1
            self.calls = []
            self.victim = None
            self.kill_at = None
            self.killed = None
            self.faults = None
            self.scripted = []
            self.on_arrival = None

    def arm(self, pid: int, where: str, number: int) -> None:
        """SIGKILL ``pid`` at call ``number``: on its ``arrival`` or after its ``response``."""
        assert where in ("arrival", "response"), where
        with self._lock:
            self.victim, self.kill_at, self.killed = pid, (where, number), None

    def inject(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self.faults = plan

    def script(self, operation: str, kind: str, times: int = 1) -> None:
        """Give the next ``times`` requests whose ``service:operation`` matches the regular
        expression ``operation`` the fault ``kind`` (before any random fault plan)."""
        assert kind in FAULT_KINDS, kind
        with self._lock:
            self.scripted.append([re.compile(operation), kind, times])

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every admitted request is answered or dropped, so a killed client's last
        calls have landed in moto. (After a kill, nothing more is admitted: a request the dead
        client had sent but the proxy had not yet read is lost, as it may be on a real network.)
        """
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._inflight} requests still in flight")
                self._idle.wait(left)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def fault_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(call.outcome for call in self.calls)

    # -- serving --------------------------------------------------------------------------------

    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.generation = proxy.generation

            def _handle(self) -> None:
                body = self._read_body()
                admitted = proxy._admit(self, body)
                if admitted is None:
                    self._drop()
                    return
                try:
                    self._respond(*admitted, body)
                finally:
                    proxy._done()

            def _respond(self, call: Call, fault: str | None, body: bytes) -> None:
                if fault in (THROTTLE, INTERNAL, UNAVAILABLE):
                    self._send(*_error_response(call.service, fault, self.command))
                    proxy._after_response(call)
                    return
                if fault == RESET:
                    self._drop()
                    return
                try:
                    status, headers, data = proxy._forward(self, body)
                except OSError:
                    self._drop()
                    return
                if fault == LOST:
                    self._drop()
                    return
                try:
                    self._send(status, headers, data)
                except OSError:
                    return
                proxy._after_response(call)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                length = None
                for key, value in headers:
                    if key.lower() == "content-length":
                        length = value
                    elif key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", length or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()

            def _drop(self) -> None:
                """Close the connection with a TCP reset, answering nothing."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _admit(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[Call, str | None] | None:
        """Number the request and decide its fault; None: drop it (the client is being killed,
        or is dead). An admitted request counts as in flight until :meth:`_done`."""
        service, operation = describe(handler, body)
        if self.on_arrival is not None:
            self.on_arrival()
        with self._lock:
            if self.killed is not None or getattr(handler, "generation", -1) != self.generation:
                return None
            call = Call(len(self.calls) + 1, service, operation)
            self.calls.append(call)
            if self.kill_at == ("arrival", call.number - 1):
                self._kill(call)
                call.outcome = "killed-on-arrival"
                return None
            fault = self._scripted(f"{service}:{operation}")
            if fault is None and self.faults:
                fault = self.faults.draw()
            if fault:
                call.outcome = fault
            self._inflight += 1
            return call, fault

    def _done(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def _scripted(self, name: str) -> str | None:
        for entry in self.scripted:
            pattern, kind, left = entry
            if left > 0 and pattern.search(name):
                entry[2] -= 1
                return str(kind)
        return None

    def _after_response(self, call: Call) -> None:
        with self._lock:
            if self.kill_at == ("response", call.number) and self.killed is None:
                self._kill(call)

    def _kill(self, call: Call) -> None:
        if self.victim is not None:
            try:
                os.kill(self.victim, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.killed = call

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname, self.upstream.port, timeout=60
        )
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            connection.close()


def describe(handler: BaseHTTPRequestHandler, body: bytes) -> tuple[str, str]:
    """(service, operation) of a signed AWS request, for reports and error formats."""
    match = _SCOPE.search(handler.headers.get("Authorization") or "")
    service = match.group(1) if match else "?"
    target = handler.headers.get("X-Amz-Target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    form = "x-www-form-urlencoded" in (handler.headers.get("Content-Type") or "")
    if (service in ("sts", "iam") or form) and body:  # the query protocol names its action
        action = parse_qs(body.decode(errors="replace")).get("Action")
        if action:
            return service, action[0]
    path = urlsplit(handler.path).path
    return service, f"{handler.command} {path}"


def _error_response(
    service: str, fault: str, method: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """An AWS error in the shape ``service``'s protocol uses."""
    if fault == THROTTLE:
        status, code = THROTTLING.get(service, (400, "ThrottlingException"))
        message = "Rate exceeded"
    elif fault == INTERNAL:
        status, code = 500, "InternalError" if service == "s3" else "InternalFailure"
        message = "We encountered an internal error. Please try again."
    else:
        status, code = 503, "ServiceUnavailable"
        message = "Service is unavailable. Please try again."
    request_id = "chaos-" + os.urandom(6).hex()
    if service in ("sts", "iam"):
        body = (
            f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/">'
            f"<Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    elif service == "s3":
        body = (
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    elif service in ("ssm", "logs"):
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)]
    else:
        body = json.dumps({"message": message, "Message": message}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", request_id),
        ]
    if method == "HEAD":
        body = b""
    return status, headers, body
