"""`things list` and `things show` read each button's last click from its thing shadow: against
moto in-process (AWS's host names: the shadows are read at the account's ATS data endpoint that
DescribeEndpoint names), and behind a proxy that refuses some reads (a dash, not an error)."""

from __future__ import annotations

import json

SERIAL = "G030JF0553648RUH"
OTHER = "G030RQ9940375SLS"
LAST_CLICK = {
    "type": "DOUBLE",
    "time": "2026-11-21T23:04:00.123Z",
    "battery": "1650mV",
    "batteryMv": 1650,
    "alarm": "G030JF0553648RUH-DOUBLE-1795647840123",
    "outcome": "escalating",
    "escalation": "G030JF0553648RUH-DOUBLE-1795647840123",
}


def write_last_click(data, serial: str, click: dict) -> None:
    document = {"state": {"reported": {"lastClick": click}}}
    data.update_thing_shadow(thingName=serial, payload=json.dumps(document).encode())


def test_list_and_show_read_the_last_click_at_the_accounts_data_endpoint(cli, iot):
    import boto3

    cli("things", "create", SERIAL)
    cli("things", "create", OTHER)
    host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    data = boto3.client("iot-data", region_name="us-east-1", endpoint_url=f"https://{host}")
    write_last_click(data, SERIAL, LAST_CLICK)

    listed = {b["serial"]: b for b in cli.json("things", "list")}
    assert listed[SERIAL]["last_click"] == {
        "type": "DOUBLE",
        "time": "2026-11-21T23:04:00.123Z",
        "outcome": "escalating",
        "battery": "1650mV",
        "battery_mv": 1650,
        "alarm": LAST_CLICK["alarm"],
    }
    assert listed[OTHER]["last_click"] is None  # never clicked: no shadow
    assert listed[OTHER]["shadow_error"] is None
    table = cli("things", "list").stdout
    assert "DOUBLE" in table and "escalating" in table and "1650mV" in table
    shown = cli("things", "show", SERIAL)
    assert "DOUBLE at 2026-11-21 23:04 UTC: escalating" in shown.stdout
    assert cli.json("things", "show", OTHER)["last_click"] is None


def test_a_shadow_written_by_someone_else_reads_field_by_field(cli, iot):
    import boto3

    cli("things", "create", SERIAL)
    host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    data = boto3.client("iot-data", region_name="us-east-1", endpoint_url=f"https://{host}")
    write_last_click(data, SERIAL, {"type": 3, "outcome": "sent", "batteryMv": True})

    [listed] = cli.json("things", "list")
    assert listed["last_click"] == {
        "type": None,
        "time": None,
        "outcome": "sent",
        "battery": None,
        "battery_mv": None,
        "alarm": None,
    }


def test_an_unreadable_shadow_is_a_dash_and_a_line_not_an_error(cli, fault_proxy):
    cli("things", "create", SERIAL)
    cli("things", "create", OTHER)
    fault_proxy.add(
        "GET",
        rf"^/things/{SERIAL}/shadow",
        403,
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/u is not authorized to perform: iot:GetThingShadow",
    )

    listed = {b["serial"]: b for b in cli.json("things", "list")}
    assert listed[SERIAL]["last_click"] is None
    assert "iot:GetThingShadow" in listed[SERIAL]["shadow_error"]
    assert listed[OTHER]["shadow_error"] is None
    people = cli("things", "list")
    row = next(line for line in people.stdout.splitlines() if SERIAL in line)
    assert row.count(" - ") == 2
    assert "1 shadow could not be read (" in people.stderr
    shown = cli("things", "show", SERIAL)
    assert "- (could not read the shadow: " in shown.stdout
    assert cli.json("things", "show", SERIAL)["shadow_error"] == listed[SERIAL]["shadow_error"]


def test_no_buttons_no_shadow_reads(cli, fault_proxy):
    assert cli.json("things", "list") == []
    assert not [path for _method, path in fault_proxy.requests if "/shadow" in path]


def test_a_hostile_shadow_is_shown_as_plain_short_text_not_a_traceback(cli, iot):
    import boto3

    cli("things", "create", SERIAL)
    host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    data = boto3.client("iot-data", region_name="us-east-1", endpoint_url=f"https://{host}")
    hostile = {
        "type": "[link=https://evil.example/]SINGLE[/link]",
        "time": "9999-12-31T23:59:59-14:00",  # past the year 9999 in UTC
        "outcome": "\x1b]8;;https://evil.example/\x07sent" + "x" * 500,
        "battery": "[bold red]0mV",
    }
    write_last_click(data, SERIAL, hostile)

    for args in (("things", "list"), ("things", "show", SERIAL)):
        shown = cli(*args)
        assert "Traceback" not in shown.stdout + shown.stderr
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
        assert "[link" in shown.stdout  # as text, not as a link
        assert "x" * 100 not in shown.stdout
    [listed] = cli.json("things", "list")
    assert len(listed["last_click"]["outcome"]) <= 65
