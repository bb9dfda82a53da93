"""notify.yaml's per-button sections: merged over the defaults key by key, checked with
file:line errors (a field a template uses must exist for every button it is for), handed to the
notifier, which gives each button its own person, recipients and texts; voice texts; {time} in
the config's time zone."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from iotbutton_cli.notifier_lambda import contract
from iotbutton_cli.notify import config as notify_config
from test_notify_config import write_config

HOUSEHOLD = """\
account_sid: "AC0123456789abcdef0123456789abcdef"
from: "+15005550006"
person: "someone at home"
address: "12 High Street"
fields: {room: "the hall"}
timezone: "Europe/London"
clicks:
  LONG:
    sms: ["+15551230009"]
    message: "{person} needs help in {fields.room} at {address} ({time})."
    voice: "Help is needed at {address}. {person} is in {fields.room}."
buttons:
  G030JF0553648RUH:
    person: "Grandma"
    notes: "Key under the blue pot"
    fields: {room: "the bedroom"}
  G030JF0553648RUX:
    person: "Grandpa"
    clicks:
      LONG:
        sms: ["+15551230008"]
        message: "{person} needs help. {notes}"
"""


@pytest.fixture(autouse=True)
def _no_twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET"):
        monkeypatch.delenv(name, raising=False)


def notifier_view(serial: str) -> contract.MessagingConfig:
    document = notify_config.parse_config_text(HOUSEHOLD).lambda_document()
    config = contract.parse_config(document).for_button(serial)
    assert config is not None
    return config


def test_each_button_gets_its_own_person_fields_and_recipients():
    grandma = notifier_view("G030JF0553648RUH")
    grandpa = notifier_view("G030JF0553648RUX")
    anyone = notifier_view("SOMEOTHERBUTTON")

    assert (grandma.person, grandma.fields, grandma.notes) == (
        "Grandma",
        {"room": "the bedroom"},
        "Key under the blue pot",
    )
    assert grandma.address == "12 High Street"  # not overridden: the default's
    assert grandma.clicks["LONG"].sms == ("+15551230009",)  # inherited whole
    assert grandpa.clicks["LONG"].sms == ("+15551230008",)  # its own, key by key...
    assert (
        grandpa.clicks["LONG"].voice == "Help is needed at {address}. {person} is in {fields.room}."
    )
    assert grandpa.fields == {"room": "the hall"}  # ... and the default fields
    assert anyone.person == "someone at home"


def test_the_messages_say_each_buttons_own_things_in_the_config_time_zone():
    from iotbutton_cli.notifier_lambda.handler import ButtonEvent, click_texts

    clicked = int(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)
    event = ButtonEvent("G030JF0553648RUH", "LONG", "1650mV", clicked)
    grandma = notifier_view("G030JF0553648RUH")

    texts = click_texts(grandma.clicks["LONG"], grandma, event)

    assert (
        texts["sms"]
        == "Grandma needs help in the bedroom at 12 High Street (2026-07-01 13:00 BST)."
    )
    assert texts["call"] == "Help is needed at 12 High Street. Grandma is in the bedroom."


def test_unlisted_buttons_can_be_refused():
    document = notify_config.parse_config_text(HOUSEHOLD + "unlisted: refuse\n").lambda_document()
    config = contract.parse_config(document)

    assert config.for_button("SOMEOTHERBUTTON") is None
    assert config.for_button("G030JF0553648RUH") is not None


def test_a_file_of_the_older_shape_makes_the_document_it_always_made():
    text = (
        HOUSEHOLD.split("address:")[0]
        + 'clicks:\n  SINGLE:\n    sms: ["+15551230001"]\n    message: "{person}"\n'
    )
    document = notify_config.parse_config_text(text).lambda_document()

    assert set(document) == {
        "version",
        "account_sid",
        "api_key_sid",
        "from",
        "person",
        "debounce_seconds",
        "clicks",
    }


@pytest.mark.parametrize(
    ("old", "new", "line", "detail"),
    [
        (
            '        message: "{person} needs help. {notes}"',
            '        message: "{person} needs help in {fields.kitchen}."',
            22,
            "buttons.G030JF0553648RUX.clicks.LONG.message uses {fields.kitchen}, but the "
            "top-level fields: has no field 'kitchen'",
        ),
        (
            'timezone: "Europe/London"',
            'timezone: "Europe/Lundon"',
            6,
            "timezone 'Europe/Lundon' is not an IANA time zone name",
        ),
        (
            "  G030JF0553648RUX:",
            "  not a serial!:",
            17,
            "buttons: 'not a serial!' is not a button serial (an AWS thing name)",
        ),
        (
            '    person: "Grandpa"',
            '    persona: "Grandpa"',
            18,
            "unknown setting 'persona' in buttons.G030JF0553648RUX",
        ),
    ],
)
def test_a_bad_button_section_names_file_and_line(cli, old, new, line, detail):
    assert old in HOUSEHOLD
    path = write_config(HOUSEHOLD.replace(old, new))

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"].startswith(f"{path}:{line}: {detail}"), error["message"]


def test_a_default_template_needs_its_fields_in_every_button_it_is_for(cli):
    text = HOUSEHOLD.replace('fields: {room: "the hall"}\n', "").replace(
        '    fields: {room: "the bedroom"}\n', ""
    )
    path = write_config(text)

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"].startswith(f"{path}:9: clicks.LONG.message uses {{fields.room}}")


def test_check_lists_every_button(cli):
    write_config(HOUSEHOLD)

    summary = cli.json("notify", "check")

    assert summary["timezone"] == "Europe/London"
    assert sorted(summary["buttons"]) == ["G030JF0553648RUH", "G030JF0553648RUX"]
    assert summary["buttons"]["G030JF0553648RUX"]["clicks"]["LONG"]["sms"] == ["+15551230008"]
    assert summary["recipients"] == 2


def test_the_worked_example_in_the_docs_says_what_the_docs_say():
    import re
    from pathlib import Path

    from iotbutton_cli.notifier_lambda.handler import ButtonEvent, click_texts

    doc = (Path(__file__).parent.parent / "docs" / "notifier.md").read_text(encoding="utf-8")
    section = doc.split("## Several buttons, several people", 1)[1].split("\n## ", 1)[0]
    example, *others = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    (battery,) = [block for block in others if block.startswith("battery:")]
    document = notify_config.parse_config_text(example + battery).lambda_document()
    config = contract.parse_config(document)
    clicked = int(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)

    def texts(serial: str, click: str) -> dict[str, str]:
        own = config.for_button(serial)
        assert own is not None
        return click_texts(own.clicks[click], own, ButtonEvent(serial, click, "1650mV", clicked))

    grandma = texts("G030JF0553648RUH", "LONG")
    assert grandma["sms"] == (
        "URGENT: Grandma needs help in the bedroom, 12 High Street, Leeds (2026-07-01 13:00 BST)."
        " Key under the blue pot."
    )
    assert grandma["sms"] in " ".join(section.split())
    assert grandma["call"] == "Urgent. Grandma needs help in the bedroom. Please go now."
    assert texts("G030JF0553648RUX", "LONG")["sms"].startswith(
        "URGENT: Grandpa needs help in the garden shed"
    )
    assert texts("HALLBUTTON", "LONG")["sms"].startswith("URGENT: someone in the hall needs help")
    shed = config.for_button("G030JF0553648RUX")
    assert shed is not None and shed.clicks["SINGLE"].sms == ("+447700900003",)
    assert config.clicks["LONG"].escalation is not None
    assert config.battery == contract.BatteryConfig(1500, ("+447700900001",), 86400)
    from iotbutton_cli.notifier_lambda.battery import warning

    told = warning("Grandma", "G030JF0553648RUH", 1400, 1500)
    assert told in " ".join(section.split()).replace('" ', " ").replace(' "', " ")


def test_the_deploy_carries_the_zone_so_a_runtime_without_a_tz_database_still_tells_it(
    monkeypatch,
):
    """Lambda's Python runtime may have no tz database: the document carries the zone's rules
    (its TZif file), and {time} is told in the zone all the same."""
    import zoneinfo

    document = notify_config.parse_config_text(HOUSEHOLD).lambda_document()
    assert document["timezone"] == "Europe/London" and document["timezone_rules"]
    monkeypatch.setattr(zoneinfo, "ZoneInfo", _no_database(zoneinfo.ZoneInfo))
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)

    assert contract.format_time(moment, "Europe/London") == "2026-07-01 12:00 UTC"  # fallback
    told = contract.format_time(moment, "Europe/London", document["timezone_rules"])
    assert told == "2026-07-01 13:00 BST"


def _no_database(real):
    class NoDatabase(real):  # type: ignore[misc, valid-type]
        def __new__(cls, key):
            raise zoneinfo_error(key)

    import zoneinfo

    def zoneinfo_error(key):
        return zoneinfo.ZoneInfoNotFoundError(f"No time zone found with key {key}")

    return NoDatabase


def test_the_battery_warning_is_checked_and_handed_over(cli):
    text = (
        HOUSEHOLD + 'battery: {warn_below_mv: 1500mV, notify: "+15551230007", at_most_every: 12h}\n'
    )
    document = notify_config.parse_config_text(text).lambda_document()
    assert document["battery"] == {
        "warn_below_mv": 1500,
        "notify": ["+15551230007"],
        "every_seconds": 43200,
    }
    assert contract.parse_config(document).battery == contract.BatteryConfig(
        1500, ("+15551230007",), 43200
    )
    path = write_config(text.replace("at_most_every: 12h", "at_most_every: 1y"))

    error = cli.json("notify", "check", code=2)["error"]

    assert error["code"] == "notify-config-battery"
    assert error["message"].startswith(f"{path}:23: battery.at_most_every must be")


def test_quiet_hours_are_checked_and_a_button_may_have_its_own(cli):
    text = (
        HOUSEHOLD.replace(
            '    notes: "Key under the blue pot"\n',
            '    notes: "Key under the blue pot"\n    quiet_hours: {from: "21:00", to: "08:00"}\n',
        )
        + 'quiet_hours: {from: "22:30", to: "07:00", then: sms-only}\n'
    )
    config = contract.parse_config(notify_config.parse_config_text(text).lambda_document())
    grandma, grandpa = (config.for_button(s) for s in ("G030JF0553648RUH", "G030JF0553648RUX"))
    assert grandma is not None and grandpa is not None
    assert grandma.quiet_hours == contract.QuietHours(21 * 60, 8 * 60)
    assert grandpa.quiet_hours == contract.QuietHours(22 * 60 + 30, 7 * 60)  # the default's
    assert grandpa.quiet_hours.covers(23 * 60) and not grandpa.quiet_hours.covers(12 * 60)

    held = text.replace("then: sms-only", "then: hold")
    document = notify_config.parse_config_text(held).lambda_document()
    assert document["quiet_hours"] == {
        "start_minute": 22 * 60 + 30,
        "end_minute": 420,
        "hold": True,
    }
    assert "hold" not in document["buttons"]["G030JF0553648RUH"]["quiet_hours"]  # her own
    assert contract.hold_ends(document) == (420,)
    config = contract.parse_config(document)
    assert config.for_button("G030JF0553648RUX").quiet_hours.hold  # type: ignore[union-attr]
    assert not config.for_button("G030JF0553648RUH").quiet_hours.hold  # type: ignore[union-attr]

    path = write_config(text.replace("then: sms-only", "then: later"))
    error = cli.json("notify", "check", code=2)["error"]
    assert error["code"] == "notify-config-quiet-hours"
    assert error["message"] == f"{path}:24: quiet_hours.then must be sms-only or hold, not 'later'"
    assert "hold keeps SINGLE and DOUBLE" in error["hint"]


def test_check_shows_each_buttons_numbers_to_people(cli):
    write_config(HOUSEHOLD + "unlisted: refuse\n")

    shown = cli("notify", "check")

    assert "Grandpa" in shown.stdout and "+15551230008" in shown.stdout
    assert "send nothing (unlisted: refuse)" in shown.stderr


def test_a_config_the_notifier_would_refuse_is_refused_by_check(cli):
    """An inherited voice text using a field the button lacks: caught before any deploy."""
    text = HOUSEHOLD.replace('fields: {room: "the hall"}\n', "") + "unlisted: refuse\n"
    text = text.replace('    fields: {room: "the bedroom"}\n', "")
    path = write_config(text)

    error = cli.json("notify", "check", code=2)["error"]

    assert error["code"] == "notify-config-template"
    assert "has no field 'room'" in error["message"] and str(path) in error["message"]
