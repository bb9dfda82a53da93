"""An HTTP proxy in front of a moto server that behaves more like AWS: latency and throttling.

- ``latency``: every request waits this long before its answer (the round trip to a Region).
- ``limits``: a token bucket per operation (requests per second, ``burst`` saved up), as AWS
  enforces per account; a request over the limit is answered ``400 ThrottlingException`` the way
  AWS IoT does, without reaching moto.

Every request is recorded (time, service, operation, status, botocore's invocation id and attempt),
so a test or benchmark can measure the rate each operation was sent at and how often one call was
rejected. Operations are recognised from the signing scope (service) plus, for REST services such
as IoT, botocore's own model of each operation's method and URI.

Used by benchmarks/run.py and tests/test_ratelimit.py; standard library plus botocore only.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ATTEMPT = re.compile(r"attempt=(\d+)")


@dataclass(frozen=True)
class Record:
    at: float  # time.monotonic() when the request arrived
    service: str
    operation: str
    status: int
    throttled: bool
    invocation: str  # botocore's amz-sdk-invocation-id: the same for every retry of one call
    attempt: int


class _Bucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.capacity = rate, max(1.0, burst)
        self.tokens, self.stamp = self.capacity, now

    def take(self, now: float) -> bool:
        # Handler threads stamp arrivals before they queue for the lock: never refill backwards.
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _OperationTable:
    """method + path → operation name, from botocore's model of a REST service."""

    def __init__(self) -> None:
        self._tables: dict[str, list[tuple[str, re.Pattern[str], str]]] = {}
        self._lock = threading.Lock()

    def resolve(self, service: str, method: str, path: str) -> str:
        with self._lock:
            if service not in self._tables:
                self._tables[service] = _load_table(service)
            table = self._tables[service]
        for wanted, pattern, name in table:
            if wanted == method and pattern.match(path):
                return name
        return "?"


def _load_table(service: str) -> list[tuple[str, re.Pattern[str], str]]:
    import botocore.session

    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:
        return []
    rows = []
    for name in model.operation_names:
        http_spec = model.operation_model(name).http
        uri = http_spec.get("requestUri", "/").split("?")[0]
        regex = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(uri))
        regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", regex)
        literal = len(re.sub(r"\{[^}]+\}", "", uri))
        rows.append((literal, http_spec.get("method", "POST"), re.compile(f"^{regex}/?$"), name))
    rows.sort(key=lambda row: -row[0])  # most specific literal path first
    return [(method, pattern, name) for _, method, pattern, name in rows]


@dataclass
class AwsProxy:
    upstream: str
    latency: float = 0.0
    limits: dict[str, float] = field(default_factory=dict)  # operation → requests per second
    default_limit: float | None = None  # every other operation of ``services``
    burst: float = 2.0  # AWS does not publish its bucket sizes; 2 is deliberately strict
    services: tuple[str, ...] = ("iot",)
    records: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._operations = _OperationTable()

    # --- what happened ---------------------------------------------------------------------

    def of(self, operation: str | None = None) -> list[Record]:
        with self._lock:
            records = list(self.records)
        return [r for r in records if operation is None or r.operation == operation]

    def throttled(self) -> int:
        return sum(r.throttled for r in self.of())

    def rejections_per_call(self) -> Counter[str]:
        """How many times each call (invocation id) was throttled."""
        return Counter(r.invocation for r in self.of() if r.throttled)

    def max_rejections_per_call(self) -> int:
        return max(self.rejections_per_call().values(), default=0)

    def max_in_window(self, operation: str, window: float = 1.0) -> int:
        """The most requests for ``operation`` that arrived within any ``window`` seconds."""
        times = sorted(r.at for r in self.of(operation))
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def mean_rate(self, operation: str) -> float:
        """Requests per second for ``operation`` from its first arrival to its last."""
        times = sorted(r.at for r in self.of(operation))
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def operations(self) -> Counter[str]:
        return Counter(r.operation for r in self.of())

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self._buckets.clear()

    # --- the proxy -------------------------------------------------------------------------

    def _admit(self, service: str, operation: str, now: float) -> bool:
        if service not in self.services:
            return True
        rate = self.limits.get(operation, self.default_limit)
        if not rate:
            return True
        with self._lock:
            bucket = self._buckets.get(operation)
            if bucket is None:
                bucket = self._buckets[operation] = _Bucket(rate, self.burst, now)
            return bucket.take(now)

    def _identify(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[str, str]:
        scope = _SCOPE.search(handler.headers.get("Authorization", ""))
        service = scope.group(1) if scope else "?"
        target = handler.headers.get("X-Amz-Target")
        if target:  # JSON protocol: "Service_20150101.Operation"
            return service, target.rsplit(".", 1)[-1]
        if handler.command == "POST" and body.startswith(b"Action="):  # query protocol
            action = parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
            return service, action
        path = urlsplit(handler.path).path
        return service, self._operations.resolve(service, handler.command, path)

    def _record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def start(self) -> str:
        proxy = self
        upstream = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            _upstream: http.client.HTTPConnection | None = None

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                for attempt in range(2):  # a kept-alive upstream connection may have closed
                    if self._upstream is None:
                        self._upstream = http.client.HTTPConnection(
                            upstream.hostname, upstream.port, timeout=60
                        )
                    try:
                        self._upstream.request(self.command, self.path, body=body, headers=headers)
                        response = self._upstream.getresponse()
                        return response.status, response.getheaders(), response.read()
                    except (http.client.HTTPException, OSError):
                        self._upstream.close()
                        self._upstream = None
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            def _handle(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service, operation = proxy._identify(self, body)
                admitted = proxy._admit(service, operation, arrived)
                attempt = _ATTEMPT.search(self.headers.get("amz-sdk-request", ""))
                invocation = self.headers.get("amz-sdk-invocation-id", "")
                if admitted:
                    status, headers, data = self._forward(body)
                else:
                    status, data = 400, json.dumps({"message": "Rate exceeded"}).encode()
                    headers = [
                        ("x-amzn-ErrorType", "ThrottlingException"),
                        ("Content-Type", "application/json"),
                    ]
                proxy._record(
                    Record(
                        arrived,
                        service,
                        operation,
                        status,
                        not admitted,
                        invocation,
                        int(attempt.group(1)) if attempt else 1,
                    )
                )
                remaining = proxy.latency - (time.monotonic() - arrived)
                if remaining > 0:
                    time.sleep(remaining)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def finish(self) -> None:
                super().finish()
                if self._upstream is not None:
                    self._upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def summary(self, operations: Iterable[str] = ()) -> dict[str, Any]:
        """Counts and rates, for JSON output."""
        return {
            "requests": len(self.of()),
            "throttled": self.throttled(),
            "max_rejections_per_call": self.max_rejections_per_call(),
            "calls_rejected_twice_or_more": sum(
                1 for count in self.rejections_per_call().values() if count > 1
            ),
            "operations": {
                name: {
                    "requests": len(self.of(name)),
                    "throttled": sum(r.throttled for r in self.of(name)),
                    "max_per_second": self.max_in_window(name),
                    "mean_rate": round(self.mean_rate(name), 2),
                }
                for name in operations
            },
        }
