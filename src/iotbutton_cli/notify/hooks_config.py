"""A click type's ``webhook:`` and ``slack:`` in notify.yaml, and the secrets they name.

::

    webhook:                                  # or a list of up to 5
      url: "https://hooks.example.com/iotbutton"
      auth: standard                          # standard (the default), bearer or oauth2
      secret: $HOOK_SECRET                    # standard: a whsec_ signing secret
      # token: $HOOK_TOKEN                    # bearer
      # token_url: "https://auth.example.com/oauth/token"   # oauth2, with client_id,
      # client_id: "iotbutton"                # client_secret: $HOOK_CLIENT_SECRET and an
      # client_secret: $HOOK_CLIENT_SECRET    # optional scope
    slack:
      webhook_url: $SLACK_WEBHOOK_URL         # the incoming webhook's URL is a credential

Secrets never sit in the file: each is ``$NAME`` (or ``${NAME}``), an environment variable that
``notify deploy`` reads and stores, with the Twilio secret, in the SSM SecureString. A URL must be
https; loopback (http or https) is allowed only for a deploy to the sandbox, whose webhook sink
listens there.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from iotbutton_cli.errors import usage_error
from iotbutton_cli.notifier_lambda.hook_settings import (
    MAX_HOOKS,
    STORED_SECRET_MAX_BYTES,
    Slack,
    Webhook,
    join_secret,
    shown_url,
    url_problem,
)

if TYPE_CHECKING:
    from yaml.nodes import Node

    from iotbutton_cli.notify.config import ClickSettings, NotifyConfig, _Parser

WEBHOOK_KEYS = (
    "url",
    "auth",
    "secret",
    "token",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
)
SLACK_KEYS = ("webhook_url",)
# Which key holds the secret for each way of authenticating.
SECRET_KEYS = {"standard": "secret", "bearer": "token", "oauth2": "client_secret"}
REFERENCE = re.compile(r"\$(?:\{([A-Z_][A-Z0-9_]{0,63})\}|([A-Z_][A-Z0-9_]{0,63}))")
SIGNING_KEY_BYTES = (24, 64)  # Standard Webhooks: a whsec_ secret is 24 to 64 random bytes
WEBHOOK_EXAMPLE = (
    'For example: webhook: {url: "https://hooks.example.com/iotbutton", auth: standard, '
    "secret: $HOOK_SECRET}"
)
SLACK_EXAMPLE = "For example: slack: {webhook_url: $SLACK_WEBHOOK_URL}"
NEW_SECRET_HINT = (
    "Make one with: python3 -c \"import base64, os; print('whsec_' + "  # noqa: S105 - a how-to
    'base64.b64encode(os.urandom(32)).decode())", and give the receiver the same value.'
)


def parse_webhooks(parser: _Parser, node: Node, where: str) -> tuple[Webhook, ...]:
    items = _items(parser, node, f"{where}.webhook", WEBHOOK_EXAMPLE)
    found: list[Webhook] = []
    for index, item in enumerate(items):
        hook = _webhook(parser, item, f"{where}.webhook", len(items) > 1, index)
        if any(other.target == hook.target for other in found):
            parser.fail(
                item,
                "notify-config-webhook",
                f"{where}.webhook posts to {hook.target} twice (the query aside)",
                "Post to each URL once: the alarm table records one delivery per URL.",
            )
        found.append(hook)
    return tuple(found)


def parse_slack(parser: _Parser, node: Node, where: str) -> tuple[Slack, ...]:
    from yaml.nodes import MappingNode

    items = _items(parser, node, f"{where}.slack", SLACK_EXAMPLE)
    found = []
    for index, item in enumerate(items):
        label = f"{where}.slack" + (f"[{index}]" if len(items) > 1 else "")
        if not isinstance(item, MappingNode):
            parser.fail(
                item, "notify-config-slack", f"{label} must have webhook_url", SLACK_EXAMPLE
            )
        entries = parser.entries(item, label, SLACK_KEYS)
        if "webhook_url" not in entries:
            parser.fail(
                item, "notify-config-slack", f"{label}.webhook_url is missing", SLACK_EXAMPLE
            )
        found.append(Slack(_reference(parser, entries["webhook_url"][1], f"{label}.webhook_url")))
    return tuple(found)


def _items(parser: _Parser, node: Node, where: str, example: str) -> list[Node]:
    from yaml.nodes import MappingNode, SequenceNode

    items = list(node.value) if isinstance(node, SequenceNode) else [node]
    if not items or not all(isinstance(item, MappingNode) for item in items):
        code = "notify-config-webhook" if where.endswith("webhook") else "notify-config-slack"
        parser.fail(node, code, f"{where} must be settings, or a list of them", example)
    if len(items) > MAX_HOOKS:
        code = "notify-config-webhook" if where.endswith("webhook") else "notify-config-slack"
        parser.fail(node, code, f"{where} lists {len(items)}; at most {MAX_HOOKS}", example)
    return items


def _webhook(parser: _Parser, node: Node, where: str, listed: bool, index: int) -> Webhook:
    label = f"{where}[{index}]" if listed else where
    entries = parser.entries(node, label, WEBHOOK_KEYS)
    code = "notify-config-webhook"
    if "url" not in entries:
        parser.fail(node, code, f"{label}.url is missing", WEBHOOK_EXAMPLE)
    url_node = entries["url"][1]
    url = _url(parser, url_node, f"{label}.url")
    auth = "standard"
    if "auth" in entries:
        auth = (parser.text(entries["auth"][1], f"{label}.auth") or "").strip()
        if auth not in SECRET_KEYS:
            parser.fail(
                entries["auth"][1],
                code,
                f"{label}.auth must be standard, bearer or oauth2, not {auth[:40]!r}",
                "standard signs each post (Standard Webhooks); bearer sends a token; oauth2 "
                "fetches one with client credentials.",
            )
    wanted = SECRET_KEYS[auth]
    for other in set(SECRET_KEYS.values()) - {wanted}:
        if other in entries:
            parser.fail(
                entries[other][0],
                code,
                f"{label}.{other} is not used with auth {auth}: it takes {wanted}",
                f"Write the secret as {wanted}: $NAME.",
            )
    oauth_keys = ("token_url", "client_id", "scope")
    if auth != "oauth2":
        for key in oauth_keys:
            if key in entries:
                parser.fail(
                    entries[key][0], code, f"{label}.{key} is only for auth oauth2", WEBHOOK_EXAMPLE
                )
    if wanted not in entries:
        parser.fail(
            node,
            code,
            f"{label}.{wanted} is missing",
            f"Name the environment variable that holds it: {wanted}: $HOOK_SECRET.",
        )
    secret = _reference(parser, entries[wanted][1], f"{label}.{wanted}")
    if auth != "oauth2":
        return Webhook(url, auth, secret)
    for key in ("token_url", "client_id"):
        if key not in entries:
            parser.fail(
                node, code, f"{label}.{key} is missing (auth oauth2 needs it)", WEBHOOK_EXAMPLE
            )
    token_url = _url(parser, entries["token_url"][1], f"{label}.token_url")
    client_id = (parser.text(entries["client_id"][1], f"{label}.client_id") or "").strip()
    if not client_id or len(client_id) > 256 or not client_id.isprintable():
        parser.fail(entries["client_id"][1], code, f"{label}.client_id must be one line of text")
    scope = ""
    if "scope" in entries:
        scope = (parser.text(entries["scope"][1], f"{label}.scope") or "").strip()
        if len(scope) > 512 or not scope.isprintable():
            parser.fail(entries["scope"][1], code, f"{label}.scope must be one line of text")
    return Webhook(url, auth, secret, token_url, client_id, scope)


def _url(parser: _Parser, node: Node, label: str) -> str:
    url = (parser.text(node, label) or "").strip()
    problem = url_problem(url, allow_loopback=True)
    if problem:
        parser.fail(
            node,
            "notify-config-webhook",
            f"{label} {problem}",
            "Give the receiver's https:// URL, with no password in it (use auth for that).",
        )
    return url


def _reference(parser: _Parser, node: Node, label: str) -> str:
    """The environment variable a secret comes from; a value written out is refused unseen."""
    value = (parser.text(node, label) or "").strip()
    matched = REFERENCE.fullmatch(value)
    if matched is None:
        parser.fail(
            node,
            "notify-config-secret-in-file",
            f"{label} must name an environment variable, e.g. $HOOK_SECRET (capitals, digits "
            "and _), not hold the secret",
            "Secrets never go in this file: put the value in an environment variable and write "
            "its name here with a $; `notify deploy` stores it in SSM.",
        )
    return matched.group(1) or matched.group(2)


# -- at deploy --------------------------------------------------------------------------------


def every_hook(config: NotifyConfig) -> list[tuple[str, ClickSettings]]:
    """Each click type (defaults and buttons) that has webhooks or Slack posts, with its place."""
    found = [(f"clicks.{c}", item) for c, item in config.clicks.items()]
    found += [
        (f"buttons.{serial}.clicks.{c}", item)
        for serial, button in config.buttons.items()
        for c, item in button.clicks.items()
    ]
    return [(where, item) for where, item in found if item.webhooks or item.slack]


def secret_names(config: NotifyConfig) -> dict[str, str]:
    """Each secret the hooks name, with what it is for (the first use of it)."""
    names: dict[str, str] = {}
    for where, item in every_hook(config):
        for hook in item.webhooks:
            names.setdefault(hook.secret, f"{where}.webhook ({hook.auth})")
        for slack in item.slack:
            names.setdefault(slack.secret, f"{where}.slack")
    return names


def missing_secrets(config: NotifyConfig, environ: Mapping[str, str] = os.environ) -> list[str]:
    return [name for name in secret_names(config) if not (environ.get(name) or "").strip()]


def hook_secrets(
    config: NotifyConfig, sandbox: bool = False, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The hook secrets from the environment, each checked for what it is used as."""
    refuse_loopback(config, sandbox)
    found: dict[str, str] = {}
    for name, use in secret_names(config).items():
        value = (environ.get(name) or "").strip()
        if not value:
            raise usage_error(
                "notify-hook-secret-missing",
                f"{name} is not set; {use} needs it",
                f"Set it in this shell (export {name}=...) and deploy again.",
            )
        found[name] = value
    for _where, item in every_hook(config):
        for hook in item.webhooks:
            if hook.auth == "standard":
                check_signing_secret(hook.secret, found[hook.secret])
            elif not all("!" <= char <= "~" for char in found[hook.secret]):
                raise usage_error(
                    "notify-hook-secret-bad",
                    f"{hook.secret} has a space or a character an HTTP header cannot carry",
                    "A token or client secret is printable ASCII without spaces: copy it again.",
                )
        for slack in item.slack:
            problem = url_problem(found[slack.secret], allow_loopback=sandbox)
            if problem:  # the URL is the credential: never shown
                raise usage_error(
                    "notify-hook-secret-bad",
                    f"the Slack webhook URL in {slack.secret} {problem}",
                    "Copy the incoming webhook's URL from Slack (https://hooks.slack.com/...).",
                )
    return found


def check_signing_secret(name: str, value: str) -> None:
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    low, high = SIGNING_KEY_BYTES
    if not value.startswith("whsec_") or not low <= len(key) <= high:
        raise usage_error(
            "notify-hook-secret-bad",
            f"{name} is not a Standard Webhooks signing secret (whsec_ and base64 of "
            f"{low} to {high} bytes)",
            NEW_SECRET_HINT,
        )


def refuse_loopback(config: NotifyConfig, sandbox: bool) -> None:
    """Loopback is the sandbox's sink; inside Lambda it is Lambda's own runtime API."""
    if sandbox:
        return
    for where, item in every_hook(config):
        for hook in item.webhooks:
            for url in (hook.url, hook.token_url):
                problem = url and url_problem(url)
                if problem:
                    raise usage_error(
                        "notify-config-webhook",
                        f"{config.path}: {where}.webhook: {shown_url(url)[:80]} {problem}",
                        "Loopback and http URLs are for the sandbox (iotbutton --sandbox ...); "
                        "give an https:// URL the function can reach.",
                    )


def stored_secret(twilio_secret: str, hooks: Mapping[str, str]) -> str:
    """What goes in the SSM parameter, refused when it would not fit."""
    value = join_secret(twilio_secret, hooks)
    if len(value.encode()) > STORED_SECRET_MAX_BYTES:
        raise usage_error(
            "notify-hook-secret-bad",
            f"the Twilio and hook secrets together are {len(value.encode()):,} bytes; an SSM "
            f"parameter holds {STORED_SECRET_MAX_BYTES:,}",
            "Use fewer webhook secrets: several webhooks may share one.",
        )
    return value


def documents(hooks: Iterable[Webhook]) -> list[dict[str, str]]:
    from iotbutton_cli.notifier_lambda.hook_settings import webhook_document

    return [webhook_document(hook) for hook in hooks]
