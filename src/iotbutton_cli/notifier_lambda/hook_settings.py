"""Webhooks and Slack as the messaging config carries them, and how their secrets are stored.

A click type may POST the click to webhooks and the message to Slack incoming webhooks, beside its
SMS and calls. The config names each secret (a Standard Webhooks signing secret, a bearer token,
an OAuth 2 client secret, a Slack webhook URL, which is itself a credential) by the environment
variable ``notify deploy`` read it from; the values travel only in the SSM SecureString, together
with the Twilio secret::

    "webhooks": [{"url": "https://hooks.example.com/iotbutton", "auth": "standard",
                  "secret": "HOOK_SECRET"}],
    "slack": [{"secret": "SLACK_WEBHOOK_URL"}]

``auth`` is ``standard`` (Standard Webhooks signature headers), ``bearer`` (``Authorization:
Bearer``) or ``oauth2`` (a client-credentials token from ``token_url`` with ``client_id`` and
``scope``). The stored secret is the Twilio secret alone when there are no hook secrets (as every
deploy before them stored), else a JSON object ``{"twilio": ..., "hooks": {NAME: value}}``.

Standard library only: this runs inside Lambda too.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

HOOK_AUTHS = ("standard", "bearer", "oauth2")
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
MAX_HOOKS = 5  # webhooks, and Slack posts, per click type
URL_MAX_CHARS = 900  # the ledger keys a delivery by it, and DynamoDB's sort key holds 1 KB
SCOPE_MAX_CHARS = 512
CLIENT_ID_MAX_CHARS = 256
LOOPBACK_NAMES = ("localhost",)
# SSM's standard tier holds 4 KB: the Twilio secret and every hook secret together.
STORED_SECRET_MAX_BYTES = 4096
WEBHOOK_CHANNEL = "webhook"
SLACK_CHANNEL = "slack"
HOOK_CHANNELS = (WEBHOOK_CHANNEL, SLACK_CHANNEL)


class HookSettingsError(ValueError):
    """A webhook or Slack entry the notifier cannot use."""


@dataclass(frozen=True)
class Webhook:
    url: str
    auth: str
    secret: str  # the name of the secret: the signing secret, bearer token or client secret
    token_url: str = ""
    client_id: str = ""
    scope: str = ""

    @property
    def target(self) -> str:
        """How the ledger and history name it: the URL without its query (which may carry a
        token the receiver asked for)."""
        return shown_url(self.url)


@dataclass(frozen=True)
class Slack:
    secret: str  # the name of the secret that is the incoming-webhook URL

    @property
    def target(self) -> str:
        return f"slack:{self.secret}"


def shown_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def url_problem(url: str, allow_loopback: bool = False) -> str | None:
    """Why ``url`` may not receive a click, or None: https only (an alarm's details and its
    token must not cross a network in the clear), no user name or password in it (a secret in
    a file), and never a loopback address on AWS (inside Lambda that is Lambda's own runtime
    API); the sandbox allows http and https to loopback."""
    if len(url.encode()) > URL_MAX_CHARS:
        return f"is longer than {URL_MAX_CHARS} bytes"
    if any(char <= " " or char == "\x7f" for char in url):
        return "has a space or control character in it"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return "is not an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "has a user name or password in it"
    if parts.fragment:
        return "has a #fragment, which is never sent"
    address = _address(host)
    if address is not None and (address.is_link_local or address.is_unspecified):
        return "is a link-local or unspecified address"
    loopback = _is_loopback(host, address)
    if loopback and not allow_loopback:
        return "is a loopback address, which only the sandbox can reach"
    if parts.scheme == "http" and not (loopback and allow_loopback):
        return "is not an https:// URL" + (
            " (http is for loopback, in the sandbox)" if allow_loopback else ""
        )
    return None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` is, in any of the spellings a resolver reads as one (``127.1``,
    ``0x7f000001``, ``2130706433``, a trailing dot), or None for a name."""
    bare = host.rstrip(".")
    try:
        found = ipaddress.ip_address(bare)
    except ValueError:
        try:
            found = ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _is_loopback(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    name = host.lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    return address is not None and address.is_loopback


def parse_hooks(
    where: str, value: Mapping[str, object]
) -> tuple[tuple[Webhook, ...], tuple[Slack, ...]]:
    """A click type's ``webhooks`` and ``slack`` lists from the messaging config."""
    webhooks = tuple(
        _webhook(f"{where}.webhooks[{index}]", item)
        for index, item in enumerate(_listed(where, "webhooks", value.get("webhooks", [])))
    )
    slack = tuple(
        _slack(f"{where}.slack[{index}]", item)
        for index, item in enumerate(_listed(where, "slack", value.get("slack", [])))
    )
    return webhooks, slack


def _listed(where: str, name: str, listed: object) -> list[object]:
    if not isinstance(listed, list) or len(listed) > MAX_HOOKS:
        raise HookSettingsError(f"{where}.{name} must be a list of at most {MAX_HOOKS} entries")
    return listed


def _webhook(where: str, item: object) -> Webhook:
    if not isinstance(item, dict):
        raise HookSettingsError(f"{where} must be an object")
    url, auth, secret = item.get("url"), item.get("auth"), item.get("secret")
    if not isinstance(url, str) or url_problem(url, allow_loopback=True):
        raise HookSettingsError(f"{where}.url must be an http(s) URL")
    if auth not in HOOK_AUTHS:
        raise HookSettingsError(f"{where}.auth must be one of {', '.join(HOOK_AUTHS)}")
    _secret_name(where, secret)
    token_url, client_id, scope = (item.get(key, "") for key in ("token_url", "client_id", "scope"))
    if auth == "oauth2":
        if not isinstance(token_url, str) or url_problem(token_url, allow_loopback=True):
            raise HookSettingsError(f"{where}.token_url must be an http(s) URL")
        if not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX_CHARS:
            raise HookSettingsError(f"{where}.client_id must be a non-empty string")
        if not isinstance(scope, str) or len(scope) > SCOPE_MAX_CHARS:
            raise HookSettingsError(f"{where}.scope must be a string")
    elif token_url or client_id or scope:
        raise HookSettingsError(f"{where}: token_url, client_id and scope are for auth oauth2")
    return Webhook(url, str(auth), str(secret), str(token_url), str(client_id), str(scope))


def _slack(where: str, item: object) -> Slack:
    if not isinstance(item, dict):
        raise HookSettingsError(f"{where} must be an object")
    secret = item.get("secret")
    _secret_name(where, secret)
    return Slack(str(secret))


def _secret_name(where: str, name: object) -> None:
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise HookSettingsError(f"{where}.secret must name an environment variable")


def webhook_document(hook: Webhook) -> dict[str, str]:
    document = {"url": hook.url, "auth": hook.auth, "secret": hook.secret}
    if hook.auth == "oauth2":
        document.update(token_url=hook.token_url, client_id=hook.client_id)
        if hook.scope:
            document["scope"] = hook.scope
    return document


# -- the stored secret -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSecret:
    twilio: str
    hooks: Mapping[str, str]


def join_secret(twilio: str, hooks: Mapping[str, str]) -> str:
    """What the SSM parameter holds: the Twilio secret alone, as before, when no hook needs one."""
    if not hooks:
        return twilio
    return json.dumps(
        {"twilio": twilio, "hooks": dict(sorted(hooks.items()))}, separators=(",", ":")
    )


def split_secret(value: str) -> StoredSecret:
    """The Twilio secret and the hook secrets from the stored value (a Twilio auth token or API
    key secret is never JSON: it is letters and digits)."""
    if not value.startswith("{"):
        return StoredSecret(value, {})
    try:
        document = json.loads(value)
    except ValueError:
        raise HookSettingsError("the stored secret is not the JSON it starts as") from None
    twilio, hooks = (
        document.get(key) if isinstance(document, dict) else None for key in ("twilio", "hooks")
    )
    if not isinstance(twilio, str) or not isinstance(hooks, dict):
        raise HookSettingsError("the stored secret has no twilio or no hooks")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in hooks.items()):
        raise HookSettingsError("the stored secret's hooks are not all text")
    return StoredSecret(twilio, hooks)
