"""The Twilio stand-in's status callbacks and recipient behaviours, checked with Twilio's own SDK
(to create, fetch and validate signatures) and a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from notifier_support import ACCOUNT_SID, API_KEY_SID, SECRET
from twilio.request_validator import RequestValidator

from iotbutton_cli.cli.output import Output
from iotbutton_cli.cli.sandbox import _print_entry
from iotbutton_cli.sandbox.twilio import PlannedFailure, Progress, TwilioAccount, TwilioStandIn
from iotbutton_cli.sandbox.twilio_phones import PhoneBehaviour, PhoneBook, parse_phones

TO, FROM = "+15551230001", "+15005550006"
TWIML = "<Response><Say>hi</Say></Response>"
PROGRESS = Progress(
    message_sent=1, message_delivered=2, call_ringing=1, call_answered=2, call_completed=5
)
WAIT = 15.0  # seconds to wait for a callback: generous, only a broken stand-in takes this long


class Clock:
    """A clock the test moves: statuses, and so callbacks, move on by it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    method: str
    url: str  # as the receiver was asked: http://host:port/path?query
    params: dict[str, str]  # the form for a POST, the query for a GET
    signature: str | None
    content_type: str | None


class Receiver:
    """A StatusCallback endpoint on loopback that records what it is sent and answers
    ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                host, port = self.server.server_address[:2]
                url = f"http://{host}:{port}{self.path}"
                query = urlsplit(self.path).query
                params = dict(parse_qsl(body if self.command == "POST" else query))
                with receiver._changed:
                    receiver.received.append(
                        Received(
                            self.command,
                            url,
                            params,
                            self.headers.get("X-Twilio-Signature"),
                            self.headers.get("Content-Type"),
                        )
                    )
                    receiver._changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/status") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Received]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            assert len(self.received) >= count, f"{len(self.received)} of {count} callbacks"
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def valid(received: Received, token: str = SECRET) -> bool:
    """Twilio's own validator's verdict on a callback's signature."""
    params = received.params if received.method == "POST" else {}
    return RequestValidator(token).validate(received.url, params, received.signature or "")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def phones() -> dict[str, PhoneBehaviour]:
    return {}


@pytest.fixture
def twilio(tmp_path, clock, phones):
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID, API_KEY_SID}))
    with TwilioStandIn(
        tmp_path / "outbox.jsonl",
        credentials={ACCOUNT_SID: SECRET, API_KEY_SID: SECRET},
        account=account,
        progress=PROGRESS,
        clock=clock,
        phones=phones,
    ) as stand_in:
        yield stand_in


def sdk_for(stand_in: TwilioStandIn, user: str = ACCOUNT_SID, secret: str = SECRET):
    """Twilio's Python SDK pointed at the stand-in."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    base = stand_in.base_url.rstrip("/")

    class ToTheStandIn(TwilioHttpClient):
        def request(self, method, uri, *args, **kwargs):
            uri = uri.replace("https://api.twilio.com", base, 1)
            return super().request(method, uri, *args, **kwargs)

    return Client(user, secret, ACCOUNT_SID, http_client=ToTheStandIn(timeout=15))


@pytest.fixture
def sdk(twilio):
    return sdk_for(twilio)


def callbacks_in(stand_in: TwilioStandIn, count: int = 1) -> list[dict[str, Any]]:
    """The outbox's callback entries, once there are ``count`` (a callback is recorded once its
    answer is in, a moment after the receiver saw it)."""
    deadline = time.monotonic() + WAIT
    while True:
        entries = [entry for entry in stand_in.outbox() if entry.get("kind") == "callback"]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.01)


# -- messages ------------------------------------------------------------------------------------


def test_a_message_reports_sent_then_delivered_signed_with_the_auth_token(
    twilio, sdk, clock, receiver
):
    message = sdk.messages.create(to=TO, from_=FROM, body="hi", status_callback=receiver.url())
    assert message.status == "queued"  # the create answers queued; no callback for it
    clock.advance(1)
    [sent] = receiver.wait_for(1)
    clock.advance(1)
    _, delivered = receiver.wait_for(2)

    for received, status in ((sent, "sent"), (delivered, "delivered")):
        assert received.method == "POST"
        assert received.content_type.startswith("application/x-www-form-urlencoded")
        assert received.params == {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "From": FROM,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": TO,
        }
        assert valid(received)
        assert not valid(received, token="not-the-auth-token")
    entries = callbacks_in(twilio, 2)
    assert [(e["sid"], e["status"], e["http_status"], e["attempts"]) for e in entries] == [
        (message.sid, "sent", 200, 1),
        (message.sid, "delivered", 200, 1),
    ]
    assert entries[0]["url"] == receiver.url() and entries[0]["method"] == "POST"
    assert len(receiver.wait_for(2)) == 2, "nothing after the final status"


@pytest.mark.parametrize(
    ("behaviour", "statuses", "code"),
    [
        (PhoneBehaviour(sms="undelivered"), ["sent", "undelivered"], 30003),
        (PhoneBehaviour(sms="undelivered", sms_error=30005), ["sent", "undelivered"], 30005),
        (PhoneBehaviour(sms="failed"), ["failed"], 30008),
    ],
)
def test_a_message_that_does_not_arrive_carries_its_error_code_in_callback_and_fetch(
    twilio, sdk, clock, receiver, phones, behaviour, statuses, code
):
    phones[TO] = behaviour
    message = sdk.messages.create(to=TO, from_=FROM, body="hi", status_callback=receiver.url())
    clock.advance(2)
    received = receiver.wait_for(len(statuses))
    assert [r.params["MessageStatus"] for r in received] == statuses
    assert "ErrorCode" not in received[0].params or len(received) == 1
    assert received[-1].params["ErrorCode"] == str(code)
    assert all(valid(r) for r in received)
    fetched = sdk.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == (statuses[-1], code)
    assert fetched.error_message
    assert (fetched.date_sent is None) == (statuses == ["failed"])
    [listed] = sdk.messages.list(to=TO)
    assert (listed.status, listed.error_code) == (statuses[-1], code)


def test_numbers_not_in_the_table_are_delivered(twilio, sdk, clock, receiver, phones):
    phones["+15559990000"] = PhoneBehaviour(sms="failed")
    message = sdk.messages.create(to=TO, from_=FROM, body="hi", status_callback=receiver.url())
    clock.advance(2)
    assert [r.params["MessageStatus"] for r in receiver.wait_for(2)] == ["sent", "delivered"]
    fetched = sdk.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("delivered", None)


# -- calls ---------------------------------------------------------------------------------------


def test_a_call_reports_only_completed_unless_it_asks_for_more(twilio, sdk, clock, receiver):
    call = sdk.calls.create(to=TO, from_=FROM, twiml=TWIML, status_callback=receiver.url())
    clock.advance(5)
    [completed] = receiver.wait_for(1)
    params = dict(completed.params)
    assert params.pop("Timestamp")  # RFC 2822, as Twilio writes it
    assert params == {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallDuration": "3",  # answered at 2, ended at 5
        "CallSid": call.sid,
        "CallStatus": "completed",
        "CallbackSource": "call-progress-events",
        "Called": TO,
        "Caller": FROM,
        "Direction": "outbound-api",
        "Duration": "1",
        "From": FROM,
        "SequenceNumber": "0",
        "To": TO,
    }
    assert valid(completed) and not valid(completed, token="wrong")
    fetched = sdk.calls(call.sid).fetch()
    assert (fetched.status, fetched.duration) == ("completed", "3")
    [entry] = callbacks_in(twilio, 1)
    assert (entry["event"], entry["status"], entry["http_status"]) == (
        "completed",
        "completed",
        200,
    )


def test_every_event_asked_for_comes_in_order_and_get_puts_them_in_the_query(
    twilio, sdk, clock, receiver
):
    sdk.calls.create(
        to=TO,
        from_=FROM,
        twiml=TWIML,
        status_callback=receiver.url("/calls?tenant=7"),
        status_callback_method="GET",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    received = receiver.wait_for(1)
    for _ in range(5):
        clock.advance(1)
    received = receiver.wait_for(4)
    assert [r.params["CallStatus"] for r in received] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [r.params["SequenceNumber"] for r in received] == ["0", "1", "2", "3"]
    assert all(r.method == "GET" and r.params["tenant"] == "7" for r in received)
    assert all(valid(r) for r in received)
    assert all(not valid(r, token="wrong") for r in received)
    assert "CallDuration" in received[3].params and "CallDuration" not in received[2].params


def test_events_may_come_space_separated_in_one_field(twilio, sdk, clock, receiver):
    sdk.calls.create(
        to=TO,
        from_=FROM,
        twiml=TWIML,
        status_callback=receiver.url(),
        status_callback_event=["ringing completed"],
    )
    clock.advance(5)
    assert [r.params["CallStatus"] for r in receiver.wait_for(2)] == ["ringing", "completed"]


def test_an_unknown_event_is_refused_as_twilio_refuses_it(twilio, sdk, receiver):
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException) as refused:
        sdk.calls.create(
            to=TO,
            from_=FROM,
            twiml=TWIML,
            status_callback=receiver.url(),
            status_callback_event=["hung-up"],
        )
    assert (refused.value.status, refused.value.code) == (400, 21626)


@pytest.mark.parametrize(
    ("behaviour", "detection", "statuses", "answered_by", "duration"),
    [
        ("no-answer", None, ["initiated", "ringing", "no-answer"], None, "0"),
        ("busy", None, ["initiated", "busy"], None, "0"),
        ("failed", None, ["initiated", "failed"], None, "0"),
        (
            "machine",
            "DetectMessageEnd",
            ["initiated", "ringing", "in-progress", "completed"],
            "machine_end_beep",
            "3",
        ),
        (
            "machine",
            "Enable",
            ["initiated", "ringing", "in-progress", "completed"],
            "machine_start",
            "3",
        ),
        ("machine", None, ["initiated", "ringing", "in-progress", "completed"], None, "3"),
        (
            "completed",
            "Enable",
            ["initiated", "ringing", "in-progress", "completed"],
            "human",
            "3",
        ),
    ],
)
def test_a_call_ends_as_its_number_behaves_in_callbacks_and_fetch(
    twilio, sdk, clock, receiver, phones, behaviour, detection, statuses, answered_by, duration
):
    phones[TO] = PhoneBehaviour(call=behaviour)
    extra = {"machine_detection": detection} if detection else {}
    call = sdk.calls.create(
        to=TO,
        from_=FROM,
        twiml=TWIML,
        status_callback=receiver.url(),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        **extra,
    )
    clock.advance(5)
    received = receiver.wait_for(len(statuses))
    assert [r.params["CallStatus"] for r in received] == statuses
    final = received[-1].params
    assert final["CallDuration"] == duration
    assert final.get("AnsweredBy") == answered_by
    if answered_by:
        assert received[2].params["AnsweredBy"] == answered_by  # from the answer on
        assert "AnsweredBy" not in received[1].params
    assert all(valid(r) for r in received)
    fetched = sdk.calls(call.sid).fetch()
    assert (fetched.status, fetched.answered_by, fetched.duration) == (
        statuses[-1],
        answered_by,
        duration,
    )
    [listed] = sdk.calls.list(status=statuses[-1])
    assert listed.sid == call.sid


def test_a_call_canceled_while_ringing_reports_canceled_and_nothing_after(
    twilio, sdk, clock, receiver
):
    call = sdk.calls.create(
        to=TO,
        from_=FROM,
        twiml=TWIML,
        status_callback=receiver.url(),
        status_callback_event=["ringing", "answered", "completed"],
    )
    clock.advance(1)
    receiver.wait_for(1)
    assert sdk.calls(call.sid).update(status="canceled").status == "canceled"
    clock.advance(10)
    received = receiver.wait_for(2)
    assert [r.params["CallStatus"] for r in received] == ["ringing", "canceled"]
    assert received[1].params["CallDuration"] == "0"
    # A later call's callback shows the sender moved on without an "answered" for the first.
    sdk.calls.create(to=TO, from_=FROM, twiml=TWIML, status_callback=receiver.url("/later"))
    clock.advance(5)
    assert [urlsplit(r.url).path for r in receiver.wait_for(3)] == ["/status"] * 2 + ["/later"]


# -- who signs, and receivers that fail ----------------------------------------------------------


def test_an_api_key_create_gets_callbacks_only_when_the_auth_token_is_known(
    tmp_path, clock, receiver, caplog
):
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID, API_KEY_SID}))
    credentials = {ACCOUNT_SID: SECRET, API_KEY_SID: SECRET}
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox")
    with TwilioStandIn(credentials=credentials, account=account, clock=clock) as stand_in:
        by_key = sdk_for(stand_in, user=API_KEY_SID)
        skipped = by_key.messages.create(
            to=TO, from_=FROM, body="a", status_callback=receiver.url()
        )
        sdk_for(stand_in).messages.create(
            to=TO, from_=FROM, body="b", status_callback=receiver.url("/second")
        )
        clock.advance(2)
        received = receiver.wait_for(2)
        assert {urlsplit(r.url).path for r in received} == {"/second"}
        assert f"no status callbacks for {skipped.sid}" in caplog.text

    token = "the-account-auth-token"
    with TwilioStandIn(
        credentials=credentials,
        account=account,
        clock=clock,
        callback_signing_secret={ACCOUNT_SID: token}.get,
    ) as stand_in:
        sdk_for(stand_in, user=API_KEY_SID).messages.create(
            to=TO, from_=FROM, body="c", status_callback=receiver.url("/third")
        )
        clock.advance(2)
        third = receiver.wait_for(4)[2:]
        assert all(valid(r, token=token) and not valid(r, token=SECRET) for r in third)


def test_a_receiver_answering_500_is_recorded_and_retried_only_when_the_url_asks(
    twilio, sdk, clock
):
    failing = Receiver(status=500)
    try:
        once = sdk.messages.create(to=TO, from_=FROM, body="a", status_callback=failing.url("/a"))
        again = sdk.messages.create(
            to=TO, from_=FROM, body="b", status_callback=failing.url("/b#rc=2&rp=5xx")
        )
        clock.advance(1)
        received = failing.wait_for(4)  # one for "a", three for "b"
        assert [urlsplit(r.url).path for r in received] == ["/a", "/b", "/b", "/b"]
        assert all("#" not in r.url and valid(r) for r in received)  # the fragment is not sent
        entries = {e["sid"]: e for e in callbacks_in(twilio, 2)}
        assert (entries[once.sid]["http_status"], entries[once.sid]["attempts"]) == (500, 1)
        assert (entries[again.sid]["http_status"], entries[again.sid]["attempts"]) == (500, 3)
        assert sdk.messages(once.sid).fetch().status == "sent", "the stand-in still serves"
    finally:
        failing.close()


def test_a_receiver_that_is_down_is_retried_once_logged_and_does_not_stop_others(
    twilio, sdk, clock, receiver, caplog
):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox")
    down = f"http://127.0.0.1:{closed_port()}/down?token=do-not-log"
    lost = sdk.messages.create(to=TO, from_=FROM, body="a", status_callback=down)
    sdk.messages.create(to=TO, from_=FROM, body="b", status_callback=receiver.url())
    clock.advance(1)
    receiver.wait_for(1)
    [entry] = [e for e in callbacks_in(twilio, 2) if e["sid"] == lost.sid]
    assert (entry["http_status"], entry["attempts"]) == (None, 2)
    assert entry["error"].startswith("connection failed")
    logged = [r.getMessage() for r in caplog.records if lost.sid in r.getMessage()]
    assert any("no answer" in line and "/down" in line for line in logged)
    assert "do-not-log" not in caplog.text and SECRET not in caplog.text
    assert "X-Twilio-Signature" not in caplog.text
    assert sdk.messages(lost.sid).fetch().status == "sent"


def test_only_what_twilio_accepted_gets_callbacks(twilio, sdk, clock, receiver):
    """A refused create (a planned failure here) has no resource, so no callbacks; a non-HTTP
    URL gets none either, and neither breaks the create."""
    twilio.plan(PlannedFailure(status=500, times=1))
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException):
        sdk.messages.create(to=TO, from_=FROM, body="a", status_callback=receiver.url("/no"))
    ftp = sdk.messages.create(to=TO, from_=FROM, body="b", status_callback="ftp://127.0.0.1/x")
    sdk.messages.create(to=TO, from_=FROM, body="c", status_callback=receiver.url("/yes"))
    clock.advance(2)
    received = receiver.wait_for(2)
    assert {urlsplit(r.url).path for r in received} == {"/yes"}
    assert sdk.messages(ftp.sid).fetch().status == "delivered"


# -- phones.json and the outbox ------------------------------------------------------------------


def test_phones_json_beside_the_outbox_is_read_at_each_create_and_a_broken_one_ignored(
    tmp_path, clock, caplog
):
    phones_file = tmp_path / "phones.json"
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID}))
    with TwilioStandIn(
        tmp_path / "outbox.jsonl",
        credentials={ACCOUNT_SID: SECRET},
        account=account,
        progress=PROGRESS,
        clock=clock,
    ) as stand_in:
        sdk = sdk_for(stand_in)
        phones_file.write_text(json.dumps({TO: {"sms": "failed", "call": "busy"}}))
        failed = sdk.messages.create(to=TO, from_=FROM, body="a")
        busy = sdk.calls.create(to=TO, from_=FROM, twiml=TWIML)
        phones_file.write_text("{not json")
        delivered = sdk.messages.create(to=TO, from_=FROM, body="b")
        phones_file.write_text(json.dumps({TO: {"sms": "sometimes"}}))
        also_delivered = sdk.messages.create(to=TO, from_=FROM, body="c")
        clock.advance(5)
        assert sdk.messages(failed.sid).fetch().status == "failed"
        assert sdk.calls(busy.sid).fetch().status == "busy"
        assert sdk.messages(delivered.sid).fetch().status == "delivered"
        assert sdk.messages(also_delivered.sid).fetch().status == "delivered"
    assert "ignoring" in caplog.text and "sometimes" in caplog.text


def test_phone_tables_say_what_is_wrong_with_them():
    assert parse_phones('{"+1555": {"call": "no-answer"}}') == {
        "+1555": PhoneBehaviour(call="no-answer")
    }
    for text, problem in (
        ("[]", "must hold an object"),
        ('{"+1555": {"sms": "lost"}}', "+1555: sms must be one of"),
        ('{"+1555": {"colour": "red"}}', "unknown keys"),
        ('{"+1555": {"sms_error": "30003"}}', "integer code"),
    ):
        with pytest.raises(ValueError, match=re.escape(problem)):
            parse_phones(text)
    assert PhoneBook("/nonexistent/phones.json")() == {}


def test_the_outbox_file_and_its_listing_show_callbacks(
    twilio, sdk, clock, receiver, capsys, tmp_path
):
    call = sdk.calls.create(to=TO, from_=FROM, twiml=TWIML, status_callback=receiver.url())
    clock.advance(5)
    receiver.wait_for(1)
    callbacks_in(twilio, 1)
    lines = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [line.get("kind") for line in lines] == [None, "callback"]
    assert lines[1]["params"]["CallStatus"] == "completed" and lines[1]["sid"] == call.sid
    for line in lines:
        _print_entry(Output(), line)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[1:4] == ["CALL", FROM, "->"]  # a request prints as before
    assert f"CALLBACK {call.sid} completed -> 200 POST {receiver.url()}" in printed[1]
