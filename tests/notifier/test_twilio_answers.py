"""Twilio answers the stand-in never gives: a 2xx whose body cannot be read, an error whose body
cannot be read. Served by a tiny HTTP server that answers every request with one scripted body.

A 2xx means Twilio took the request, so it counts as sent and is recorded: Lambda's retry of the
invocation must not send that recipient a second SMS.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from notifier_support import LambdaContext, button_event, click_config, messaging_config

from iotbutton_cli.notifier_lambda import handler
from iotbutton_cli.notifier_lambda import twilio as twilio_rest

ALICE, BOB = "+15551230001", "+15551230002"


@dataclass
class ScriptedTwilio:
    """Answers every POST with ``status`` and ``body``, and counts what it was sent."""

    status: int = 201
    body: bytes = b""
    length: int | None = None  # the Content-Length claimed, if not the body's (a cut answer)
    received: list[str] = field(default_factory=list)
    base_url: str = ""


@pytest.fixture
def scripted(deployment, monkeypatch) -> Iterator[ScriptedTwilio]:
    script = ScriptedTwilio()

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            script.received.append(self.path)
            self.send_response(script.status)
            self.send_header("Content-Type", "application/json")
            length = len(script.body) if script.length is None else script.length
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(script.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("TWILIO_API_BASE", script.base_url)
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE], call=[BOB])}))
    yield script
    server.shutdown()
    server.server_close()


UNREADABLE_2XX = [
    pytest.param(201, b"[]", None, id="list"),
    pytest.param(201, b"null", None, id="null"),
    pytest.param(201, b'"queued"', None, id="string"),
    pytest.param(201, b"\xff\xfe\x00not utf-8", None, id="not-utf8"),
    pytest.param(201, b"", None, id="empty"),
    pytest.param(201, b"{}", None, id="no-sid"),
    pytest.param(201, b'{"sid": 42}', None, id="sid-not-a-string"),
    pytest.param(201, b'{"sid": "SM', None, id="cut-short"),
    pytest.param(200, b"<html>OK</html>", None, id="200-html"),
    pytest.param(202, b"[" * 100_000, None, id="deeply-nested"),
    pytest.param(201, b'{"sid": "SM0', 400, id="connection-closed-mid-body"),
]


@pytest.mark.parametrize(("status", "body", "length"), UNREADABLE_2XX)
def test_a_2xx_with_an_unreadable_body_is_sent_and_never_sent_again(scripted, status, body, length):
    scripted.status, scripted.body, scripted.length = status, body, length
    context = LambdaContext(aws_request_id="unreadable-2xx")

    first = handler.lambda_handler(button_event(), context)
    retried = handler.lambda_handler(button_event(), context)  # Lambda's retry, same request id

    assert first["results"] == [
        {
            "channel": "sms",
            "to": ALICE,
            "status": "queued",
            "note": twilio_rest.NO_BODY_NOTE,
            "attempts": 1,
        },
        {
            "channel": "call",
            "to": BOB,
            "status": "queued",
            "note": twilio_rest.NO_BODY_NOTE,
            "attempts": 1,
        },
    ]
    assert [item["status"] for item in retried["results"]] == ["skipped-duplicate"] * 2
    assert all("sid" not in item for item in retried["results"])
    assert len(scripted.received) == 2, "each recipient got one request, the retry none"


def test_a_readable_2xx_reports_twilios_sid(scripted):
    scripted.body = b'{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}'

    result = handler.lambda_handler(button_event(), LambdaContext())

    assert [item.get("sid") for item in result["results"]] == [
        "SM0123456789abcdef0123456789abcdef"
    ] * 2
    assert all("note" not in item for item in result["results"])


@pytest.mark.parametrize("body", [b"", b"<html>Service Unavailable</html>", b"\xff", b"[1]"])
def test_an_unreadable_server_error_is_retried_and_then_raises(scripted, body):
    scripted.status, scripted.body = 503, body

    with pytest.raises(handler.DeliveryIncomplete) as raised:
        handler.lambda_handler(button_event(), LambdaContext())

    for item in raised.value.result["results"]:
        assert item["status"] == "failed" and item["attempts"] == twilio_rest.MAX_ATTEMPTS
        assert item["error"] == {"code": None, "message": "HTTP 503"}
    assert len(scripted.received) == 2 * twilio_rest.MAX_ATTEMPTS


def test_an_unreadable_client_error_fails_without_retry(scripted):
    scripted.status, scripted.body = 400, b"<html>Bad Request</html>"

    result = handler.lambda_handler(button_event(), LambdaContext())

    for item in result["results"]:
        assert item["status"] == "failed" and item["attempts"] == 1
        assert item["error"] == {"code": None, "message": "HTTP 400"}
    assert len(scripted.received) == 2


def test_an_error_body_of_the_wrong_shape_is_reported_as_plain_http(scripted):
    scripted.status = 429
    scripted.body = b'{"code": "20429", "message": ["Too", "Many"], "more_info": 7}'

    with pytest.raises(handler.DeliveryIncomplete) as raised:
        handler.lambda_handler(button_event(), LambdaContext())

    assert raised.value.result["results"][0]["error"] == {"code": None, "message": "HTTP 429"}
