"""The thing shadow end to end, through the CLI and the real background sandbox: after `sim click`
the button's classic shadow holds the click in ``reported.lastClick`` (read with plain boto3
against the sandbox's AWS port and over MQTT), `things list` and `things show` show it, the
notifier's role may write the buttons' shadows and no other thing's, and a shadow that cannot be
written costs the click nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import test_sandbox_escalation as escalation
from support import notify_init_args
from test_sandbox_dataplane import client
from test_sandbox_reserved import TIMEOUT, Paho, device

SERIAL = "G030JF0553648RUH"
OTHER = "G030RQ9940375SLS"
SMS_TO = "+15551230001"
ROLE = "iotbutton-notifier-us-east-1"  # the notifier's role in the sandbox's region


def last_click(serial: str = SERIAL, timeout: float = 30) -> dict[str, Any]:
    """``reported.lastClick`` of the button's shadow, once the notifier has written it."""
    data = client("iot-data")
    deadline = time.monotonic() + timeout
    while True:
        try:
            shadow = json.loads(data.get_thing_shadow(thingName=serial)["payload"].read())
            found = shadow["state"]["reported"].get("lastClick")
            if found:
                return dict(found)
        except data.exceptions.ResourceNotFoundException:
            pass
        assert time.monotonic() < deadline, f"no click reached the shadow of {serial}"
        time.sleep(0.3)


def shadow_grant() -> list[str]:
    """The thing ARNs the notifier's role may read and write the shadows of."""
    document = client("iam").get_role_policy(RoleName=ROLE, PolicyName=ROLE)["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    [statement] = [s for s in document["Statement"] if s.get("Sid") == "ReportClicksToShadows"]
    assert statement["Action"] == ["iot:GetThingShadow", "iot:UpdateThingShadow"]
    return list(statement["Resource"])


def deploy(cli: Any) -> None:
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO))
    cli("--sandbox", "notify", "deploy")


def test_a_click_is_on_its_shadow_over_http_and_mqtt_and_in_things_list_and_show(
    cli, sandbox, tmp_path
):
    deploy(cli)
    cli("--sandbox", "sim", "click", "--single", "--battery", "1400", "--wait")

    click = last_click()
    [alarm] = cli.json("--sandbox", "notify", "history")
    assert click["type"] == "SINGLE"
    assert click["battery"] == "1400mV" and click["batteryMv"] == 1400
    assert click["outcome"] == "sent"
    assert click["alarm"] == alarm["alarm"]
    assert click["time"].endswith("Z") and click["time"][:10] == time.strftime("%Y-%m-%d")
    assert "escalation" not in click  # written as null: not in the stored document

    # Over MQTT, as a device or a dashboard reads it: another identity, allowed the get topics.
    arn = f"arn:aws:iot:{sandbox['region']}:{sandbox['account']}"
    shadow = f"$aws/things/{SERIAL}/shadow/get"
    statements = [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/{shadow}"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/{shadow}/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/{shadow}/*"},
    ]
    paho = Paho(sandbox, device(sandbox, tmp_path, "dashboard", statements), "dashboard")
    try:
        paho.client.subscribe(f"{shadow}/accepted", qos=1)
        assert paho.subscribed.wait(TIMEOUT)
        paho.client.publish(shadow, b"", qos=1)
        over_mqtt = json.loads(paho.received.get(timeout=TIMEOUT).payload)
    finally:
        paho.stop()
    assert over_mqtt["state"]["reported"]["lastClick"] == click

    [listed] = cli.json("--sandbox", "things", "list")
    assert listed["last_click"] == {
        "type": "SINGLE",
        "time": click["time"],
        "outcome": "sent",
        "battery": "1400mV",
        "battery_mv": 1400,
        "alarm": alarm["alarm"],
    }
    assert listed["shadow_error"] is None
    shown = cli.json("--sandbox", "things", "show", SERIAL)
    assert shown["last_click"] == listed["last_click"] and shown["shadow_error"] is None
    table = cli("--sandbox", "things", "list").stdout
    assert "SINGLE sent" in table and "1400mV" in table
    detail = cli("--sandbox", "things", "show", SERIAL).stdout
    assert "SINGLE at " in detail and ": sent" in detail and "1400mV" in detail


def test_a_button_never_clicked_shows_a_dash(cli, sandbox):
    deploy(cli)
    cli("--sandbox", "things", "create", OTHER)
    listed = {b["serial"]: b for b in cli.json("--sandbox", "things", "list")}
    assert listed[OTHER]["last_click"] is None and listed[OTHER]["shadow_error"] is None
    table = cli("--sandbox", "things", "list")
    row = next(line for line in table.stdout.splitlines() if OTHER in line)
    assert row.count(" - ") == 2  # last click and battery
    assert "could not be read" not in table.stderr


def test_the_role_may_write_the_buttons_shadows_only_and_follows_them(cli, sandbox):
    deploy(cli)
    arn = f"arn:aws:iot:{sandbox['region']}:{sandbox['account']}:thing"
    client("iot").create_thing(thingName="someone-elses-thing")
    assert shadow_grant() == [f"{arn}/{SERIAL}"]

    cli("--sandbox", "things", "create", OTHER)  # a button added after the deploy
    assert shadow_grant() == [f"{arn}/{SERIAL}", f"{arn}/{OTHER}"]
    cli("--sandbox", "things", "delete", OTHER, "--yes")
    assert shadow_grant() == [f"{arn}/{SERIAL}"]
    # A deploy with nothing changed keeps it, and finds the role up to date.
    assert cli.json("--sandbox", "notify", "deploy")["up_to_date"] is True


def test_a_shadow_that_cannot_be_written_costs_the_click_nothing(cli, sandbox):
    deploy(cli)
    # A click from a serial that has no thing: the shadow write is refused (404 Thing not found).
    tested = cli.json("--sandbox", "notify", "test", "NOTATHING0000000", "--click", "SINGLE")

    assert tested["ok"] is True
    [sms] = [  # what the notifier sent (its receipt may be in the outbox too, as a callback)
        e
        for e in cli.json("sandbox", "outbox")
        if e.get("resource") == "Messages" and e.get("kind") != "callback"
    ]
    assert sms["fields"]["To"] == SMS_TO and "NOTATHING0000000" in sms["fields"]["Body"]
    assert (
        "could not write the shadow of NOTATHING0000000 (ResourceNotFoundException)"
        in (tested["log_tail"])
    )


def test_an_escalation_is_on_the_shadow_until_it_ends(cli, sandbox, isolated_env):
    escalation.deploy(cli, isolated_env, [[escalation.ALICE]])
    cli("sandbox", "phone", escalation.ALICE, "--call", "no-answer")

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation.escalation_of(cli, "exhausted")
    ended = wait_for_outcome("exhausted")
    assert ended["escalation"] == ended["alarm"] == alarm["alarm"] and ended["type"] == "LONG"

    cli("sandbox", "phone", escalation.ALICE, "--reset")  # she answers and presses 1
    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation.escalation_of(cli, "acknowledged")
    ended = wait_for_outcome("acknowledged")
    assert ended["escalation"] == ended["alarm"] == alarm["alarm"]


def wait_for_outcome(outcome: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (click := last_click())["outcome"] != outcome:
        assert time.monotonic() < deadline, f"the shadow never said {outcome}: {click}"
        time.sleep(0.3)
    return click
