"""POST a click to webhooks and its message to Slack, as SMS and calls go to Twilio.

A webhook gets the click as JSON, ``{"type": "iotbutton.click", "timestamp", "data": {...}}``,
authenticated one of three ways:

- ``standard``: signed per the Standard Webhooks specification: ``webhook-id`` (the same for
  every attempt at one alarm's delivery, so a receiver that saw it already can drop it),
  ``webhook-timestamp`` (this attempt's, in seconds) and ``webhook-signature``
  (``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body`` keyed with the ``whsec_`` secret's
  decoded bytes);
- ``bearer``: ``Authorization: Bearer <token>``;
- ``oauth2``: a token from the client-credentials grant (RFC 6749 §4.4; the client id and secret
  in HTTP Basic, §2.3.1), cached in this container until shortly before it expires, and fetched
  again once when the webhook answers 401.

A Slack incoming webhook gets ``{"text": message}``. Each request is tried up to
``MAX_ATTEMPTS`` times within the invocation's time, on 429, 5xx and network errors, like
Twilio's; redirects are not followed (a redirect could take the alarm and its token elsewhere);
a 4xx is final. The outcome is a :class:`~.twilio.TwilioOutcome` so the ledger, retries and
history treat a hook as they treat an SMS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import twilio
from .hook_settings import Slack, Webhook, shown_url, url_problem
from .text import printable
from .twilio import TwilioOutcome

MAX_ATTEMPTS = 3
SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix every signing secret has
EVENT_TYPE = "iotbutton.click"
# A token is used until this long before it expires (its expires_in, as the server said).
TOKEN_MARGIN_SECONDS = 30
TOKEN_DEFAULT_SECONDS = 300  # a token answer without expires_in
ANSWER_MAX_BYTES = 64 * 1024
ERROR_BODY_BYTES = 200
USER_AGENT = "iotbutton-notifier"

wall_clock = time.time  # the signature's timestamp; tests may move it
_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}  # (token_url, id, scope): token, until
_tokens_lock = threading.Lock()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is then raised as an HTTPError: a failure, not followed


_opener = urllib.request.build_opener(_NoRedirects)


def signing_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for (ValueError if it is not one)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def message_id(alarm_id: str, target: str) -> str:
    """One alarm's delivery to one hook: the same on every attempt and every Lambda retry."""
    digest = hashlib.sha256(f"{alarm_id}\n{target}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def forget_tokens() -> None:
    with _tokens_lock:
        _tokens.clear()


@dataclass
class HookSender:
    """Sends one invocation's webhook and Slack posts, within its time."""

    secrets: Mapping[str, str] = field(repr=False)
    timeout: float
    deadline: float | None = None
    allow_loopback: bool = False

    def post_webhook(
        self, hook: Webhook, alarm_id: str, payload: Mapping[str, Any]
    ) -> TwilioOutcome:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        problem = self._refused(hook.url, shown_url(hook.url)) or (
            self._refused(hook.token_url, shown_url(hook.token_url))
            if hook.auth == "oauth2"
            else None
        )
        if problem:
            return problem
        secret = self.secrets.get(hook.secret)
        if not secret:
            return _final(f"the deployed secret has no {hook.secret}: `notify deploy` with it set")
        identity = message_id(alarm_id, hook.target)
        sent: list[str] = []  # the token this attempt sent, if it was one already cached

        def headers() -> dict[str, str] | TwilioOutcome:
            sent.clear()
            found = {"Content-Type": "application/json", "webhook-id": identity}
            if hook.auth == "standard":
                now = int(wall_clock())
                try:
                    found["webhook-signature"] = signature(secret, identity, now, body)
                except ValueError:
                    return _final(f"{hook.secret} is not a whsec_ signing secret")
                found["webhook-timestamp"] = str(now)
            elif hook.auth == "bearer":
                found["Authorization"] = f"Bearer {secret}"
            else:
                token = self._token(hook, secret)
                if isinstance(token, TwilioOutcome):
                    return token
                found["Authorization"] = f"Bearer {token[0]}"
                if token[1]:
                    sent.append(token[0])
            return found

        outcome = self._post(hook.url, body, headers)
        if hook.auth == "oauth2" and outcome.http_status == 401 and sent:
            self._drop_token(hook, sent[0])  # revoked or expired early: one fresh token, once
            outcome = self._post(hook.url, body, headers)
        if outcome.ok:
            outcome.sid = identity
        return outcome

    def post_slack(self, slack: Slack, text: str) -> TwilioOutcome:
        url = self.secrets.get(slack.secret)
        if not url:
            return _final(f"the deployed secret has no {slack.secret}: `notify deploy` with it set")
        problem = self._refused(url, f"the URL in {slack.secret}")  # the URL is the secret
        if problem:
            return problem
        body = json.dumps({"text": text}, ensure_ascii=False).encode()
        return self._post(url, body, lambda: {"Content-Type": "application/json"})

    # -- pieces ------------------------------------------------------------------------------

    def _refused(self, url: str, label: str) -> TwilioOutcome | None:
        problem = url_problem(url, self.allow_loopback)
        return None if problem is None else _final(f"{label} {problem}")

    def _post(self, url: str, body: bytes, headers: Any) -> TwilioOutcome:
        outcome = TwilioOutcome(ok=False)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            timeout = self._attempt_timeout()
            if timeout is None:
                outcome.message = outcome.message or "no time left in this invocation"
                outcome.retryable = True
                break
            made = headers()
            if isinstance(made, TwilioOutcome):
                return made
            outcome = self._request(url, body, made, timeout)
            outcome.attempts = attempt
            if outcome.ok or not outcome.retryable or attempt == MAX_ATTEMPTS:
                break
            delay = twilio.backoff_delay(attempt)
            if self.deadline is not None and self.deadline - twilio.monotonic() - delay < 1:
                break
            twilio.sleep(delay)
        return outcome

    def _attempt_timeout(self) -> float | None:
        return twilio.attempt_timeout(self.timeout, self.deadline)

    def _request(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TwilioOutcome:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked: http(s) only
            url, data=body, method="POST", headers={"User-Agent": USER_AGENT, **headers}
        )
        try:
            with _opener.open(request, timeout=timeout) as response:
                return TwilioOutcome(ok=True, http_status=response.status, status="delivered")
        except urllib.error.HTTPError as error:
            answer = _start_of(error).decode("utf-8", "replace")
            said = f": {printable(answer, 120)}" if answer.strip() else ""
            retryable = error.code == 429 or error.code >= 500
            return TwilioOutcome(
                ok=False,
                message=f"HTTP {error.code}{said}",
                retryable=retryable,
                http_status=error.code,
            )
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return TwilioOutcome(ok=False, message=f"network error: {trouble(exc)}", retryable=True)
        except ValueError:  # a URL or header http.client will not send: never shown (secrets)
            return _final("the URL or a header cannot be sent as it is")

    def _token(self, hook: Webhook, secret: str) -> tuple[str, bool] | TwilioOutcome:
        """A token for ``hook`` and whether it came from the cache, or why there is none."""
        key = (hook.token_url, hook.client_id, hook.scope)
        now = twilio.monotonic()
        with _tokens_lock:
            cached = _tokens.get(key)
        if cached is not None and cached[1] > now:
            return cached[0], True
        form = {"grant_type": "client_credentials", **({"scope": hook.scope} if hook.scope else {})}
        # RFC 6749 2.3.1: each form-urlencoded, then HTTP Basic.
        basic = f"{urllib.parse.quote_plus(hook.client_id)}:{urllib.parse.quote_plus(secret)}"
        headers = {
            "Authorization": "Basic " + base64.b64encode(basic.encode()).decode("ascii"),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        timeout = self._attempt_timeout()
        if timeout is None:
            return TwilioOutcome(ok=False, message="no time left for a token", retryable=True)
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked: http(s) only
            hook.token_url,
            data=urllib.parse.urlencode(form).encode(),
            method="POST",
            headers=headers,
        )
        try:
            with _opener.open(request, timeout=timeout) as response:
                answer = twilio.json_object(response.read(ANSWER_MAX_BYTES))
        except urllib.error.HTTPError as error:
            said = twilio.json_object(_start_of(error)).get("error")
            detail = f" ({printable(said, 60)})" if isinstance(said, str) else ""
            return TwilioOutcome(
                ok=False,
                message=f"token endpoint answered HTTP {error.code}{detail}",
                retryable=error.code == 429 or error.code >= 500,
                http_status=error.code,
            )
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return TwilioOutcome(
                ok=False, message=f"token endpoint: {trouble(exc)}", retryable=True
            )
        except ValueError:
            return _final("the token request cannot be sent as it is")
        token, lifetime = (
            answer.get("access_token"),
            answer.get("expires_in", TOKEN_DEFAULT_SECONDS),
        )
        if not isinstance(token, str) or not token or not token.isprintable():
            return _final("the token endpoint's answer has no access_token")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = TOKEN_DEFAULT_SECONDS
        with _tokens_lock:
            _tokens[key] = (token, now + max(0.0, float(lifetime) - TOKEN_MARGIN_SECONDS))
        return token, False

    def _drop_token(self, hook: Webhook, refused: str) -> None:
        """Forget the token the webhook refused (not one another thread fetched since)."""
        key = (hook.token_url, hook.client_id, hook.scope)
        with _tokens_lock:
            if _tokens.get(key, ("",))[0] == refused:
                del _tokens[key]


def trouble(exc: BaseException) -> str:
    """What went wrong on the network, without the exception's own text (which can quote the
    URL, and a Slack URL or a query string is a secret)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{type(reason).__name__}: {reason.strerror}"
    return type(reason).__name__


def _start_of(error: urllib.error.HTTPError) -> bytes:
    """The first bytes of an error's answer (a receiver that drips its body is not waited for)."""
    try:
        return bytes(error.read(ERROR_BODY_BYTES))
    except (OSError, http.client.HTTPException, ValueError):
        return b""


def _final(message: str) -> TwilioOutcome:
    """A failure no retry would change."""
    return TwilioOutcome(ok=False, message=message, retryable=False)
