"""Text the notifier writes, made safe: in a message, in a log line, as reported from Twilio."""

from __future__ import annotations

import logging
import re

logger = logging.getLogger("iotbutton.notifier")
logger.setLevel(logging.INFO)

REPLACEMENT = "?"
ELLIPSIS = "\u2026"
# XML 1.0 forbids C0 controls but tab, newline and carriage return, surrogates, U+FFFE and
# U+FFFF; the C1 controls (U+007F-U+009F) it allows, but no phone should get them either.
UNSAFE_IN_MESSAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# What would break a log line in two, or fail to encode: controls, line and paragraph separators,
# lone surrogates. Escaped as \uXXXX.
UNSAFE_IN_LOG = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), with every character
    that is not printable (controls, separators, lone surrogates, ...) replaced by "?"."""
    if len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    return "".join(char if char.isprintable() else REPLACEMENT for char in text)


def one_line(text: str) -> str:
    """``text`` as one log line that always encodes: controls, separators and lone surrogates
    become \\uXXXX escapes."""
    return UNSAFE_IN_LOG.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def log(level: int, message: str, *args: object) -> None:
    """Log one line, whatever the arguments hold."""
    logger.log(level, "%s", one_line(message % args if args else message))
