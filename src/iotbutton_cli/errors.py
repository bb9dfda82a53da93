"""One error type for everything a user can get wrong or AWS can refuse.

The CLI turns an :class:`IotButtonError` into one line, a hint and an exit status; services raise it
and never print. Exit statuses are part of the contract and documented in docs/reference.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1  # the operation failed (AWS refused, throttled, unreachable, local I/O)
    USAGE = 2  # bad input: options, serials, config files
    CREDENTIALS = 3  # credentials, profile, region or permissions
    PARTIAL = 4  # teardown left something behind (still recorded in the registry)
    INTERRUPTED = 130  # Ctrl-C, as shells report it


@dataclass
class IotButtonError(Exception):
    """A failure the user can act on: a stable ``code``, a one-line ``message``, a ``hint``."""

    code: str
    message: str
    hint: str  # required: every error tells the user what to do next
    exit_status: ExitStatus = ExitStatus.FAILED

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "exit_status": int(self.exit_status),
        }


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the command had done by then: the CLI prints :attr:`error` (exit status
    130) instead of its general line. A KeyboardInterrupt still, so nothing that catches
    ``Exception`` can swallow it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.error = IotButtonError("interrupted", message, hint, ExitStatus.INTERRUPTED)


def usage_error(code: str, message: str, hint: str) -> IotButtonError:
    return IotButtonError(code, message, hint, ExitStatus.USAGE)


def credentials_error(code: str, message: str, hint: str) -> IotButtonError:
    return IotButtonError(code, message, hint, ExitStatus.CREDENTIALS)


class NotOurs(IotButtonError):
    """A resource iotbutton was asked to change or delete carries none of iotbutton's marks: it is
    left alone (and forgotten by the registry, which was wrong to name it)."""


def not_ours(label: str, name: str, why: str) -> NotOurs:
    return NotOurs(
        "not-ours",
        f"The {label} {name} is not iotbutton's ({why}); left alone.",
        "iotbutton never changes or deletes what it did not make; remove it yourself if it "
        "should go.",
    )
