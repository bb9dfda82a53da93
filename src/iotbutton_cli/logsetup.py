"""Logging for ``-v`` and ``-vv``, with every secret masked before it reaches the terminal.

``-v`` logs each AWS call iotbutton makes (action, HTTP status, retries); ``-vv`` adds botocore's
own debug log, which prints request and response bodies: the Twilio secret in PutParameter, the
decrypted answer to GetParameter, credentials in STS and SSO answers.

Secrets are masked by *structure*, not by searching for their text (a secret with a quote, a
backslash or a non-ASCII character is escaped in a JSON body and would slip past a text search,
and a short one matches too much): before a botocore line is formatted, each body it carries is
parsed (JSON, XML or a form) and every field that holds a secret (``Value``, ``SecretAccessKey``,
``SessionToken``, any ``*secret*``, ``*password*``, ``*token*`` or ``PrivateKey``) becomes
``****``, whatever it holds; so do the ``X-Amz-Security-Token`` and ``Authorization`` headers. A
body that cannot be parsed is not printed at all. As a second line of defence, every line is then
searched for private key blocks and for the values registered with :func:`register_secret`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode

HANDLER_NAME = "iotbutton-cli"
MASK = "****"
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
)
SECRET_FIELD = re.compile(r"(?i)^(value|.*secret.*|.*password.*|.*token.*|privatekey)$")
SECRET_HEADER = re.compile(r"(?i)^(x-amz-security-token|authorization)$")
# Canonical requests print headers as "name:value" lines, prepared requests as a dict's repr.
SECRET_HEADER_LINE = re.compile(r"(?im)^(x-amz-security-token|authorization)\s*:.*$")
SECRET_HEADER_ITEM = re.compile(
    r"(?i)(['\"](?:x-amz-security-token|authorization)['\"]\s*:\s*b?)(['\"]).*?\2"
)
XML_SECRET = re.compile(
    r"<(?P<tag>Value|SecretAccessKey|SessionToken|Password|Token|PrivateKey)>"
    r".*?</(?P=tag)>",
    re.DOTALL,
)
UNREADABLE_BODY = "[body not shown: not JSON, XML or a form]"

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Also mask ``value`` wherever it appears as text (values shorter than 8 match too much;
    the structural masking covers them)."""
    if value and len(value) >= 8:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    text = PRIVATE_KEY.sub(f"[private key {MASK}]", text)
    text = SECRET_HEADER_LINE.sub(lambda match: f"{match.group(1)}:{MASK}", text)
    text = SECRET_HEADER_ITEM.sub(lambda match: f"{match.group(1)}'{MASK}'", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def scrub(value: Any, depth: int = 0) -> Any:
    """``value`` with every secret field masked: mappings and lists walked, bodies parsed."""
    if depth > 20:
        return MASK
    if isinstance(value, dict):
        return {key: _scrub_field(key, item, depth) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(item, depth + 1) for item in value)
    if isinstance(value, bytes | bytearray):
        return scrub_body(value)
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "[", "<"):
        return scrub_body(value)
    return value  # other text is searched as a whole line by redact()


def _scrub_field(key: Any, value: Any, depth: int) -> Any:
    name = str(key)
    if SECRET_FIELD.match(name) or SECRET_HEADER.match(name):
        return MASK
    if name == "context":  # botocore's request context: config objects, nothing to mask
        return value
    return scrub(value, depth + 1)


def scrub_body(body: bytes | bytearray | str) -> Any:
    """A request or response body with its secret fields masked, in the shape it came in."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    stripped = text.strip()
    if not stripped:
        return body
    if stripped[0] in "{[":
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):
            return UNREADABLE_BODY
        return json.dumps(scrub(parsed), ensure_ascii=False)
    if stripped.startswith("<"):
        return XML_SECRET.sub(lambda match: f"<{match['tag']}>{MASK}</{match['tag']}>", text)
    if "=" in stripped and " " not in stripped:
        pairs = parse_qsl(stripped, keep_blank_values=True)
        return urlencode(
            [(name, MASK if SECRET_FIELD.match(name.split(".")[-1]) else v) for name, v in pairs]
        )
    return UNREADABLE_BODY


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("botocore", "urllib3")) and isinstance(record.args, tuple):
            record.args = tuple(scrub(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a line that cannot even be formatted is not worth a secret
            record.msg, record.args = "[log line not shown]", None
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def configure(verbose: int) -> None:
    """Send iotbutton's (and with -vv botocore's) debug log to stderr, masked. A previous
    configuration in the same process (tests run many commands in one) is removed first."""
    for name in ("iotbutton", "botocore", "urllib3"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
            logger.removeHandler(old)
        if name != "iotbutton":
            logger.setLevel(logging.NOTSET)
    if verbose <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    names = ["iotbutton"] + (["botocore", "urllib3"] if verbose > 1 else [])
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
