"""A real HTTP proxy in front of a moto server that answers chosen requests with AWS errors.

Tests use it to see how iotbutton behaves when AWS throttles, denies or fails, without patching
botocore: the CLI talks HTTP to the proxy exactly as it would to AWS.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    error_type: str
    message: str
    times: int | None = None  # None: every time
    hits: int = 0


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def add(
        self,
        method: str,
        path: str,
        status: int,
        error_type: str,
        message: str = "",
        times: int | None = None,
    ) -> Fault:
        fault = Fault(method, re.compile(path), status, error_type, message or error_type, times)
        self.faults.append(fault)
        return fault

    def match(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            available = fault.times is None or fault.hits < fault.times
            if fault.method == method and fault.path.search(path) and available:
                fault.hits += 1
                return fault
        return None

    def start(self) -> str:
        proxy = self
        upstream = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests.append((self.command, self.path))
                fault = proxy.match(self.command, self.path)
                if fault is not None:
                    payload = json.dumps({"message": fault.message}).encode()
                    self.send_response(fault.status)
                    self.send_header("x-amzn-ErrorType", fault.error_type)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(
                    upstream.hostname, upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
