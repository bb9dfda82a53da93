"""The notifier's webhook and Slack posts against a real HTTP server on loopback, their
signatures checked by the Standard Webhooks reference verifier (a library we did not write)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks

from iotbutton_cli.notifier_lambda import twilio, webhooks
from iotbutton_cli.notifier_lambda.hook_settings import (
    HookSettingsError,
    Slack,
    Webhook,
    join_secret,
    split_secret,
    url_problem,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PAYLOAD = {"type": "iotbutton.click", "timestamp": "2026-12-04T21:00:00.000Z", "data": {"x": 1}}


class Receiver:
    """Records each request; answers with the scripted (status, body) in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.issued = 0
        self.token_lifetime = 3600
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                scripted = receiver.answers.get(self.path) or []
                if scripted:
                    status, answer, headers = scripted.pop(0)
                elif self.path == "/token":
                    receiver.issued += 1
                    status, headers = 200, {}
                    answer = json.dumps(
                        {
                            "access_token": f"token-{receiver.issued}",
                            "token_type": "Bearer",
                            "expires_in": receiver.token_lifetime,
                        }
                    ).encode()
                else:
                    status, answer, headers = 200, b"ok", {}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [request for request in self.requests if request["path"] == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    webhooks.forget_tokens()
    yield found
    found.server.shutdown()
    webhooks.forget_tokens()


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(twilio, "sleep", lambda seconds: None)


def sender(**secrets: str) -> webhooks.HookSender:
    return webhooks.HookSender(secrets=secrets, timeout=5, allow_loopback=True)


def test_a_signed_post_verifies_with_the_reference_library_and_a_tampered_one_does_not(
    receiver: Receiver,
) -> None:
    hook = Webhook(f"{receiver.url}/hook", "standard", "HOOK_SECRET")
    outcome = sender(HOOK_SECRET=SECRET).post_webhook(hook, "alarm-1", PAYLOAD)
    assert outcome.ok and outcome.status == "delivered"
    (post,) = receiver.posts("/hook")
    verifier = standardwebhooks.Webhook(SECRET)
    assert verifier.verify(post["body"], post["headers"]) == PAYLOAD
    assert post["headers"]["webhook-id"] == outcome.sid
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(post["body"].replace(b'"x":1', b'"x":2'), post["headers"])
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        other = "whsec_" + base64.b64encode(b"o" * 32).decode()
        standardwebhooks.Webhook(other).verify(post["body"], post["headers"])


def test_every_attempt_at_one_delivery_has_one_id_and_a_fresh_signature(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.answers["/hook"] = [(503, b"busy", {}), (502, b"", {})]
    clock = itertools.count(1_800_000_000, 10)
    monkeypatch.setattr(webhooks, "wall_clock", lambda: next(clock))
    hook = Webhook(f"{receiver.url}/hook", "standard", "HOOK_SECRET")
    outcome = sender(HOOK_SECRET=SECRET).post_webhook(hook, "alarm-1", PAYLOAD)
    assert outcome.ok and outcome.attempts == 3
    posts = receiver.posts("/hook")
    assert len({post["headers"]["webhook-id"] for post in posts}) == 1
    assert [post["headers"]["webhook-timestamp"] for post in posts] == [
        "1800000000",
        "1800000010",
        "1800000020",
    ]
    assert len({post["headers"]["webhook-signature"] for post in posts}) == 3
    again = sender(HOOK_SECRET=SECRET).post_webhook(hook, "alarm-1", PAYLOAD)
    assert again.sid == outcome.sid  # a Lambda retry: the receiver can tell it is the same
    assert webhooks.message_id("alarm-2", hook.target) != outcome.sid


def test_a_client_error_is_final_and_server_errors_are_retryable(receiver: Receiver) -> None:
    hook = Webhook(f"{receiver.url}/hook", "bearer", "TOKEN")
    receiver.answers["/hook"] = [(400, b"bad request", {})]
    refused = sender(TOKEN="t0ken").post_webhook(hook, "a", PAYLOAD)
    assert (refused.ok, refused.retryable, refused.attempts) == (False, False, 1)
    assert refused.message == "HTTP 400: bad request"
    receiver.answers["/hook"] = [(503, b"", {})] * 3
    down = sender(TOKEN="t0ken").post_webhook(hook, "a", PAYLOAD)
    assert (down.ok, down.retryable, down.attempts) == (False, True, 3)
    assert receiver.posts("/hook")[0]["headers"]["authorization"] == "Bearer t0ken"


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.answers["/hook"] = [(302, b"", {"Location": f"{receiver.url}/elsewhere"})]
    outcome = sender(TOKEN="t").post_webhook(
        Webhook(f"{receiver.url}/hook", "bearer", "TOKEN"), "a", PAYLOAD
    )
    assert not outcome.ok and not outcome.retryable
    assert receiver.posts("/elsewhere") == []


def test_oauth2_fetches_a_token_once_and_again_when_it_expires_or_is_refused(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(twilio, "monotonic", lambda: now[0])
    hook = Webhook(
        f"{receiver.url}/hook", "oauth2", "CLIENT_SECRET", f"{receiver.url}/token", "me", "alarms"
    )
    post = sender(CLIENT_SECRET="s3cret:/").post_webhook
    assert post(hook, "a", PAYLOAD).ok and post(hook, "b", PAYLOAD).ok
    (token_request,) = receiver.posts("/token")
    basic = token_request["headers"]["authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic).decode() == "me:s3cret%3A%2F"  # RFC 6749 2.3.1
    assert token_request["body"] == b"grant_type=client_credentials&scope=alarms"
    assert {p["headers"]["authorization"] for p in receiver.posts("/hook")} == {"Bearer token-1"}
    now[0] += 3600 - webhooks.TOKEN_MARGIN_SECONDS + 1
    assert post(hook, "c", PAYLOAD).ok
    assert receiver.posts("/hook")[-1]["headers"]["authorization"] == "Bearer token-2"
    receiver.answers["/hook"] = [(401, b"", {})]
    assert post(hook, "d", PAYLOAD).ok
    assert receiver.posts("/hook")[-1]["headers"]["authorization"] == "Bearer token-3"
    assert len(receiver.posts("/token")) == 3
    webhooks.forget_tokens()
    receiver.answers["/hook"] = [(401, b"", {})]
    refused = post(hook, "e", PAYLOAD)  # a token just issued and refused: not fetched again
    assert (refused.ok, refused.message, len(receiver.posts("/token"))) == (False, "HTTP 401", 4)


def test_a_token_endpoint_that_refuses_fails_the_post_without_sending_it(
    receiver: Receiver,
) -> None:
    receiver.answers["/token"] = [(401, b'{"error": "invalid_client"}', {})]
    hook = Webhook(f"{receiver.url}/hook", "oauth2", "S", f"{receiver.url}/token", "me")
    outcome = sender(S="wrong").post_webhook(hook, "a", PAYLOAD)
    assert not outcome.ok and not outcome.retryable
    assert "invalid_client" in outcome.message
    assert receiver.posts("/hook") == []


def test_slack_gets_the_message_as_text_and_its_url_is_never_shown(receiver: Receiver) -> None:
    url = f"{receiver.url}/services/T0/B0/XXXXsecret"
    outcome = sender(SLACK_URL=url).post_slack(Slack("SLACK_URL"), "Grandma needs help")
    assert outcome.ok
    assert json.loads(receiver.posts("/services/T0/B0/XXXXsecret")[0]["body"]) == {
        "text": "Grandma needs help"
    }
    on_aws = webhooks.HookSender(secrets={"SLACK_URL": url}, timeout=5)
    refused = on_aws.post_slack(Slack("SLACK_URL"), "x")
    assert not refused.ok and "XXXXsecret" not in refused.message
    assert refused.message == (
        "the URL in SLACK_URL is a loopback address, which only the sandbox can reach"
    )


def test_a_missing_secret_or_a_bad_signing_secret_is_a_final_failure(receiver: Receiver) -> None:
    hook = Webhook(f"{receiver.url}/hook", "standard", "HOOK_SECRET")
    missing = sender().post_webhook(hook, "a", PAYLOAD)
    assert not missing.ok and not missing.retryable and "HOOK_SECRET" in missing.message
    bad = sender(HOOK_SECRET="whsec_not base64!").post_webhook(hook, "a", PAYLOAD)
    assert not bad.ok and "not a whsec_ signing secret" in bad.message
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("url", "on_aws", "in_sandbox"),
    [
        ("https://hooks.example.com/x", None, None),
        ("http://hooks.example.com/x", "is not an https:// URL", "is not an https:// URL"),
        ("https://127.0.0.1:9001/2018-06-01/runtime", "is a loopback address", None),
        ("http://localhost:8080/x", "is a loopback address", None),
        ("http://[::1]:8080/x", "is a loopback address", None),
        ("https://user:pw@hooks.example.com/", "has a user name or", "has a user name or"),
        ("ftp://hooks.example.com/", "is not an https:// URL", "is not an https:// URL"),
        ("https://hooks.example.com:99999/", "is not a URL", "is not a URL"),
    ],
)
def test_which_urls_a_click_may_go_to(url: str, on_aws: str | None, in_sandbox: str | None) -> None:
    for allow, expected in ((False, on_aws), (True, in_sandbox)):
        problem = url_problem(url, allow_loopback=allow)
        assert (problem is None) == (expected is None), (url, allow, problem)
        if expected:
            assert problem is not None and problem.startswith(expected)


def test_the_stored_secret_is_the_twilio_secret_alone_without_hooks() -> None:
    assert join_secret("abc123", {}) == "abc123"
    assert split_secret("abc123").twilio == "abc123"
    joined = join_secret("abc123", {"B": "2", "A": "1"})
    assert split_secret(joined).twilio == "abc123"
    assert dict(split_secret(joined).hooks) == {"A": "1", "B": "2"}
    for broken in ("{not json", '{"twilio": 1, "hooks": {}}', '{"twilio": "x", "hooks": {"A": 1}}'):
        with pytest.raises(HookSettingsError):
            split_secret(broken)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/",
        "https://0x7f000001/",
        "https://2130706433/",
        "https://localhost./x",
        "https://127.0.0.1./x",
        "https://[::ffff:127.0.0.1]/",
        "https://0.0.0.0/",
        "https://169.254.169.254/latest",
        "https://[fe80::1]/",
    ],
)
def test_every_spelling_of_loopback_or_link_local_is_refused_on_aws(url: str) -> None:
    assert url_problem(url) is not None


def test_a_url_with_a_space_or_control_character_is_refused_before_it_can_leak() -> None:
    for url in ("https://hooks.slack.com/services/T/B/SECRET PART", "https://h.example.com/\n"):
        assert url_problem(url, allow_loopback=True) == "has a space or control character in it"


def test_a_header_http_cannot_carry_fails_without_quoting_it(receiver: Receiver) -> None:
    hook = Webhook(f"{receiver.url}/hook", "bearer", "TOKEN")
    outcome = sender(TOKEN="tok\nSECRETPART").post_webhook(hook, "a", PAYLOAD)
    assert not outcome.ok and not outcome.retryable
    assert "SECRETPART" not in outcome.message
    assert receiver.requests == []


def test_a_network_error_names_the_trouble_not_the_url() -> None:
    slack_url = "https://127.0.0.1:9/services/T0/B0/SECRETPART"  # nothing listens on port 9
    on_sandbox = webhooks.HookSender(
        secrets={"SLACK_URL": slack_url}, timeout=2, allow_loopback=True
    )
    outcome = on_sandbox.post_slack(Slack("SLACK_URL"), "x")
    assert not outcome.ok and outcome.retryable
    assert "SECRETPART" not in outcome.message and "services" not in outcome.message
    assert outcome.message.startswith("network error: ")


def test_only_the_refused_token_is_forgotten(receiver: Receiver) -> None:
    hook = Webhook(f"{receiver.url}/hook", "oauth2", "S", f"{receiver.url}/token", "me")
    post = sender(S="secret").post_webhook
    assert post(hook, "a", PAYLOAD).ok  # token-1 cached
    key = (hook.token_url, hook.client_id, hook.scope)
    webhooks._tokens[key] = ("token-newer", webhooks._tokens[key][1])  # another thread's
    webhooks.HookSender(secrets={"S": "secret"}, timeout=5)._drop_token(hook, "token-1")
    assert webhooks._tokens[key][0] == "token-newer"
