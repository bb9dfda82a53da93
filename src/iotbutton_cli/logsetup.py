"""Logging for ``-v`` and ``-vv``, with every secret masked before it reaches the terminal.

``-v`` logs each AWS call iotbutton makes (action, HTTP status, retries); ``-vv`` adds botocore's
own debug log, which prints request and response bodies: private keys from
CreateKeysAndCertificate, the Twilio secret in PutParameter. A filter on our handler masks private
key blocks and every secret value registered with :func:`register_secret` (the Twilio secret, the
AWS secret key and session token) in each line.
"""

from __future__ import annotations

import logging
import re
import sys
import threading

HANDLER_NAME = "iotbutton-cli"
MASK = "****"
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
)
PRIVATE_KEY_FIELD = re.compile(r'("PrivateKey"\s*:\s*")[^"]*(")')

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (values shorter than 8 are too common)."""
    if value and len(value) >= 8:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    text = PRIVATE_KEY.sub(f"[private key {MASK}]", text)
    text = PRIVATE_KEY_FIELD.sub(rf"\1{MASK}\2", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
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
