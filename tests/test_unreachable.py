"""AWS out of reach: a CLI says so within seconds, and throttling keeps its full retry budget."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from iotbutton_cli.aws import retry
from iotbutton_cli.context import MAX_ATTEMPTS, AppContext, Settings
from test_errors import assert_one_line_error


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The connect timeout of every TCP connection botocore opens (urllib3 opens them all)."""
    import urllib3.util.connection

    seen: list[float | None] = []
    real = urllib3.util.connection.create_connection

    def counting(address: Any, timeout: Any = None, *args: Any, **kwargs: Any) -> Any:
        seen.append(timeout)
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    return seen


@pytest.fixture
def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that never answers a SYN, like a firewall that drops packets: a listener whose
    backlog is already full of connections it never accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    held = []
    for _ in range(5):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        held.append(filler)
    yield port
    for sock in [*held, server]:
        sock.close()


def test_refused_endpoint_fails_after_two_short_attempts(cli, connects, closed_port):
    result = cli("--endpoint-url", f"http://127.0.0.1:{closed_port}", "things", "create", code=1)
    assert_one_line_error(result, "Could not reach AWS")
    assert connects == [retry.CONNECT_TIMEOUT_SECONDS] * retry.CONNECT_ATTEMPTS


def test_silent_endpoint_hits_the_connect_timeout(cli, connects, blackhole, monkeypatch):
    monkeypatch.setattr(retry, "CONNECT_TIMEOUT_SECONDS", 0.2)  # the real 2 s, shortened
    result = cli("--endpoint-url", f"http://127.0.0.1:{blackhole}", "things", "create", code=1)
    assert_one_line_error(result, "Could not reach AWS: Connect timeout")
    assert connects == [0.2] * retry.CONNECT_ATTEMPTS


def test_clients_get_the_short_connect_timeout_and_the_full_retry_budget():
    client = AppContext(Settings()).client("iot")
    assert client.meta.config.connect_timeout == retry.CONNECT_TIMEOUT_SECONDS
    # botocore reads Config(retries={"max_attempts": n}) as n retries after the first try.
    assert client.meta.config.retries["total_max_attempts"] == MAX_ATTEMPTS + 1 == 11
    assert retry.CONNECT_ATTEMPTS < MAX_ATTEMPTS


def test_throttling_is_retried_past_the_connection_budget(cli, fault_proxy):
    fault = fault_proxy.add(
        "POST",
        r"^/certificates\?",
        429,
        "ThrottlingException",
        "Rate exceeded",
        times=retry.CONNECT_ATTEMPTS + 1,
    )
    [button] = cli.json("things", "create", "G030JF0553648RUH")["buttons"]
    assert button["action"] == "created"
    assert fault.hits == retry.CONNECT_ATTEMPTS + 1


@pytest.fixture
def not_aws() -> Iterator[str]:
    """A web server that answers every request with an empty 404, as some proxies do."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Empty(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Empty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_endpoint_that_is_not_aws_is_one_line(cli, not_aws):
    result = cli("--endpoint-url", not_aws, "things", "create", code=1)
    assert_one_line_error(result, "The endpoint answered with something that is not an AWS")
    assert "--endpoint-url" in result.stderr
