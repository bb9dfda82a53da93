"""The sandbox's webhook sink, in process: what each endpoint answers (failures included), what it
records (the Authorization header cut short, the body kept exactly), how it tells its own bearer
tokens, and its controls (``hooks.json`` in its state folder, the only way to change it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest

from iotbutton_cli.sandbox import protocol, server
from iotbutton_cli.sandbox.webhook_sink import (
    CONTROLS_FILE,
    ENTRIES_FILE,
    MAX_BODY_BYTES,
    Controls,
    HookAnswer,
    WebhookSink,
    change_controls,
    dump_controls,
    parse_controls,
    redacted,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}  # urllib would send a form's type by default


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink(folder: Path, clock: Clock) -> Iterator[WebhookSink]:
    with WebhookSink(folder, clock=clock) as running:
        yield running


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json; charset=utf-8"
        return json.loads(self.body)

    def text(self) -> str:
        assert self.headers["Content-Type"] == "text/plain; charset=utf-8"
        return self.body.decode()


def send(
    sink: WebhookSink,
    path: str,
    body: bytes | None = b"{}",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Answer:
    request = urllib.request.Request(
        sink.base_url + path, data=body, headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def token_request(sink: WebhookSink, form: dict[str, str], basic: str | None = None) -> Answer:
    headers = dict(FORM)
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    return send(sink, "/oauth/token", urlencode(form).encode(), headers)


def issue(sink: WebhookSink) -> str:
    answer = token_request(sink, {"grant_type": "client_credentials"}, "app:secret")
    assert answer.status == 200
    return str(answer.json()["access_token"])


def set_answer(folder: Path, name: str, status: int, times: int = 1) -> None:
    change_controls(folder, lambda controls: controls.set_answer(name, status, times))


# -- /hooks/<name> ------------------------------------------------------------------------------


def test_a_webhook_post_is_answered_and_recorded_with_its_body_exactly_and_auth_cut_short(
    sink, folder, clock
):
    # A Standard Webhooks signature over the raw body: the entry must keep it byte for byte
    # (the key order, the spaces, a non-ASCII name), so a receiver's check passes over it.
    secret = base64.b64encode(b"k" * 24).decode()
    body = '{"type": "click",  "data": {"person": "Zoë", "clickType": "SINGLE"}}'.encode()
    msg_id, stamp = "msg_2b7yL0", str(int(time.time()))
    mac = hmac.new(base64.b64decode(secret), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
        "Authorization": "Bearer not-one-of-the-sinks-tokens-1234",
        "X-Repeated": "one",
    }
    answer = send(sink, "/hooks/crm.prod_1-A", body, headers)

    assert (answer.status, answer.json()) == (200, {"received": True})
    [entry] = sink.entries()
    assert entry["seq"] == 1
    assert (entry["kind"], entry["name"], entry["method"]) == ("webhook", "crm.prod_1-A", "POST")
    assert entry["path"] == "/hooks/crm.prod_1-A"
    assert entry["http_status"] == 200 and entry["forced"] is False
    assert entry["body"] == body.decode("utf-8")
    assert entry["received_at"] == clock.now
    assert entry["time"] == "2027-01-15T08:00:00.000+00:00"
    recorded = entry["headers"]
    assert recorded["authorization"] == "Bearer …1234"
    assert recorded["webhook-signature"] == headers["webhook-signature"]
    assert recorded["content-type"] == "application/json"
    assert all(name == name.lower() for name in recorded)
    assert entry["bearer"] == "unknown"  # a bearer token the sink never issued

    from standardwebhooks import Webhook

    Webhook(secret).verify(entry["body"], recorded)  # raises if the body is not what was signed
    mine = hmac.new(
        base64.b64decode(secret), f"{msg_id}.{stamp}.{entry['body']}".encode(), hashlib.sha256
    )
    assert recorded["webhook-signature"] == "v1," + base64.b64encode(mine.digest()).decode()

    # The same entry is a JSON line in the state folder, 0600.
    path = folder / ENTRIES_FILE
    assert [json.loads(line) for line in path.read_text().splitlines()] == [entry]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_body_that_is_not_utf8_is_kept_with_replacement_characters(sink):
    answer = send(sink, "/hooks/raw", b"ok \xff\xfe end", {"Content-Type": "text/plain"})
    assert answer.status == 200
    [entry] = sink.entries()
    assert entry["body"] == "ok \ufffd\ufffd end"
    assert entry["bearer"] is None  # no Authorization header at all


def test_authorization_is_cut_to_its_scheme_and_last_four_characters():
    assert redacted("Bearer abcdefghijklmnop") == "Bearer …mnop"
    basic = base64.b64encode(b"client:secret").decode()
    assert redacted(f"Basic {basic}") == f"Basic …{basic[-4:]}"
    assert redacted("abcdefghijklmnop") == "…mnop"  # no scheme
    assert redacted("Bearer short") == "Bearer …"  # too short to show any of it
    assert redacted("Bearer") == "…"


def test_paths_methods_and_sizes_it_does_not_take_are_refused_and_not_recorded(sink):
    for path in (
        "/",
        "/hooks",
        "/hooks/",
        "/hooks/a/b",
        "/hooks/bad name",
        "/hooks/" + "x" * 65,
        "/hooks/caf%C3%A9",
        "/slack/",
        "/oauth/token/x",
        "/other/crm",
    ):
        answer = send(sink, path.replace(" ", "%20"))
        assert answer.status == 404, path
        assert answer.json() == {"error": "not_found"}
    for path in ("/hooks/crm", "/slack/crm", "/oauth/token"):
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            answer = send(sink, path, None if method == "GET" else b"{}", method=method)
            assert answer.status == 405, (method, path)
            assert answer.headers["Allow"] == "POST"
    assert send(sink, "/hooks/" + "x" * 64).status == 200  # 64 characters is a name
    too_big = send(sink, "/hooks/big", b"x" * (MAX_BODY_BYTES + 1))
    assert (too_big.status, too_big.json()) == (413, {"error": "payload_too_large"})
    assert send(sink, "/hooks/big", b"x" * MAX_BODY_BYTES).status == 200
    assert [(e["name"], len(e["body"])) for e in sink.entries()] == [
        ("x" * 64, 2),
        ("big", MAX_BODY_BYTES),
    ]


# -- /slack/<name> ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b'{"text": "Grandma clicked"}', 200, "ok"),
        (b'{"text": "hi", "blocks": []}', 200, "ok"),
        (b"not json", 400, "invalid_payload"),
        (b"\xff", 400, "invalid_payload"),
        (b'["text"]', 400, "invalid_payload"),
        (b'{"text": 5}', 400, "invalid_payload"),
        (b"{}", 400, "no_text"),
        (b'{"text": ""}', 400, "no_text"),
        (b'{"text": "  "}', 400, "no_text"),
        (b'{"text": null}', 400, "no_text"),
    ],
)
def test_slack_answers_as_an_incoming_webhook(sink, body, status, text):
    answer = send(sink, "/slack/alerts", body, {"Content-Type": "application/json"})
    assert (answer.status, answer.text()) == (status, text)
    [entry] = sink.entries()
    assert (entry["kind"], entry["name"], entry["http_status"]) == ("slack", "alerts", status)
    assert entry["body"] == body.decode("utf-8", errors="replace")


# -- /oauth/token -------------------------------------------------------------------------------


def test_the_token_endpoint_issues_bearer_tokens_for_basic_or_form_client_credentials(sink):
    # RFC 6749 §2.3.1: the id and secret are each form-urlencoded, then joined with ":".
    client_id, secret = "iot button:1", "s3cr:t+/=value"
    basic = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    answer = token_request(sink, {"grant_type": "client_credentials", "scope": "alerts"}, basic)

    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    issued = answer.json()
    assert set(issued) == {"access_token", "token_type", "expires_in"}
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", 3600)
    assert len(issued["access_token"]) >= 32

    form = token_request(
        sink, {"grant_type": "client_credentials", "client_id": "svc", "client_secret": secret}
    )
    assert form.status == 200
    assert form.json()["access_token"] != issued["access_token"]

    basic_entry, form_entry = sink.entries()
    assert basic_entry["kind"] == "oauth-token" and basic_entry["name"] is None
    assert (basic_entry["client_id"], basic_entry["client_auth"]) == (client_id, "basic")
    assert (basic_entry["grant_type"], basic_entry["scope"]) == ("client_credentials", "alerts")
    assert basic_entry["headers"]["authorization"].startswith("Basic …")
    assert (form_entry["client_id"], form_entry["client_auth"]) == ("svc", "form")
    assert "client_secret=redacted" in form_entry["body"]
    # Never the secret, nor the token, anywhere it records.
    recorded = json.dumps(sink.entries()) + (sink.state_dir / ENTRIES_FILE).read_text()
    for never in (secret, quote_plus(secret), issued["access_token"]):
        assert never not in recorded


@pytest.mark.parametrize(
    ("form", "basic", "headers", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, None, FORM, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "x"}, None, FORM, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "no-colon", FORM, 401, "invalid_client"),
        ({"grant_type": "password", "username": "u"}, "a:b", FORM, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, "a:b", FORM, 400, "unsupported_grant_type"),
        ({"scope": "x"}, "a:b", FORM, 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, "a:b", JSON, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_secret": "again"},
            "a:b",
            FORM,
            400,
            "invalid_request",
        ),
    ],
)
def test_the_token_endpoint_refuses_as_rfc_6749_says(sink, form, basic, headers, status, error):
    request_headers = dict(headers)
    if basic is not None:
        request_headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    answer = send(sink, "/oauth/token", urlencode(form).encode(), request_headers)

    assert answer.status == status
    assert answer.json()["error"] == error
    assert answer.headers["Cache-Control"] == "no-store"
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    [entry] = sink.entries()
    assert (entry["kind"], entry["http_status"]) == ("oauth-token", status)


def test_a_bearer_is_issued_while_live_then_expired_and_the_lifetime_is_a_control(
    sink, folder, clock
):
    token = issue(sink)
    assert send(sink, "/hooks/crm", headers={"Authorization": f"Bearer {token}"}).status == 200
    assert send(sink, "/slack/ops", b'{"text": "t"}', {"Authorization": f"bearer {token}"}).status
    clock.now += 3599
    send(sink, "/hooks/crm", headers={"Authorization": f"Bearer {token}"})
    clock.now += 1  # its 3600 s are up
    send(sink, "/hooks/crm", headers={"Authorization": f"Bearer {token}"})
    send(sink, "/hooks/crm", headers={"Authorization": "Bearer " + "f" * 43})
    send(sink, "/hooks/crm", headers={"Authorization": "Basic " + token})
    assert [e.get("bearer") for e in sink.entries() if e["kind"] != "oauth-token"] == [
        "issued",
        "issued",
        "issued",
        "expired",
        "unknown",
        None,
    ]

    def shorter(controls: Controls) -> None:
        controls.token_lifetime = 2

    change_controls(folder, shorter)
    short = token_request(sink, {"grant_type": "client_credentials"}, "app:secret").json()
    assert short["expires_in"] == 2
    clock.now += 2
    send(sink, "/hooks/crm", headers={"Authorization": f"Bearer {short['access_token']}"})
    assert sink.entries()[-1]["bearer"] == "expired"


# -- controls -----------------------------------------------------------------------------------


def test_a_name_answers_the_status_set_for_its_next_posts_then_as_usual(sink, folder):
    set_answer(folder, "crm", 503, times=2)
    set_answer(folder, "ops", 429)
    assert json.loads((folder / CONTROLS_FILE).read_text()) == {
        "token_lifetime": 3600,
        "hooks": {"crm": {"status": 503, "times": 2}, "ops": {"status": 429, "times": 1}},
    }
    assert stat.S_IMODE((folder / CONTROLS_FILE).stat().st_mode) == 0o600

    first = send(sink, "/hooks/crm")
    assert (first.status, first.json()) == (
        503,
        {"received": False, "error": "Service Unavailable"},
    )
    assert parse_controls((folder / CONTROLS_FILE).read_text()).hooks == {
        "crm": HookAnswer(503, 1),
        "ops": HookAnswer(429, 1),
    }
    assert send(sink, "/hooks/crm").status == 503
    assert send(sink, "/hooks/crm").status == 200  # two were set
    slack = send(sink, "/slack/ops", b"not even json")  # the status comes first, as Slack's would
    assert (slack.status, slack.text()) == (429, "too_many_requests")
    assert send(sink, "/slack/ops", b"not even json").text() == "invalid_payload"
    assert [(e["name"], e["http_status"], e["forced"]) for e in sink.entries()] == [
        ("crm", 503, True),
        ("crm", 503, True),
        ("crm", 200, False),
        ("ops", 429, True),
        ("ops", 400, False),
    ]
    assert parse_controls((folder / CONTROLS_FILE).read_text()).hooks == {}

    set_answer(folder, "crm", 204, times=3)
    assert send(sink, "/hooks/crm").status == 204
    set_answer(folder, "crm", 200)  # 200 forgets the name
    assert parse_controls((folder / CONTROLS_FILE).read_text()).hooks == {}
    assert sink.entries()[-1]["forced"] is True


def test_nothing_over_http_controls_the_sink_and_only_the_owners_own_file_does(
    sink, folder, tmp_path, caplog
):
    # Any local user can reach the port; none of these changes how a name answers.
    for path, method in (
        ("/hooks/crm?status=503&times=5", "POST"),
        ("/hooks/crm", "PUT"),
        ("/control/crm", "POST"),
        ("/hooks.json", "PUT"),
        ("/oauth/token?token_lifetime=1", "POST"),
    ):
        send(sink, path, b'{"hooks": {"crm": {"status": 503, "times": 5}}}', method=method)
    assert not (folder / CONTROLS_FILE).exists()
    assert send(sink, "/hooks/crm").status == 200
    assert issue(sink)  # the lifetime was not touched either
    assert (
        token_request(sink, {"grant_type": "client_credentials"}, "a:b").json()["expires_in"]
        == 3600
    )

    # A symbolic link in its place is never followed.
    planted = tmp_path / "planted.json"
    planted.write_text(dump_controls(Controls(1, {"crm": HookAnswer(503, 5)})))
    os.symlink(planted, folder / CONTROLS_FILE)
    assert send(sink, "/hooks/crm").status == 200
    assert (
        token_request(sink, {"grant_type": "client_credentials"}, "a:b").json()["expires_in"]
        == 3600
    )
    assert "symbolic link" in caplog.text
    (folder / CONTROLS_FILE).unlink()

    # A file in a folder other users could write is no one's in particular: ignored.
    (folder / CONTROLS_FILE).write_text(dump_controls(Controls(1, {"crm": HookAnswer(503, 5)})))
    folder.chmod(0o777)
    try:
        assert send(sink, "/hooks/crm").status == 200
        assert "writable by other users" in caplog.text
    finally:
        folder.chmod(0o700)
    assert send(sink, "/hooks/crm").status == 503  # the owner's own file, in the owner's folder


def test_controls_that_are_not_controls_are_ignored_by_the_sink_and_refused_by_the_parser(
    sink, folder, caplog
):
    (folder / CONTROLS_FILE).write_text('{"hooks": {"crm": {"status": "503"}}}')
    assert send(sink, "/hooks/crm").status == 200
    assert "status must be a whole number" in caplog.text
    for text, problem in (
        ("[]", "must hold an object"),
        ('{"hook": {}}', "unknown key 'hook'"),
        ('{"token_lifetime": 0}', "token_lifetime must be 1 to"),
        ('{"token_lifetime": true}', "token_lifetime must be a whole number"),
        ('{"hooks": {"a b": {"status": 503}}}', "'a b' is not a hook name"),
        ('{"hooks": {"crm": {"status": 199}}}', "crm: status must be 200 to 599"),
        ('{"hooks": {"crm": {"status": 503, "times": 0}}}', "crm: times must be 1 to 1000"),
        ('{"hooks": {"crm": {"times": 2}}}', "crm: must be an object with status"),
    ):
        with pytest.raises(ValueError, match=problem):
            parse_controls(text)
    assert parse_controls('{"hooks": {"crm": {"status": 503}}}').hooks == {
        "crm": HookAnswer(503, 1)
    }


# -- what it keeps ------------------------------------------------------------------------------


def test_it_keeps_the_last_entries_and_rewrites_its_file_with_them(folder):
    with WebhookSink(folder, keep=3) as small:
        for number in range(1, 9):
            assert send(small, f"/hooks/n{number}").status == 200
        assert [e["seq"] for e in small.entries()] == [6, 7, 8]
        lines = [json.loads(line) for line in (folder / ENTRIES_FILE).read_text().splitlines()]
        assert len(lines) <= 6  # never more than twice what it keeps
        assert [e["seq"] for e in lines][-3:] == [6, 7, 8]
        assert stat.S_IMODE((folder / ENTRIES_FILE).stat().st_mode) == 0o600
        assert [n for n in os.listdir(folder) if n.endswith(".tmp")] == []
    with WebhookSink(folder) as fresh:  # a new sink starts with nothing
        assert fresh.entries() == [] and not (folder / ENTRIES_FILE).exists()


def test_the_sandbox_server_takes_the_sinks_port_and_the_state_file_its_url(tmp_path):
    args = protocol.server_args(tmp_path, 1, 2, 3, hooks_port=4)
    assert server.argument_parser().parse_args(args).hooks_port == 4
    assert server.argument_parser().parse_args(protocol.server_args(tmp_path)).hooks_port == 0
    info = protocol.SandboxInfo(
        pid=1,
        aws_url="http://127.0.0.1:1",
        mqtt_host="localhost",
        mqtt_port=2,
        ca_file="/ca.pem",
        twilio_url="http://127.0.0.1:3",
        outbox="/outbox.jsonl",
        region=protocol.SANDBOX_REGION,
        account=protocol.SANDBOX_ACCOUNT,
        access_key_id="AKIA" + "B" * 16,
        secret_access_key="s" * 40,
        hooks_port=4,
    )
    assert info.hooks_url == "http://127.0.0.1:4"
    assert protocol.SandboxInfo.from_state(info.state()) == info
    older = {key: value for key, value in info.state().items() if key != "hooks_port"}
    assert protocol.SandboxInfo.from_state(older).hooks_url == ""  # type: ignore[union-attr]
