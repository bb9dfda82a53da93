"""notify.yaml's webhook: and slack: entries: checked with file:line, their secrets named by
environment variable and never written in the file, carried to the notifier, stored at deploy
with the Twilio secret in one SecureString."""

from __future__ import annotations

import base64

import pytest

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notifier_lambda import contract
from iotbutton_cli.notifier_lambda.hook_settings import split_secret
from iotbutton_cli.notify import config as notify_config
from iotbutton_cli.notify import hooks_config

SIGNING = "whsec_" + base64.b64encode(b"s" * 32).decode()
HEAD = """\
account_sid: "AC0123456789abcdef0123456789abcdef"
from: "+15005550006"
person: "Grandma"
clicks:
  LONG:
    sms: ["+15551230009"]
    message: "{person} needs help."
"""
HOOKS = (
    HEAD
    + """\
    webhook:
      - url: "https://hooks.example.com/iotbutton?site=home"
        secret: $HOOK_SECRET
      - url: "https://api.example.com/alarms"
        auth: oauth2
        token_url: "https://auth.example.com/oauth/token"
        client_id: "iotbutton"
        client_secret: ${HOOK_CLIENT_SECRET}
        scope: "alarms:write"
    slack:
      webhook_url: $SLACK_WEBHOOK_URL
buttons:
  G030JF0553648RUH:
    person: "Grandpa"
    clicks:
      LONG:
        webhook: {url: "https://other.example.com/", auth: bearer, token: $OTHER_TOKEN}
"""
)


def parsed(text: str) -> notify_config.NotifyConfig:
    return notify_config.parse_config_text(text)


def failure(text: str) -> IotButtonError:
    with pytest.raises(IotButtonError) as caught:
        parsed(text)
    return caught.value


def test_hooks_reach_the_notifier_by_button_with_only_the_names_of_their_secrets() -> None:
    config = parsed(HOOKS)
    document = config.lambda_document()
    assert document["clicks"]["LONG"]["webhooks"] == [
        {
            "url": "https://hooks.example.com/iotbutton?site=home",
            "auth": "standard",
            "secret": "HOOK_SECRET",
        },
        {
            "url": "https://api.example.com/alarms",
            "auth": "oauth2",
            "secret": "HOOK_CLIENT_SECRET",
            "token_url": "https://auth.example.com/oauth/token",
            "client_id": "iotbutton",
            "scope": "alarms:write",
        },
    ]
    assert document["clicks"]["LONG"]["slack"] == [{"secret": "SLACK_WEBHOOK_URL"}]
    notifier = contract.parse_config(document)
    grandpa = notifier.for_button("G030JF0553648RUH")
    assert grandpa is not None
    (own,) = grandpa.clicks["LONG"].webhooks
    assert (own.url, own.auth, own.secret) == (
        "https://other.example.com/",
        "bearer",
        "OTHER_TOKEN",
    )
    assert grandpa.clicks["LONG"].slack == notifier.clicks["LONG"].slack  # inherited
    assert notifier.clicks["LONG"].webhooks[0].target == "https://hooks.example.com/iotbutton"
    assert hooks_config.secret_names(config) == {
        "HOOK_SECRET": "clicks.LONG.webhook (standard)",
        "HOOK_CLIENT_SECRET": "clicks.LONG.webhook (oauth2)",
        "SLACK_WEBHOOK_URL": "clicks.LONG.slack",
        "OTHER_TOKEN": "buttons.G030JF0553648RUH.clicks.LONG.webhook (bearer)",
    }


def test_a_file_without_hooks_makes_the_document_it_always_made() -> None:
    assert "webhooks" not in parsed(HEAD).lambda_document()["clicks"]["LONG"]
    assert "slack" not in parsed(HEAD).lambda_document()["clicks"]["LONG"]


def test_a_click_type_with_only_a_webhook_reaches_someone() -> None:
    text = HEAD.replace('    sms: ["+15551230009"]\n', "") + (
        '    webhook: {url: "https://hooks.example.com/", secret: $HOOK_SECRET}\n'
    )
    assert parsed(text).clicks["LONG"].recipients == 1


@pytest.mark.parametrize(
    ("entry", "code", "said"),
    [
        (
            'webhook: {url: "https://h.example.com/", secret: "whsec_c2VjcmV0c2VjcmV0"}',
            "notify-config-secret-in-file",
            "must name an environment variable",
        ),
        (
            'webhook: {url: "http://h.example.com/", secret: $S}',
            "notify-config-webhook",
            "is not an https:// URL",
        ),
        (
            'webhook: {url: "https://u:p@h.example.com/", secret: $S}',
            "notify-config-webhook",
            "has a user name or password",
        ),
        ("webhook: {secret: $S}", "notify-config-webhook", "url is missing"),
        (
            'webhook: {url: "https://h.example.com/", auth: basic, secret: $S}',
            "notify-config-webhook",
            "must be standard, bearer or oauth2",
        ),
        (
            'webhook: {url: "https://h.example.com/", auth: bearer, secret: $S}',
            "notify-config-webhook",
            "secret is not used with auth bearer: it takes token",
        ),
        (
            'webhook: {url: "https://h.example.com/", auth: oauth2, client_secret: $S}',
            "notify-config-webhook",
            "token_url is missing",
        ),
        (
            'webhook: {url: "https://h.example.com/", token_url: "https://a/", secret: $S}',
            "notify-config-webhook",
            "token_url is only for auth oauth2",
        ),
        ('webhook: {url: "https://h.example.com/", sekret: $S}', "notify-config-unknown-key", ""),
        (
            'slack: {webhook_url: "https://hooks.slack.com/services/T/B/X"}',
            "notify-config-secret-in-file",
            "must name an environment variable",
        ),
        ("slack: {}", "notify-config-slack", "webhook_url is missing"),
        ('slack: "yes"', "notify-config-slack", "must be settings"),
    ],
)
def test_bad_entries_are_one_line_with_file_and_line(entry: str, code: str, said: str) -> None:
    error = failure(HEAD + f"    {entry}\n")
    assert error.code == code
    assert ":8: " in error.message and said in error.message
    assert "\n" not in error.message
    assert "c2VjcmV0c2VjcmV0" not in error.message + (error.hint or "")
    assert "/services/T/B/X" not in error.message + (error.hint or "")


def environment(**more: str) -> dict[str, str]:
    return {
        "HOOK_SECRET": SIGNING,
        "HOOK_CLIENT_SECRET": "client-secret",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/abc",
        "OTHER_TOKEN": "other-token",
        **more,
    }


def test_the_deploy_stores_every_hook_secret_with_the_twilio_secret() -> None:
    found = hooks_config.hook_secrets(parsed(HOOKS), environ=environment())
    stored = split_secret(hooks_config.stored_secret("a" * 32, found))
    assert stored.twilio == "a" * 32
    assert dict(stored.hooks) == environment()


@pytest.mark.parametrize(
    ("changes", "code", "said"),
    [
        ({"HOOK_SECRET": ""}, "notify-hook-secret-missing", "HOOK_SECRET is not set"),
        ({"HOOK_SECRET": "whsec_short"}, "notify-hook-secret-bad", "not a Standard Webhooks"),
        ({"HOOK_SECRET": "plain-password"}, "notify-hook-secret-bad", "not a Standard Webhooks"),
        (
            {"SLACK_WEBHOOK_URL": "http://hooks.slack.com/services/T0/B0/abc"},
            "notify-hook-secret-bad",
            "the Slack webhook URL in SLACK_WEBHOOK_URL is not an https:// URL",
        ),
        ({"OTHER_TOKEN": "x" * 5000}, "notify-hook-secret-bad", "an SSM parameter holds 4,096"),
    ],
)
def test_secrets_that_are_missing_or_wrong_are_refused_unseen(
    changes: dict[str, str], code: str, said: str
) -> None:
    config = parsed(HOOKS)
    with pytest.raises(IotButtonError) as caught:
        found = hooks_config.hook_secrets(config, environ=environment(**changes))
        hooks_config.stored_secret("a" * 32, found)
    assert caught.value.code == code and said in caught.value.message
    for value in changes.values():
        if value:
            assert value not in caught.value.message + (caught.value.hint or "")
    assert "/services/T0/B0/abc" not in caught.value.message


def test_loopback_is_for_the_sandbox_only() -> None:
    text = HEAD + '    webhook: {url: "http://127.0.0.1:8099/hooks/home", secret: $HOOK_SECRET}\n'
    config = parsed(text)  # the file may name the sandbox's sink...
    assert hooks_config.hook_secrets(config, sandbox=True, environ=environment())
    with pytest.raises(IotButtonError) as caught:  # ...which a deploy to AWS refuses
        hooks_config.hook_secrets(config, sandbox=False, environ=environment())
    assert caught.value.code == "notify-config-webhook"
    assert "is a loopback address" in caught.value.message


def test_two_webhooks_to_one_url_are_refused() -> None:
    text = HEAD + (
        "    webhook:\n"
        '      - {url: "https://h.example.com/a?site=1", secret: $S}\n'
        '      - {url: "https://h.example.com/a?site=2", secret: $S}\n'
    )
    error = failure(text)
    assert error.code == "notify-config-webhook"
    assert "posts to https://h.example.com/a twice" in error.message


def test_a_bearer_token_a_header_cannot_carry_is_refused_unseen() -> None:
    config = parsed(HOOKS)
    with pytest.raises(IotButtonError) as caught:
        hooks_config.hook_secrets(config, environ=environment(OTHER_TOKEN="tok\nSECRETPART"))
    assert caught.value.code == "notify-hook-secret-bad"
    assert "SECRETPART" not in caught.value.message
