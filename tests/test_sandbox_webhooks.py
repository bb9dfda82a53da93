"""Webhooks and Slack end to end, through the CLI and the real background sandbox: a click's
post reaches the sandbox's webhook sink signed so that the Standard Webhooks reference library
verifies it (and a tampered copy fails), a Slack post carries the message, an OAuth 2 webhook
gets a token the sink issued, a webhook that answers 503 is tried again, and history says so."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import standardwebhooks

from support import TWILIO_ACCOUNT_SID

SERIAL = "G030JF0553648RUH"
ALICE, BOB = "+15551230001", "+15551230002"
SIGNING = "whsec_" + base64.b64encode(b"care-home-signing-key-32-bytes!!").decode()


def config(sink: str) -> str:
    return f"""\
account_sid: "{TWILIO_ACCOUNT_SID}"
from: "+15005550006"
person: "Grandma"
address: "12 High Street"
debounce: 0
clicks:
  LONG:
    sms: ["{ALICE}"]
    call: ["{BOB}"]
    message: "{{person}} needs help at {{address}}."
    say: {{voice: "Polly.Amy", language: "en-GB", repeat: 2}}
    webhook:
      - url: "{sink}/hooks/care"
        secret: $CARE_HOOK_SECRET
      - url: "{sink}/hooks/api"
        auth: oauth2
        token_url: "{sink}/oauth/token"
        client_id: "iotbutton"
        client_secret: $API_CLIENT_SECRET
    slack:
      webhook_url: $SLACK_WEBHOOK_URL
"""


def sink_url() -> str:
    from iotbutton_cli.sandbox import client

    info = client.require_running()
    assert info.hooks_port
    return f"http://127.0.0.1:{info.hooks_port}"


def entries(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    from iotbutton_cli.sandbox import client

    return [
        entry
        for entry in client.hooks()
        if entry["kind"] == kind and (name is None or entry.get("name") == name)
    ]


def wait_until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def deployed(cli, sandbox, isolated_env, monkeypatch: pytest.MonkeyPatch) -> str:
    sink = sink_url()
    monkeypatch.setenv("CARE_HOOK_SECRET", SIGNING)
    monkeypatch.setenv("API_CLIENT_SECRET", "api-client-secret")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{sink}/slack/family")
    cli("--sandbox", "things", "create", SERIAL)
    (isolated_env / "config").mkdir(parents=True, exist_ok=True)
    (isolated_env / "config" / "notify.yaml").write_text(config(sink))
    cli("--sandbox", "notify", "deploy")
    return sink


def test_a_click_reaches_webhooks_and_slack_signed_and_verifiable(cli, deployed) -> None:
    cli("--sandbox", "sim", "click", SERIAL, "--long", "--wait")
    wait_until(
        lambda: entries("webhook", "care") and entries("webhook", "api") and entries("slack")
    )

    (care,) = entries("webhook", "care")
    body = care["body"].encode()
    verifier = standardwebhooks.Webhook(SIGNING)
    event = verifier.verify(body, care["headers"])
    assert event["type"] == "iotbutton.click"
    assert event["data"]["serial"] == SERIAL and event["data"]["click"] == "LONG"
    assert event["data"]["message"] == "Grandma needs help at 12 High Street."
    assert event["data"]["address"] == "12 High Street"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(body.replace(b"Grandma", b"Grandpa"), care["headers"])

    (slack,) = entries("slack", "family")
    assert json.loads(slack["body"]) == {"text": "Grandma needs help at 12 High Street."}
    (token,) = entries("oauth-token")
    assert token["client_id"] == "iotbutton" and "api-client-secret" not in json.dumps(token)
    (api,) = entries("webhook", "api")
    assert api["bearer"] == "issued"

    outbox = cli.json("sandbox", "outbox")
    (twiml,) = [e["fields"]["Twiml"] for e in outbox if e.get("resource") == "Calls"]
    assert '<Say voice="Polly.Amy" language="en-GB" loop="2">' in twiml

    (alarm,) = cli.json("--sandbox", "notify", "history")
    shown = {(d["channel"], d["to"]): d for d in alarm["deliveries"]}
    assert shown[("webhook", f"{deployed}/hooks/care")]["twilio_status"] == "delivered"
    assert shown[("slack", "slack:SLACK_WEBHOOK_URL")]["reached"] is True


def test_a_webhook_that_is_down_is_tried_again_and_the_same_delivery_keeps_its_id(
    cli, deployed
) -> None:
    cli("--sandbox", "sandbox", "hook", "care", "--status", "503", "--times", "2")
    cli("--sandbox", "sim", "click", SERIAL, "--long", "--wait")
    wait_until(lambda: len(entries("webhook", "care")) >= 3)
    time.sleep(1)  # nothing more comes
    posts = entries("webhook", "care")
    assert [post["http_status"] for post in posts] == [503, 503, 200]
    assert len({post["headers"]["webhook-id"] for post in posts}) == 1
    verifier = standardwebhooks.Webhook(SIGNING)
    for post in posts:
        verifier.verify(post["body"].encode(), post["headers"])
    wait_until(lambda: cli.json("--sandbox", "notify", "history")[0]["deliveries"])
    (alarm,) = cli.json("--sandbox", "notify", "history")
    (care,) = [d for d in alarm["deliveries"] if d["channel"] == "webhook" and "care" in d["to"]]
    assert (care["status"], care["attempts"]) == ("queued", 1)
    assert care["twilio_status"] == "delivered"


def test_a_deploy_without_a_hook_secret_is_one_line_and_a_hint(
    cli, sandbox, isolated_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CARE_HOOK_SECRET", raising=False)
    monkeypatch.setenv("API_CLIENT_SECRET", "x")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/slack/x")
    (isolated_env / "config").mkdir(parents=True, exist_ok=True)
    (isolated_env / "config" / "notify.yaml").write_text(config(sink_url()))
    result = cli("--sandbox", "notify", "deploy", code=2)
    assert "CARE_HOOK_SECRET is not set" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2
