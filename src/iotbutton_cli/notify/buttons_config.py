"""notify.yaml's per-button sections, a button's details, and the time zone.

::

    person: "Grandma"              # the defaults: any button not listed below
    timezone: "Europe/London"      # {time} in this zone (IANA name); UTC if not set
    buttons:
      G030JF0553648RUH:
        person: "Grandpa"
        address: "12 High Street, flat 2"
        notes: "Key under the blue pot"
        fields: {room: "bedroom", doctor: "+15551230077"}
        clicks:
          LONG:
            sms: ["+15551230003"]  # only what differs: the rest is the defaults' LONG
    unlisted: refuse               # a button not listed sends nothing (default: the defaults)

A button's section overrides the defaults key by key: its ``person``, ``address``, ``notes`` and
each of its ``fields`` win over the top-level ones, and under ``clicks`` each click type's ``sms``,
``call``, ``message``, ``voice`` and ``escalation`` win over the default click type's. Every
template is checked against the fields of the buttons it is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from iotbutton_cli.notifier_lambda.contract import (
    CLICK_TYPES,
    FIELD_MAX_CHARS,
    FIELD_NAME,
    MAX_FIELDS,
    UNLISTED_CHOICES,
)

if TYPE_CHECKING:
    from yaml.nodes import Node

    from iotbutton_cli.notifier_lambda.contract import BatteryConfig, QuietHours
    from iotbutton_cli.notify.config import ButtonSettings, ClickSettings, Details, _Parser

QUIET_CHOICES = ("sms-only", "hold")
BUTTON_KEYS = ("person", "address", "notes", "fields", "quiet_hours", "clicks")
MAX_BUTTONS = 200
DETAIL_HINT = 'For example: address: "12 High Street", notes: "Key under the blue pot".'
FIELDS_HINT = 'For example: fields: {room: "bedroom", doctor: "+15551230077"}.'


def details(
    parser: _Parser, entries: Mapping[str, tuple[Node, Node]], where: str, base: Details
) -> Details:
    """``base`` with the address, notes and fields (and, in a button's section, the person)
    that ``entries`` set."""
    from dataclasses import replace

    from iotbutton_cli.notify.config import _person_problem

    changed: dict[str, object] = {}
    label = f"{where}." if where else ""
    if where and "person" in entries:
        node = entries["person"][1]
        person = parser.text(node, f"{label}person") or ""
        problem = _person_problem(person) if person else "is empty"
        if problem:
            parser.fail(node, "notify-config-person", f"{label}person {problem}", DETAIL_HINT)
        changed["person"] = person
    for name in ("address", "notes"):
        if name in entries:
            changed[name] = _one_line(parser, entries[name][1], f"{label}{name}", DETAIL_HINT)
    if "fields" in entries:
        merged = {**base.fields, **_fields(parser, entries["fields"][1], label)}
        if len(merged) > MAX_FIELDS:
            parser.fail(
                entries["fields"][1],
                "notify-config-details",
                f"{label}fields: with the top-level ones, more than {MAX_FIELDS} fields",
                FIELDS_HINT,
            )
        changed["fields"] = merged
    return replace(base, **changed)  # type: ignore[arg-type]


def _one_line(parser: _Parser, node: Node, label: str, hint: str) -> str:
    """A detail a message may carry: one printable line, at most FIELD_MAX_CHARS."""
    value = (parser.text(node, label) or "").strip()
    if len(value) > FIELD_MAX_CHARS or not value.isprintable():
        parser.fail(
            node,
            "notify-config-details",
            f"{label} must be one line of at most {FIELD_MAX_CHARS} characters",
            hint,
        )
    return value


def _fields(parser: _Parser, node: Node, label: str) -> dict[str, str]:
    from yaml.nodes import MappingNode

    if not isinstance(node, MappingNode):
        parser.fail(
            node, "notify-config-details", f"{label}fields must map names to text", FIELDS_HINT
        )
    found = {}
    for key_node, value_node in node.value:
        name = str(getattr(key_node, "value", ""))
        if not FIELD_NAME.fullmatch(name):
            parser.fail(
                key_node,
                "notify-config-details",
                f"{label}fields: {name[:40]!r} is not a field name (letters, digits and _, "
                "not starting with a digit, at most 32)",
                FIELDS_HINT,
            )
        found[name] = _one_line(parser, value_node, f"{label}fields.{name}", FIELDS_HINT)
    if len(found) > MAX_FIELDS:
        parser.fail(
            node, "notify-config-details", f"{label}fields has more than {MAX_FIELDS}", FIELDS_HINT
        )
    return found


def time_zone(parser: _Parser, entries: Mapping[str, tuple[Node, Node]]) -> str:
    """The IANA time zone {time} is told in; UTC if not set."""
    if "timezone" not in entries:
        return "UTC"
    node = entries["timezone"][1]
    zone = (parser.text(node, "timezone") or "").strip()
    import zoneinfo

    known = zoneinfo.available_timezones() - {"Factory", "localtime", "posixrules"}
    if zone != "UTC" and zone in known and not zone_rules(zone):
        parser.fail(
            node,
            "notify-config-timezone",
            f"timezone {zone[:60]!r}: this machine has no rules file for it to deploy",
            "Install the tzdata package (pip install tzdata), or use UTC.",
        )
    if zone != "UTC" and zone not in known:
        import difflib

        close = difflib.get_close_matches(zone, sorted(known), n=1)
        parser.fail(
            node,
            "notify-config-timezone",
            f"timezone {zone[:60]!r} is not an IANA time zone name",
            (f"Did you mean {close[0]}? " if close else "")
            + 'Write a name such as "Europe/London" or "America/New_York", or "UTC".',
        )
    return zone


def zone_rules(name: str) -> str:
    """The zone's TZif file from this machine's tz database (or the tzdata package), base64:
    the deploy carries it, because Lambda's runtime may have no tz database of its own."""
    import base64
    import zoneinfo
    from importlib import resources
    from pathlib import Path

    for folder in zoneinfo.TZPATH:
        candidate = Path(folder, *name.split("/"))
        if candidate.is_file():
            return base64.b64encode(candidate.read_bytes()).decode("ascii")
    try:
        packaged = resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
        return base64.b64encode(packaged.read_bytes()).decode("ascii")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return ""  # the function then uses its own database, or UTC


def unlisted(parser: _Parser, entries: Mapping[str, tuple[Node, Node]]) -> str:
    if "unlisted" not in entries:
        return "defaults"
    node = entries["unlisted"][1]
    value = (parser.text(node, "unlisted") or "").strip()
    if value not in UNLISTED_CHOICES:
        parser.fail(
            node,
            "notify-config-shape",
            f"unlisted must be {' or '.join(UNLISTED_CHOICES)}, not {value[:40]!r}",
            "defaults: a button not under buttons: uses the top-level settings; refuse: it "
            "sends nothing.",
        )
    return value


def refuse_needs_buttons(
    parser: _Parser,
    entries: Mapping[str, tuple[Node, Node]],
    value: str,
    found: Mapping[str, object],
) -> None:
    """Refusing every unlisted button with none listed would refuse every click."""
    if value == "refuse" and not found:
        parser.fail(
            entries["unlisted"][1],
            "notify-config-shape",
            "unlisted: refuse, but no buttons: are listed",
            "List the buttons under buttons:, or remove unlisted:.",
        )


def buttons(
    parser: _Parser,
    entries: Mapping[str, tuple[Node, Node]],
    sender: str,
    defaults: Details,
    clicks: Mapping[str, ClickSettings],
    default_quiet: QuietHours | None = None,
) -> dict[str, ButtonSettings]:
    """Each button's section, merged over the defaults and checked."""
    from yaml.nodes import MappingNode, ScalarNode

    from iotbutton_cli.notify.config import _NULL_TAG, ButtonSettings
    from iotbutton_cli.provisioning.serials import SERIAL_PATTERN

    if "buttons" not in entries:
        return {}
    key_node, node = entries["buttons"]
    if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
        return {}
    if not isinstance(node, MappingNode):
        parser.fail(
            node,
            "notify-config-shape",
            "buttons must map serials to settings",
            'For example: buttons: {G030JF0553648RUH: {person: "Grandpa"}}.',
        )
    if len(node.value) > MAX_BUTTONS:
        parser.fail(key_node, "notify-config-shape", f"buttons lists more than {MAX_BUTTONS}")
    found: dict[str, ButtonSettings] = {}
    for serial_node, section in node.value:
        serial = str(getattr(serial_node, "value", ""))
        if not SERIAL_PATTERN.fullmatch(serial):
            parser.fail(
                serial_node,
                "notify-config-serial",
                f"buttons: {serial[:40]!r} is not a button serial (an AWS thing name)",
                "Use the serial `iotbutton things list` shows, e.g. G030JF0553648RUH.",
            )
        if serial in found:
            parser.fail(serial_node, "notify-config-duplicate", f"buttons.{serial} appears twice")
        where = f"buttons.{serial}"
        if not isinstance(section, MappingNode):
            parser.fail(section, "notify-config-shape", f"{where} must have settings", DETAIL_HINT)
        own = parser.entries(section, where, BUTTON_KEYS)
        mine = details(parser, own, where, defaults)
        merged = _clicks(parser, serial_node, own, where, sender, mine, clicks)
        quiet = quiet_hours(parser, own, where, default_quiet)
        found[serial] = ButtonSettings(mine, merged, quiet)
    return found


def _clicks(
    parser: _Parser,
    anchor: Node,
    own: Mapping[str, tuple[Node, Node]],
    where: str,
    sender: str,
    mine: Details,
    defaults: Mapping[str, ClickSettings],
) -> dict[str, ClickSettings]:
    """The button's click types: its own over the defaults', key by key; the defaults' it
    does not mention, checked against its fields."""
    from yaml.nodes import MappingNode

    given: dict[str, tuple[Node, Node]] = {}
    if "clicks" in own:
        clicks_node = own["clicks"][1]
        if not isinstance(clicks_node, MappingNode):
            parser.fail(clicks_node, "notify-config-shape", f"{where}.clicks must map click types")
        given = parser.entries(clicks_node, "clicks", CLICK_TYPES)
    merged = {}
    for click in CLICK_TYPES:
        label = f"{where}.clicks.{click}"
        if click in given:
            merged[click] = parser.click(
                click, *given[click], sender, mine, base=defaults.get(click), where=label
            )
        elif click in defaults:
            item = defaults[click]
            for template in (item.message, item.voice or ""):
                parser.known_fields(anchor, f"clicks.{click}", template, mine, where)
            merged[click] = item
    return merged


def battery(
    parser: _Parser, entries: Mapping[str, tuple[Node, Node]], sender: str
) -> BatteryConfig | None:
    """``battery: {warn_below_mv: 1500, notify: ["+1..."], at_most_every: 1d}``: who hears of a
    low battery, once per period per button."""
    from yaml.nodes import MappingNode

    from iotbutton_cli.notifier_lambda.contract import BatteryConfig as Battery
    from iotbutton_cli.notify.durations import DURATION, UNITS

    if "battery" not in entries:
        return None
    key_node, node = entries["battery"]
    hint = (
        'For example: battery: {warn_below_mv: 1500, notify: ["+15551230009"], at_most_every: 1d}.'
    )
    if not isinstance(node, MappingNode):
        parser.fail(
            node, "notify-config-battery", "battery must have warn_below_mv and notify", hint
        )
    found = parser.entries(node, "battery", ("warn_below_mv", "notify", "at_most_every"))
    for key in ("warn_below_mv", "notify"):
        if key not in found:
            parser.fail(key_node, "notify-config-battery", f"battery.{key} is missing", hint)
    below_node = found["warn_below_mv"][1]
    below = (parser.text(below_node, "battery.warn_below_mv") or "").strip().lower()
    below = below.removesuffix("mv").strip()
    if not below.isdigit() or not 1 <= int(below) <= 100_000:
        parser.fail(
            below_node,
            "notify-config-battery",
            "battery.warn_below_mv must be millivolts, e.g. 1500",
            hint,
        )
    numbers = parser.numbers(found["notify"][1], "battery.notify", sender)
    if not numbers or len(numbers) > 10:
        parser.fail(
            found["notify"][1],
            "notify-config-battery",
            "battery.notify must list 1 to 10 numbers",
            hint,
        )
    every = 86400
    if "at_most_every" in found:
        every_node = found["at_most_every"][1]
        text = parser.text(every_node, "battery.at_most_every") or ""
        match = DURATION.match(text)
        every = int(match[1]) * UNITS[(match[2] or "h").lower()] if match else 0
        if not 60 <= every <= 30 * 86400:
            parser.fail(
                every_node,
                "notify-config-battery",
                "battery.at_most_every must be from 1 minute to 30 days (e.g. 12h, 1d)",
                hint,
            )
    return Battery(int(below), numbers, every)


def quiet_hours(
    parser: _Parser, entries: Mapping[str, tuple[Node, Node]], where: str, inherited: object
) -> QuietHours | None:
    """``quiet_hours: {from: "22:00", to: "07:00", then: sms-only}``: SINGLE and DOUBLE text
    whoever they would call, in those hours of the config's time zone; LONG always rings."""
    from yaml.nodes import MappingNode

    from iotbutton_cli.notifier_lambda.contract import QuietHours as Quiet

    if "quiet_hours" not in entries:
        return inherited  # type: ignore[return-value]
    label = f"{where}.quiet_hours" if where else "quiet_hours"
    key_node, node = entries["quiet_hours"]
    hint = 'For example: quiet_hours: {from: "22:00", to: "07:00", then: sms-only}.'
    if not isinstance(node, MappingNode):
        parser.fail(node, "notify-config-quiet-hours", f"{label} must have from and to", hint)
    found = parser.entries(node, label, ("from", "to", "then"))
    minutes = []
    for key in ("from", "to"):
        if key not in found:
            parser.fail(key_node, "notify-config-quiet-hours", f"{label}.{key} is missing", hint)
        value_node = found[key][1]
        text = (parser.text(value_node, f"{label}.{key}") or "").strip()
        hour, _, minute = text.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            parser.fail(
                value_node,
                "notify-config-quiet-hours",
                f"{label}.{key} must be a time of day, HH:MM",
                hint,
            )
        minutes.append(int(hour) * 60 + int(minute))
    if minutes[0] == minutes[1]:
        parser.fail(node, "notify-config-quiet-hours", f"{label} starts when it ends", hint)
    hold = False
    if "then" in found:
        then_node = found["then"][1]
        then = (parser.text(then_node, f"{label}.then") or "").strip()
        if then not in QUIET_CHOICES:
            parser.fail(
                then_node,
                "notify-config-quiet-hours",
                f"{label}.then must be sms-only or hold, not {then[:30]!r}",
                "sms-only texts whoever a SINGLE or DOUBLE would call; hold keeps SINGLE and "
                "DOUBLE until the hours end, then sends them as configured.",
            )
        hold = then == "hold"
    return Quiet(minutes[0], minutes[1], hold)
