"""A webhook sink on loopback: what each webhook, Slack post and token request would have received.

The notifier posts clicks to webhooks (signed per Standard Webhooks, or with a bearer token, or
with an OAuth 2 client-credentials token) and to Slack incoming webhooks; in the sandbox those
URLs point here. The sink answers as a receiver would and records every request it accepts:

* ``POST /hooks/<name>`` (``name``: :data:`NAME`): any body; ``200 {"received": true}``.
* ``POST /slack/<name>``: as a Slack incoming webhook: a JSON object with a non-empty string
  ``text``; ``200`` text/plain ``ok``, else ``400`` ``invalid_payload`` (not a JSON object, or
  ``text`` not a string) or ``no_text``.
* ``POST /oauth/token``: an OAuth 2 token endpoint for the client-credentials grant (RFC 6749
  §4.4): a form body with ``grant_type=client_credentials`` and an optional ``scope``; the client
  authenticates with HTTP Basic (its id and secret each form-urlencoded first, §2.3.1) or with
  ``client_id``/``client_secret`` form fields, not both. Any client is accepted (it is a sink):
  ``200 {"access_token", "token_type": "Bearer", "expires_in"}``; ``400 invalid_request`` for a
  form that is not one, ``400 unsupported_grant_type`` for another grant, ``401 invalid_client``
  (with ``WWW-Authenticate``) without client credentials, or with a Basic header that is not one.
  Every answer carries ``Cache-Control: no-store`` (§5.1).

Any other path is 404, another method on these 405, a body over :data:`MAX_BODY_BYTES` 413 (a
body sent chunked 411): none of those is recorded, nor read.

Each entry (:meth:`WebhookSink.entries`, and a JSON line in ``hooks.jsonl`` in the state folder,
0600) has ``seq`` (1, 2, ...: never reused while the sink runs), ``kind`` ("webhook", "slack" or
"oauth-token"), ``name`` (None for a token request), ``method``, ``path`` (as requested, query
included), ``headers`` (every header, names lowercased, repeated ones joined with ", ", and
``authorization`` cut to its scheme and the credential's last 4 characters: :func:`redacted`),
``body`` (the bytes as UTF-8 text, a replacement character for each bad byte; kept exactly, so a
receiver's signature check can run over it), ``received_at`` (epoch seconds), ``time`` (the same,
ISO 8601 UTC, as the Twilio outbox's entries), ``http_status`` (what it answered) and ``forced``
(whether a control chose that answer). A webhook or Slack post also has ``bearer``: for
``Authorization: Bearer X``, "issued" (a token this sink issued that is still live), "expired"
(issued, past its lifetime) or "unknown"; None without a bearer token. A token request also has
``grant_type``, ``scope``, ``client_id`` and ``client_auth`` ("basic", "form" or None): never the
client secret, which is also taken out of the recorded ``body``. The sink keeps the last
:data:`KEEP_ENTRIES` entries (and at most :data:`KEEP_BYTES` of them); the file is rewritten
with those when it has grown past twice that.

Controls live in ``hooks.json`` beside them (:class:`Controls`), as the Twilio stand-in's phone
table lives in ``phones.json``: every local user can reach loopback ports, but only the sandbox's
owner can write its 0700 state folder, so a file there is the control, and nothing over HTTP
changes what the sink does. The file is read at each request (a post to a name whose answer is
set takes one of its ``times``, rewriting the file under the folder's lock), never through a
symbolic link, and never in a folder another user could write (``paths.open_private_dir``); one
that cannot be read or parsed is logged and ignored::

    {"token_lifetime": 60, "hooks": {"crm": {"status": 503, "times": 2}}}

A name's answer applies to ``/hooks/<name>`` and ``/slack/<name>`` alike.

Standard library only (and ``iotbutton_cli.paths``, imported when a file is touched).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

logger = logging.getLogger(__name__)

ENTRIES_FILE = "hooks.jsonl"
CONTROLS_FILE = "hooks.json"
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
ROUTE = re.compile(r"/(?P<kind>hooks|slack)/(?P<name>[^/]*)")
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
KINDS = {"hooks": "webhook", "slack": "slack"}
TOKEN_KIND = "oauth-token"  # noqa: S105 - an entry kind
MAX_BODY_BYTES = 256 * 1024
KEEP_ENTRIES = 1000
KEEP_BYTES = 32 * 1024 * 1024
# Issued tokens remembered (to tell a bearer "issued" or "expired"); the oldest are forgotten.
KEEP_TOKENS = 10_000
DEFAULT_TOKEN_LIFETIME = 3600
MAX_TOKEN_LIFETIME = 7 * 24 * 3600
MIN_STATUS, MAX_STATUS = 200, 599
MAX_TIMES = 1000
# A credential this short would be mostly shown by its last 4 characters: none of it is.
REDACT_BELOW = 12
REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization"})
IDLE_TIMEOUT_SECONDS = 15.0
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
NO_STORE: tuple[tuple[str, str], ...] = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


# -- controls (hooks.json) ---------------------------------------------------------------------


@dataclass(frozen=True)
class HookAnswer:
    """Answer the next ``times`` posts to a name with HTTP ``status``."""

    status: int
    times: int

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"status must be a whole number, got {_shown(self.status)}")
        if not MIN_STATUS <= self.status <= MAX_STATUS:
            raise ValueError(f"status must be {MIN_STATUS} to {MAX_STATUS}, got {self.status}")
        if isinstance(self.times, bool) or not isinstance(self.times, int):
            raise ValueError(f"times must be a whole number, got {_shown(self.times)}")
        if not 1 <= self.times <= MAX_TIMES:
            raise ValueError(f"times must be 1 to {MAX_TIMES}, got {self.times}")


@dataclass
class Controls:
    """What ``hooks.json`` says: the access tokens' lifetime, and the names whose next posts get
    another answer than usual."""

    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    hooks: dict[str, HookAnswer] = field(default_factory=dict)

    def set_answer(self, name: str, status: int, times: int = 1) -> None:
        """``status`` for the next ``times`` posts to ``name``; 200 forgets the name."""
        if status == HTTPStatus.OK:
            self.hooks.pop(name, None)
        else:
            self.hooks[name] = HookAnswer(status, times)


def check_token_lifetime(seconds: Any) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError(f"token_lifetime must be a whole number, got {_shown(seconds)}")
    if not 1 <= seconds <= MAX_TOKEN_LIFETIME:
        raise ValueError(f"token_lifetime must be 1 to {MAX_TOKEN_LIFETIME} s, got {seconds}")
    return seconds


def parse_controls(text: str) -> Controls:
    """The controls in ``hooks.json``'s format; ValueError (naming what is wrong) if not."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply to be the sink's controls") from None
    if not isinstance(data, dict):
        raise ValueError('hooks.json must hold an object: {"token_lifetime": ..., "hooks": ...}')
    unknown = sorted(set(data) - {"token_lifetime", "hooks"})
    if unknown:
        raise ValueError(f"unknown key {_shown(unknown[0])}")
    lifetime = check_token_lifetime(data.get("token_lifetime", DEFAULT_TOKEN_LIFETIME))
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict):
        raise ValueError("hooks must be an object: name -> {status, times}")
    answers = {}
    for name, value in hooks.items():
        if not NAME.fullmatch(name):
            raise ValueError(f"{_shown(name)} is not a hook name")
        if not isinstance(value, dict) or set(value) - {"status", "times"} or "status" not in value:
            raise ValueError(f"{name}: must be an object with status and times")
        try:
            answers[name] = HookAnswer(value["status"], value.get("times", 1))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return Controls(lifetime, answers)


def dump_controls(controls: Controls) -> str:
    """``hooks.json``'s text (names sorted)."""
    data = {
        "token_lifetime": controls.token_lifetime,
        "hooks": {
            name: {"status": answer.status, "times": answer.times}
            for name, answer in sorted(controls.hooks.items())
        },
    }
    return json.dumps(data, indent=2) + "\n"


def read_controls(folder: Path) -> Controls:
    """The controls in ``folder`` (the defaults without a file). OSError if the file cannot be
    read (``twilio_phones.is_link_error`` for a link), ValueError if it is not the controls,
    ``IotButtonError`` if the folder is not safely the user's."""
    with _folder(folder) as folder_fd:
        return _read_at(folder_fd)


def change_controls(folder: Path, change: Callable[[Controls], None]) -> Controls:
    """Read the controls, let ``change`` edit them, and write them back if they changed (a 0600
    temporary file, then renamed over it), under a lock on the folder, so neither two commands
    nor a command and the sink lose each other's change. Returns the controls now."""
    from iotbutton_cli.paths import write_private_file

    with _folder(folder) as folder_fd:
        _lock(folder_fd)
        controls = _read_at(folder_fd)
        before = dump_controls(controls)
        change(controls)
        after = dump_controls(controls)
        if after != before:
            write_private_file(Path(folder) / CONTROLS_FILE, after)
        return controls


@contextmanager
def _folder(folder: Path) -> Iterator[int]:
    from iotbutton_cli.paths import open_private_dir

    folder_fd = open_private_dir(Path(folder), create=False)
    try:
        yield folder_fd
    finally:
        os.close(folder_fd)  # and with it any lock


def _lock(folder_fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): a lost update needs two writers at once
        return
    fcntl.flock(folder_fd, fcntl.LOCK_EX)


def _read_at(folder_fd: int) -> Controls:
    # The phone table's reader: no link followed, a regular file, 256 KiB at most, UTF-8.
    from iotbutton_cli.sandbox.twilio_phones import read_phones_file

    text = read_phones_file(CONTROLS_FILE, dir_fd=folder_fd)
    return parse_controls(text) if text is not None else Controls()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


# -- what is recorded --------------------------------------------------------------------------


def redacted(value: str) -> str:
    """An Authorization header's scheme and the last 4 characters of its credential
    (``Bearer …9f2c``); a credential under :data:`REDACT_BELOW` characters shows none."""
    scheme, _, credential = value.strip().partition(" ")
    if not credential:  # no scheme: the whole value is the credential
        scheme, credential = "", scheme
    credential = credential.strip()
    tail = credential[-4:] if len(credential) >= REDACT_BELOW else ""
    return f"{scheme} …{tail}" if scheme else f"…{tail}"


def recorded_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        found.setdefault(key, []).append(redacted(value) if key in REDACTED_HEADERS else value)
    return {name: ", ".join(values) for name, values in found.items()}


def header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def bearer_token(headers: Sequence[tuple[str, str]]) -> str | None:
    scheme, _, token = (header(headers, "Authorization") or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Reply:
    """One answer: status, content type, body and extra headers; ``record``: the entry's
    request-specific fields, or None when the request is not recorded."""

    status: int
    content_type: str | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    record: dict[str, Any] | None = None
    close: bool = False


def json_reply(status: int, payload: Mapping[str, Any], **extra: Any) -> Reply:
    return Reply(status, JSON_TYPE, json.dumps(payload).encode(), **extra)


def text_reply(status: int, text: str, **extra: Any) -> Reply:
    return Reply(status, TEXT_TYPE, text.encode(), **extra)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# -- the server ---------------------------------------------------------------------------------


class WebhookSink:
    """An HTTP server on loopback that takes webhook, Slack and token requests and records them.

    ``state_dir`` holds its controls (``hooks.json``) and its entries (``hooks.jsonl``, created
    0600; the sandbox's server deletes it at start, as it does the Twilio outbox). ``clock``
    gives epoch seconds: entries' times and tokens' lifetimes (tests may pass their own).
    ``start()`` returns the base URL, ``http://127.0.0.1:<port>``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        keep: int = KEEP_ENTRIES,
        keep_bytes: int = KEEP_BYTES,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._address = (host, port)
        self._clock = clock
        self.idle_timeout = idle_timeout
        self._keep, self._keep_bytes = keep, keep_bytes
        self._lock = threading.Lock()
        self._entries: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self._kept_bytes = 0
        self._file_lines = self._file_bytes = 0
        self._seq = 0
        self._tokens: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._reported: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            server = _Server(self._address, _RequestHandler)
            self.entries_path.unlink(missing_ok=True)  # a new sink has received nothing
            server.sink = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="webhook-sink",
                daemon=True,
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> WebhookSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the webhook sink is not running")
        return int(self._server.server_address[1])

    @property
    def entries_path(self) -> Path:
        return self.state_dir / ENTRIES_FILE

    def entries(self) -> list[dict[str, Any]]:
        """The entries kept, oldest first (see the module's docstring for their keys)."""
        with self._lock:
            return [dict(entry) for entry, _ in self._entries]

    # -- answering ---------------------------------------------------------------------------

    def refuse_before_body(self, method: str, target: str, length: int | None) -> Reply | None:
        """The answer that needs no body (a path not served, another method, a body too big or
        chunked, a bad Content-Length), or None: then read the body and call :meth:`answer`."""
        path = urlsplit(target).path
        route = ROUTE.fullmatch(path)
        if not (path == TOKEN_PATH or (route and NAME.fullmatch(route["name"]))):
            return json_reply(404, {"error": "not_found"}, close=True)
        if method != "POST":
            return json_reply(
                405, {"error": "method_not_allowed"}, headers=(("Allow", "POST"),), close=True
            )
        if length is None:
            return json_reply(400, {"error": "bad_content_length"}, close=True)
        if length < 0:
            return json_reply(411, {"error": "length_required"}, close=True)
        if length > MAX_BODY_BYTES:
            return json_reply(413, {"error": "payload_too_large"}, close=True)
        return None

    def answer(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Reply:
        """Decide the answer to one request and record it. Safe to call from many threads."""
        refused = self.refuse_before_body(method, target, len(body))
        if refused is not None:
            return refused
        path = urlsplit(target).path
        if path == TOKEN_PATH:
            reply = self._token(headers, body)
        else:
            route = ROUTE.fullmatch(path)
            assert route is not None  # refuse_before_body let it through
            reply = self._post(KINDS[route["kind"]], route["name"], headers, body)
        if reply.record is not None:
            self._record(method, target, headers, body, reply)
        return reply

    def _post(self, kind: str, name: str, headers: Sequence[tuple[str, str]], body: bytes) -> Reply:
        token = bearer_token(headers)
        record: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "bearer": self._bearer(token) if token is not None else None,
            "forced": False,
        }
        forced = self._take_answer(name)
        if forced is not None:
            record["forced"] = True
            if kind == "slack":
                text = "ok" if forced < 300 else _phrase(forced).lower().replace(" ", "_")
                return text_reply(forced, "" if forced == 204 else text, record=record)
            if forced < 300:
                return json_reply(forced, {"received": True}, record=record)
            return json_reply(forced, {"received": False, "error": _phrase(forced)}, record=record)
        if kind == "webhook":
            return json_reply(200, {"received": True}, record=record)
        problem = slack_problem(body)
        if problem is not None:
            return text_reply(400, problem, record=record)
        return text_reply(200, "ok", record=record)

    def _token(self, headers: Sequence[tuple[str, str]], body: bytes) -> Reply:
        """RFC 6749 §4.4 (client credentials), §2.3.1 (client authentication), §5 (answers)."""
        form = token_form(header(headers, "Content-Type"), body)
        record: dict[str, Any] = {
            "kind": TOKEN_KIND,
            "name": None,
            "forced": False,
            "grant_type": None,
            "scope": None,
            "client_id": None,
            "client_auth": None,
        }
        if form is None:
            return _oauth_error(400, "invalid_request", "a form-encoded body is required", record)
        record["grant_type"] = _one(form, "grant_type")
        record["scope"] = _one(form, "scope")
        if any(len(form.get(key, ())) > 1 for key in form):  # §3.2: sent at most once
            return _oauth_error(400, "invalid_request", "a parameter is repeated", record)
        authorization = header(headers, "Authorization")
        form_id, form_secret = _one(form, "client_id"), _one(form, "client_secret")
        if authorization is not None:
            basic = basic_client(authorization)
            if basic is None:
                return _oauth_error(401, "invalid_client", "not HTTP Basic credentials", record)
            record["client_id"], record["client_auth"] = basic[0], "basic"
            if form_secret is not None:  # §2.3: one authentication method per request
                return _oauth_error(400, "invalid_request", "client credentials sent twice", record)
        elif form_id and form_secret:
            record["client_id"], record["client_auth"] = form_id, "form"
        else:
            record["client_id"] = form_id
            return _oauth_error(401, "invalid_client", "client authentication failed", record)
        grant = record["grant_type"]
        if grant is None:
            return _oauth_error(400, "invalid_request", "grant_type is missing", record)
        if grant != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", None, record)
        lifetime = self._token_lifetime()
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self._clock() + lifetime
            while len(self._tokens) > KEEP_TOKENS:
                self._tokens.popitem(last=False)
        payload = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        return json_reply(200, payload, headers=NO_STORE, record=record)

    def _bearer(self, token: str) -> str:
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            return "unknown"
        return "issued" if self._clock() < expires else "expired"

    # -- controls ----------------------------------------------------------------------------

    def _take_answer(self, name: str) -> int | None:
        """The status set for the next post to ``name``, taking one of its times; None when
        none is set (or the controls cannot be read: logged)."""
        taken: list[int] = []

        def take(controls: Controls) -> None:
            answer = controls.hooks.get(name)
            if answer is None:
                return
            taken.append(answer.status)
            if answer.times > 1:
                controls.hooks[name] = dataclasses.replace(answer, times=answer.times - 1)
            else:
                del controls.hooks[name]

        if not self._controls_file_exists():
            return None
        try:
            change_controls(self.state_dir, take)
        except Exception as exc:  # OSError, ValueError, IotButtonError: never fatal to a post
            self._report(exc)
            return None
        return taken[0] if taken else None

    def _token_lifetime(self) -> int:
        if not self._controls_file_exists():
            return DEFAULT_TOKEN_LIFETIME
        try:
            return read_controls(self.state_dir).token_lifetime
        except Exception as exc:
            self._report(exc)
            return DEFAULT_TOKEN_LIFETIME

    def _controls_file_exists(self) -> bool:
        # A post to a name with no controls file at all needs no lock.
        return os.path.lexists(self.state_dir / CONTROLS_FILE)

    def _report(self, exc: Exception) -> None:
        from iotbutton_cli.sandbox.twilio_phones import is_link_error

        if isinstance(exc, OSError) and is_link_error(exc):
            problem = "it is a symbolic link, never followed"
        else:
            problem = str(exc)
        if problem != self._reported:
            self._reported = problem
            logger.warning(
                "webhook sink: ignoring %s: %s", self.state_dir / CONTROLS_FILE, problem[:300]
            )

    # -- recording ---------------------------------------------------------------------------

    def _record(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        reply: Reply,
    ) -> None:
        assert reply.record is not None
        text = body.decode("utf-8", errors="replace")
        if reply.record["kind"] == TOKEN_KIND:
            text = without_client_secret(text)
        received = self._clock()
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                **reply.record,
                "method": method,
                "path": target,
                "headers": recorded_headers(headers),
                "body": text,
                "received_at": received,
                "time": iso_time(received),
                "http_status": reply.status,
            }
            line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
            size = len(line.encode("utf-8"))
            self._entries.append((entry, size))
            self._kept_bytes += size
            while len(self._entries) > self._keep or (
                self._kept_bytes > self._keep_bytes and len(self._entries) > 1
            ):
                self._kept_bytes -= self._entries.popleft()[1]
            self._append(line, size)
        logger.info(
            "webhook sink: %s %s -> %s%s",
            method,
            urlsplit(target).path[:200],
            reply.status,
            " (set by `sandbox hook`)" if entry["forced"] else "",
        )

    def _append(self, line: str, size: int) -> None:
        """Append ``line`` to the entries file; once it holds twice what is kept, rewrite it
        with the entries kept (a 0600 temporary file renamed over it). Under ``_lock``."""
        try:
            if self._file_lines >= 2 * self._keep or self._file_bytes >= 2 * self._keep_bytes:
                self._rewrite()
                return
            fd = os.open(self.entries_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(line)
            self._file_lines += 1
            self._file_bytes += size
        except OSError as exc:
            logger.warning("webhook sink: cannot write %s: %s", self.entries_path, exc)

    def _rewrite(self) -> None:
        lines = [json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e, _ in self._entries]
        tmp = self.entries_path.with_name(f".{ENTRIES_FILE}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(lines)
        os.replace(tmp, self.entries_path)
        self._file_lines = len(lines)
        self._file_bytes = self._kept_bytes


def slack_problem(body: bytes) -> str | None:
    """What Slack answers (400, text/plain) for a body that is not a message, or None."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "invalid_payload"
    if not isinstance(payload, dict):
        return "invalid_payload"
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    return None if text and text.strip() else "no_text"


def token_form(content_type: str | None, body: bytes) -> dict[str, list[str]] | None:
    """The token request's form (name -> values), or None if it is not form-encoded UTF-8."""
    if (content_type or "").split(";", 1)[0].strip().lower() != FORM_CONTENT_TYPE:
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def _one(form: Mapping[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def basic_client(authorization: str) -> tuple[str, str] | None:
    """(client_id, client_secret) from HTTP Basic credentials, each form-urlencoded first (RFC
    6749 §2.3.1), or None if the header is not that."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def without_client_secret(text: str) -> str:
    """A token request's form with ``client_secret``'s value taken out (the rest re-encoded)."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True)
    except ValueError:
        return text
    if not any(key == "client_secret" for key, _ in pairs):
        return text
    return urlencode(
        [(key, "redacted" if key == "client_secret" else value) for key, value in pairs]
    )


def _oauth_error(status: int, error: str, description: str | None, record: dict[str, Any]) -> Reply:
    payload = {"error": error}
    if description:
        payload["error_description"] = description
    headers = NO_STORE
    if status == 401:
        headers = (*NO_STORE, ("WWW-Authenticate", 'Basic realm="iotbutton sandbox"'))
    return json_reply(status, payload, headers=headers, record=record)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sink: WebhookSink


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "IotbuttonWebhookSink/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.sink.idle_timeout)

    def _dispatch(self) -> None:
        sink = self.server.sink
        reply = sink.refuse_before_body(self.command, self.path, self._length())
        if reply is None:
            length = self._length() or 0
            body = self.rfile.read(length) if length else b""
            try:
                reply = sink.answer(self.command, self.path, list(self.headers.items()), body)
            except Exception:
                logger.exception("webhook sink failed on %s %s", self.command, self.path[:200])
                reply = json_reply(500, {"error": "internal_error"})
        self._send(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _length(self) -> int | None:
        """The body's length; -1 for a chunked body, None for a Content-Length that is not one."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return -1
        given = (self.headers.get("Content-Length") or "0").strip()
        return int(given) if given.isdigit() else None

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type and reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        body = b"" if reply.status == 204 or self.command == "HEAD" else reply.body
        if reply.status != 204:  # a 204 has no body, and says no length (RFC 9110 §8.6)
            self.send_header("Content-Length", str(len(reply.body)))
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("webhook sink: " + format, *args)
