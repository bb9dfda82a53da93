"""Button serial numbers: the AWS thing name, the MQTT client id and the topic suffix at once."""

from __future__ import annotations

import re
import secrets
import string

from iotbutton_cli.errors import IotButtonError, usage_error

# AWS thing names: 1-128 of [a-zA-Z0-9:_-]. A serial is also an MQTT client id and a topic level,
# where the same set is safe (no '/', '+', '#').
SERIAL_PATTERN = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
SIMULATED_PREFIX = "G030"
# The most buttons one `things create --count` makes: at AWS's 10 certificates a second, about
# 17 minutes, and far below the 26^5 * 10^7 serials the generator can make.
MAX_COUNT = 10_000


def validate_serial(serial: str) -> str:
    """Return ``serial`` if AWS would accept it as a thing name, else raise a usage error."""
    if SERIAL_PATTERN.fullmatch(serial):
        return serial
    if not serial:
        problem = "is empty"
    elif len(serial) > 128:
        problem = f"is {len(serial)} characters long (AWS allows 128)"
    else:
        bad = sorted({char for char in serial if not re.fullmatch(r"[a-zA-Z0-9:_-]", char)})
        problem = "contains " + ", ".join(repr(char) for char in bad)
    raise usage_error(
        "bad-serial",
        f"Invalid serial {serial!r}: it {problem}.",
        "A serial may use letters, digits, ':', '_' and '-' (e.g. G030JF0553648RUH); "
        "omit it to generate one.",
    )


def generate_serial() -> str:
    """A serial shaped like a real AWS IoT button's (G030JF0553648RUH): 4+2+7+3 characters."""
    letters, digits = string.ascii_uppercase, string.digits
    return (
        SIMULATED_PREFIX
        + "".join(secrets.choice(letters) for _ in range(2))
        + "".join(secrets.choice(digits) for _ in range(7))
        + "".join(secrets.choice(letters) for _ in range(3))
    )


def resolve_serials(serial: str | None, count: int) -> list[str]:
    """The serials a ``things create`` asks for: one given, or ``count`` generated ones."""
    if count < 1 or count > MAX_COUNT:
        raise usage_error(
            "bad-count",
            f"--count must be between 1 and {MAX_COUNT:,}, not {count:,}.",
            f"Omit --count for one button; run the command again for more than {MAX_COUNT:,}.",
        )
    if serial is not None:
        validate_serial(serial)
        if count != 1:
            raise usage_error(
                "serial-and-count",
                "A SERIAL and --count > 1 cannot be combined.",
                "Give one SERIAL, or --count N to generate N serials.",
            )
        return [serial]
    serials: set[str] = set()
    while len(serials) < count:
        serials.add(generate_serial())
    return sorted(serials)


def not_found(serial: str) -> IotButtonError:
    return usage_error(
        "unknown-serial",
        f"No button {serial!r} in the registry for this account and region.",
        "List the buttons with `iotbutton things list`.",
    )
