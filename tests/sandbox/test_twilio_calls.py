"""Played calls: the Twilio stand-in ringing, answering and speaking a call's TwiML as its callee
would, posting a Gather's digits to its action (checked with Twilio's own RequestValidator), and
holding creates to slow numbers."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator

from iotbutton_cli.cli.output import Output
from iotbutton_cli.cli.sandbox import _print_entry
from iotbutton_cli.sandbox.twilio import TwilioAccount, TwilioStandIn
from iotbutton_cli.sandbox.twilio_phones import (
    ANSWER_SECONDS,
    FOREVER,
    RINGING_SECONDS,
    SPEECH_CHARS_PER_SECOND,
    PhoneBehaviour,
    call_course,
    keyed_in,
    parse_phones,
    play,
)

ACCOUNT_SID = "AC" + "2" * 32
SECRET = "t" * 32
FROM, TO = "+15005550006", "+15551230001"
BASE = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
SCALE = 0.05
INTRO = "Grandma needs help. Button G030 was held down at 2026-12-04 18:00 UTC."
PROMPT = "Press 1 if you are coming."
GOODBYE = "No key was pressed. Goodbye."
THANKS = "Thank you. Everyone else is being told."
WAIT = 15.0


def speech(text: str) -> float:
    return len(text) / SPEECH_CHARS_PER_SECOND * SCALE


ANSWERED = (RINGING_SECONDS + ANSWER_SECONDS) * SCALE


def escalation_twiml(action: str, num_digits: str = 'numDigits="1" ') -> str:
    action = action.replace("&", "&amp;")
    return (
        f"<Response><Say>{INTRO}</Say>"
        f'<Gather {num_digits}timeout="6" action="{action}" method="POST">'
        f"<Say>{PROMPT}</Say></Gather><Say>{GOODBYE}</Say></Response>"
    )


ACTION = "http://127.0.0.1:9/lambda-url/iotbutton-notifier/?alarm=X&esc=0.1&attempt=1"


def course(behaviour: PhoneBehaviour, timeout: Any = "30", detection: str | None = "Enable"):
    return call_course(behaviour, escalation_twiml(ACTION), timeout, detection, SCALE)


# -- the timeline, without a server ----------------------------------------------------------


def test_no_answer_rings_for_the_calls_timeout_scaled():
    timeline, gathered = course(PhoneBehaviour(call="no-answer"), timeout="30")
    ringing = RINGING_SECONDS * SCALE
    assert timeline.steps == (
        (0.0, "queued"),
        (ringing, "ringing"),
        (pytest.approx(ringing + 30 * SCALE), "no-answer"),
    )
    assert gathered is None and timeline.answered_by is None


def test_a_timeout_shorter_than_the_answer_delay_rings_out():
    timeline, gathered = course(PhoneBehaviour(), timeout="3")
    assert [status for _, status in timeline.steps] == ["queued", "ringing", "no-answer"]
    assert timeline.final[0] == pytest.approx((RINGING_SECONDS + 3) * SCALE)
    assert gathered is None


def test_a_person_answers_after_four_seconds_scaled_and_presses_1_after_the_prompt():
    timeline, gathered = course(PhoneBehaviour())
    assert timeline.steps[2] == (pytest.approx(ANSWERED), "in-progress")
    assert timeline.answered_by == "human"
    assert timeline.final == (FOREVER, "completed")  # until the action answers
    assert gathered is not None
    assert gathered.delay == pytest.approx(ANSWERED + speech(INTRO) + speech(PROMPT))
    assert (gathered.digits, gathered.finished_on_key, gathered.method) == ("1", "", "POST")
    assert gathered.action == ACTION


def test_a_person_who_presses_nothing_waits_out_the_gather_and_hears_goodbye():
    timeline, gathered = course(PhoneBehaviour(press=""))
    assert gathered is None
    spoken = speech(INTRO) + speech(PROMPT) + 6 * SCALE + speech(GOODBYE)
    assert timeline.final == (pytest.approx(ANSWERED + spoken), "completed")
    assert timeline.seconds(timeline.final[0] - ANSWERED) == round(spoken / SCALE)


def test_a_hangup_callee_ends_the_call_after_the_first_say():
    timeline, gathered = course(PhoneBehaviour(call="hangup", press="1"))
    assert gathered is None
    assert timeline.final == (pytest.approx(ANSWERED + speech(INTRO)), "completed")
    assert timeline.answered_by == "human"


def test_voicemail_is_answered_by_a_machine_and_presses_nothing():
    timeline, gathered = course(PhoneBehaviour(call="machine", press="1"))
    assert gathered is None and timeline.answered_by == "machine_start"
    spoken = speech(INTRO) + speech(PROMPT) + 6 * SCALE + speech(GOODBYE)
    assert timeline.final[0] == pytest.approx(ANSWERED + spoken)
    assert course(PhoneBehaviour(call="machine"), detection=None)[0].answered_by is None


def test_busy_and_failed_end_when_the_phone_would_have_rung():
    for outcome in ("busy", "failed"):
        timeline, gathered = course(PhoneBehaviour(call=outcome))
        assert timeline.steps == ((0.0, "queued"), (RINGING_SECONDS * SCALE, outcome))
        assert gathered is None


def test_without_numdigits_or_finish_key_the_gather_waits_its_timeout_after_the_keys():
    _, gathered = call_course(
        PhoneBehaviour(press="12"), escalation_twiml(ACTION, num_digits=""), None, None, SCALE
    )
    assert gathered is not None and gathered.digits == "12" and gathered.finished_on_key == ""
    assert gathered.delay == pytest.approx(ANSWERED + speech(INTRO) + speech(PROMPT) + 6 * SCALE)
    assert keyed_in("12#3", 0, "#") == ("12", "#")
    assert keyed_in("123", 2, "#") == ("12", "")
    assert keyed_in("12", 0, "") == ("12", None)


def test_pauses_loops_hangup_and_a_missing_action():
    person = PhoneBehaviour()
    document = (
        '<Response><Say loop="2">abc</Say><Pause length="3"/><Hangup/><Say>x</Say></Response>'
    )
    assert play(document, person, 1.0, 1.0).end == pytest.approx(1.0 + 2 * 3 / 15 + 3)
    no_action = '<Response><Gather numDigits="1"><Say>a</Say></Gather><Say>b</Say></Response>'
    played = play(no_action, person, 0.0, 1.0)
    assert played.gathered is None and played.end == pytest.approx(1 / 15)  # ends at the keys
    assert play("not xml", person, 2.0, 1.0).end == 2.0


# -- through the stand-in -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    url: str
    params: dict[str, str]
    signature: str


class Receiver:
    """The notifier's function URL on loopback: records each request; a Gather gets ``status``
    with ``answer`` as TwiML, a status callback an empty 200."""

    def __init__(
        self, status: int = 200, answer: str = f"<Response><Say>{THANKS}</Say></Response>"
    ):
        self.status, self.answer = status, answer
        self.received: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                host, port = self.server.server_address[:2]
                with receiver._changed:
                    receiver.received.append(
                        Received(
                            f"http://{host}:{port}{self.path}",
                            dict(parse_qsl(body, keep_blank_values=True)),
                            self.headers.get("X-Twilio-Signature", ""),
                        )
                    )
                    receiver._changed.notify_all()
                gather = "event=gather" in self.path
                data = receiver.answer.encode() if gather else b""
                self.send_response(receiver.status if gather else 200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, query: str, fragment: str = "rc=3&rp=5xx,ct,rt") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/lambda-url/iotbutton-notifier/?{query}#{fragment}"

    def wait_for(self, count: int) -> list[Received]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, WAIT)
            assert len(self.received) >= count, f"{len(self.received)} of {count} requests"
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def phones() -> dict[str, PhoneBehaviour]:
    return {}


@pytest.fixture
def twilio(tmp_path, clock, phones):
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID}))
    with TwilioStandIn(
        tmp_path / "outbox.jsonl",
        credentials={ACCOUNT_SID: SECRET},
        account=account,
        clock=clock,
        phones=phones,
        time_scale=SCALE,
    ) as stand_in:
        yield stand_in


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def headers() -> dict[str, str]:
    token = base64.b64encode(f"{ACCOUNT_SID}:{SECRET}".encode()).decode()
    return {
        "Authorization": f"Basic {token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def request(stand_in: TwilioStandIn, path: str, fields: dict[str, str] | None = None):
    data = urlencode(fields).encode() if fields is not None else None
    call = urllib.request.Request(stand_in.base_url + path, data=data, headers=headers())
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def escalation_call(receiver: Receiver, to: str = TO, status_callback: bool = True):
    fields = {
        "To": to,
        "From": FROM,
        "Timeout": "30",
        "MachineDetection": "Enable",
        "Twiml": escalation_twiml(receiver.url("alarm=X&esc=0.1&attempt=1&event=gather")),
    }
    if status_callback:
        fields["StatusCallback"] = receiver.url("alarm=X&esc=0.1&attempt=1")
    return fields


def callbacks_in(stand_in: TwilioStandIn, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT
    while True:
        entries = [entry for entry in stand_in.outbox() if entry.get("kind") == "callback"]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.01)


def valid(received: Received) -> bool:
    return RequestValidator(SECRET).validate(received.url, received.params, received.signature)


def test_pressing_1_posts_the_signed_gather_then_the_answer_plays_and_the_call_completes(
    twilio, clock, receiver
):
    status, call = request(twilio, f"{BASE}/Calls.json", escalation_call(receiver))
    assert status == 201 and call["status"] == "queued"
    clock.advance(ANSWERED + speech(INTRO) + speech(PROMPT) + 0.001)
    [gather] = receiver.wait_for(1)
    assert valid(gather)
    assert "event=gather" in gather.url and "#" not in gather.url  # the fragment is not sent
    assert gather.params == {
        "AccountSid": ACCOUNT_SID,
        "AnsweredBy": "human",
        "ApiVersion": "2010-04-01",
        "CallSid": call["sid"],
        "CallStatus": "in-progress",
        "Called": TO,
        "Caller": FROM,
        "Digits": "1",
        "Direction": "outbound-api",
        "FinishedOnKey": "",
        "From": FROM,
        "To": TO,
    }
    [entry] = callbacks_in(twilio, 1)
    assert (entry["event"], entry["digits"], entry["http_status"]) == ("gather", "1", 200)
    assert request(twilio, f"{BASE}/Calls/{call['sid']}.json")[1]["status"] == "in-progress"

    clock.advance(speech(THANKS) + 0.001)  # the answer's Say, then the end of its document
    _, completed = receiver.wait_for(2)
    assert valid(completed)
    assert completed.params["CallStatus"] == "completed"
    assert completed.params["AnsweredBy"] == "human"
    spoken = speech(INTRO) + speech(PROMPT) + speech(THANKS)
    assert completed.params["CallDuration"] == str(round(spoken / SCALE))
    assert [e["event"] for e in callbacks_in(twilio, 2)] == ["gather", "completed"]
    fetched = request(twilio, f"{BASE}/Calls/{call['sid']}.json")[1]
    assert (fetched["status"], fetched["answered_by"]) == ("completed", "human")
    assert fetched["duration"] == str(round(spoken / SCALE))


def test_a_gather_answered_500_is_retried_per_the_fragment_then_the_call_ends(twilio, clock):
    failing = Receiver(status=500)
    try:
        request(twilio, f"{BASE}/Calls.json", escalation_call(failing))
        clock.advance(ANSWERED + speech(INTRO) + speech(PROMPT) + 0.001)
        [entry] = callbacks_in(twilio, 1)
        assert entry["event"] == "gather"
        assert (entry["http_status"], entry["attempts"], entry["error"]) == (500, 4, "HTTP 500")
        gathers = [r for r in failing.wait_for(4) if "event=gather" in r.url]
        assert len(gathers) == 4 and all(valid(each) for each in gathers)
        # Twilio's application error: the call ends where the digits were.
        _, completed = callbacks_in(twilio, 2)
        assert completed["event"] == "completed" and completed["status"] == "completed"
    finally:
        failing.close()


def test_pressing_nothing_times_out_the_gather_then_the_call_completes_without_a_gather(
    twilio, clock, receiver, phones
):
    phones[TO] = PhoneBehaviour(press="")
    request(twilio, f"{BASE}/Calls.json", escalation_call(receiver))
    clock.advance(ANSWERED + speech(INTRO) + speech(PROMPT) + 6 * SCALE + speech(GOODBYE))
    [completed] = receiver.wait_for(1)
    assert completed.params["CallStatus"] == "completed"
    assert [e["event"] for e in callbacks_in(twilio, 1)] == ["completed"]


def test_a_call_hung_up_while_gathering_posts_its_end_and_no_gather(twilio, clock, receiver):
    _, call = request(twilio, f"{BASE}/Calls.json", escalation_call(receiver))
    clock.advance(ANSWERED + speech(INTRO))  # now saying the prompt
    status, updated = request(twilio, f"{BASE}/Calls/{call['sid']}.json", {"Status": "completed"})
    assert (status, updated["status"]) == (200, "completed")
    clock.advance(60)
    [completed] = receiver.wait_for(1)
    assert completed.params["CallStatus"] == "completed"
    assert completed.params["CallDuration"] == str(round(speech(INTRO) / SCALE))
    time.sleep(0.2)
    assert [e["event"] for e in twilio.outbox() if e.get("kind") == "callback"] == ["completed"]


def test_a_ringing_call_canceled_posts_canceled_and_no_gather(twilio, clock, receiver):
    _, call = request(twilio, f"{BASE}/Calls.json", escalation_call(receiver))
    clock.advance(RINGING_SECONDS * SCALE)
    request(twilio, f"{BASE}/Calls/{call['sid']}.json", {"Status": "canceled"})
    clock.advance(60)
    [canceled] = receiver.wait_for(1)
    assert canceled.params["CallStatus"] == "canceled"
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_a_gather_is_posted_without_a_status_callback_and_a_no_answer_call_posts_none(
    twilio, clock, receiver, phones
):
    phones["+15551230009"] = PhoneBehaviour(call="no-answer")
    request(twilio, f"{BASE}/Calls.json", escalation_call(receiver, status_callback=False))
    _, rang_out = request(
        twilio, f"{BASE}/Calls.json", escalation_call(receiver, to="+15551230009")
    )
    clock.advance(ANSWERED + speech(INTRO) + speech(PROMPT) + 0.001)
    [gather] = receiver.wait_for(1)
    assert gather.params["Digits"] == "1" and valid(gather)
    clock.advance(30 * SCALE)
    _, no_answer = receiver.wait_for(2)
    assert (no_answer.params["CallSid"], no_answer.params["CallStatus"]) == (
        rang_out["sid"],
        "no-answer",
    )
    assert no_answer.params["CallDuration"] == "0"


def test_plain_calls_keep_the_fixed_progress(twilio, clock):
    _, call = request(
        twilio,
        f"{BASE}/Calls.json",
        {"To": TO, "From": FROM, "Twiml": "<Response><Say>hi</Say></Response>"},
    )
    clock.advance(1.0)
    assert request(twilio, f"{BASE}/Calls/{call['sid']}.json")[1]["status"] == "in-progress"
    clock.advance(2.0)
    assert request(twilio, f"{BASE}/Calls/{call['sid']}.json")[1]["status"] == "completed"


def test_the_outbox_line_of_a_gather_says_what_was_pressed(capsys):
    entry = {
        "kind": "callback",
        "time": "T",
        "sid": "CA1",
        "event": "gather",
        "status": "in-progress",
        "digits": "1",
        "http_status": 200,
        "method": "POST",
        "url": "http://127.0.0.1:1/lambda-url/iotbutton-notifier/",
    }
    _print_entry(Output(), entry)
    assert capsys.readouterr().out == (
        "T  CALLBACK CA1 gather: pressed 1 -> 200 POST "
        "http://127.0.0.1:1/lambda-url/iotbutton-notifier/\n"
    )


def test_the_time_scale_must_be_a_fraction():
    for scale in (0, -1, 1.5):
        with pytest.raises(ValueError, match="time_scale"):
            TwilioStandIn(time_scale=scale)


# -- hold ------------------------------------------------------------------------------------


def raw_create(stand_in: TwilioStandIn, fields: dict[str, str]) -> socket.socket:
    body = urlencode(fields).encode()
    lines = [f"POST {BASE}/Messages.json HTTP/1.1", "Host: api.twilio.com"]
    lines += [f"{name}: {value}" for name, value in headers().items()]
    lines.append(f"Content-Length: {len(body)}")
    host, port = stand_in.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def wait_for_log(caplog, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.01)


def test_a_held_create_whose_client_gave_up_is_dropped(twilio, phones, caplog):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.twilio")
    phones[TO] = PhoneBehaviour(hold=0.5)
    sock = raw_create(twilio, {"To": TO, "From": FROM, "Body": "help"})
    wait_for_log(caplog, f"twilio stand-in: holding a create to {TO} for 0.5 s")
    sock.close()  # the caller crashed while Twilio held its request
    wait_for_log(caplog, "client gone")
    assert twilio.outbox() == []
    assert request(twilio, f"{BASE}/Messages.json")[1]["messages"] == []


def test_a_held_create_whose_client_waits_is_created_after_the_hold(twilio, phones, caplog):
    caplog.set_level(logging.INFO, logger="iotbutton_cli.sandbox.twilio")
    phones[TO] = PhoneBehaviour(hold=0.3)
    started = time.monotonic()
    status, message = request(
        twilio, f"{BASE}/Messages.json", {"To": TO, "From": FROM, "Body": "x"}
    )
    assert status == 201 and time.monotonic() - started >= 0.3
    assert "holding a create to" in caplog.text and "client gone" not in caplog.text
    assert [entry["sid"] for entry in twilio.outbox()] == [message["sid"]]


def test_press_and_hold_are_table_keys_checked_like_the_others():
    table = parse_phones('{"+15551230001": {"call": "hangup", "press": "", "hold": 2.5}}')
    assert table[TO] == PhoneBehaviour(call="hangup", press="", hold=2.5)
    assert table[TO].to_json() == {"call": "hangup", "press": "", "hold": 2.5}
    assert PhoneBehaviour().to_json() == {}
    for bad in ('{"press": "1a"}', '{"press": 1}', '{"hold": -1}', '{"hold": true}'):
        with pytest.raises(ValueError, match=r"\+15551230001: (press|hold) must"):
            parse_phones('{"+15551230001": ' + bad + "}")
