"""`notify retry`: an alarm that did not reach someone is sent again to them, and only to them,
through the sandbox (the Twilio stand-in plays a phone that is off, then one that is on)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support import notify_init_args

SERIAL = "G030JF0553648RUH"
SMS_TO = "+15551230001"
CALL_TO = "+15551230002"


def deploy(cli):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO), "--call", CALL_TO)
    cli("--sandbox", "notify", "deploy")


def settled(cli, want: dict[str, str]) -> dict:
    """The one alarm, once its deliveries' Twilio statuses are ``want`` (or after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        [alarm] = cli.json("--sandbox", "notify", "history")
        final = {d["channel"]: d["twilio_status"] for d in alarm["deliveries"]}
        if final == want or time.monotonic() > deadline:
            return alarm
        time.sleep(0.3)


def opened(cli, count: int) -> list[dict]:
    """The history once ``count`` alarms are past "new" (their invocations decided), or 30 s."""
    deadline = time.monotonic() + 30
    while True:
        alarms = cli.json("--sandbox", "notify", "history")
        decided = [a for a in alarms if a["state"] != "new"]
        if len(decided) >= count or time.monotonic() > deadline:
            return alarms
        time.sleep(0.2)


def requests(cli) -> list[tuple[str, str]]:
    entries = cli.json("sandbox", "outbox")
    return [(e["resource"], e["fields"]["To"]) for e in entries if e.get("kind") != "callback"]


def test_retry_resends_only_what_did_not_get_through(cli, sandbox):
    deploy(cli)
    phones = Path(sandbox["outbox"]).parent / "phones.json"
    phones.write_text(json.dumps({SMS_TO: {"sms": "undelivered", "sms_error": 30003}}))
    cli("--sandbox", "sim", "click", "--long", "--wait")
    alarm = settled(cli, {"sms": "undelivered", "call": "completed"})
    assert [(d["channel"], d["reached"]) for d in alarm["deliveries"]] == [
        ("sms", False),
        ("call", True),
    ]
    assert "1 deliveries did not get through." in cli("--sandbox", "notify", "history").stderr

    phones.write_text("{}")  # the phone is on again
    result = cli.json("--sandbox", "notify", "retry", alarm["alarm"])

    assert result["ok"] is True
    assert result["resent"] == [{"channel": "sms", "to": SMS_TO, "was": "undelivered"}]
    assert [(r["channel"], r["to"], r["status"]) for r in result["results"]] == [
        ("sms", SMS_TO, "queued")
    ]
    assert sorted(requests(cli)) == [("Calls", CALL_TO), ("Messages", SMS_TO), ("Messages", SMS_TO)]
    again = settled(cli, {"sms": "delivered", "call": "completed"})
    assert [d["reached"] for d in again["deliveries"]] == [True, True]
    assert again["deliveries"][0]["attempts"] == 2
    # Everything got through now: a second retry sends nothing.
    nothing = cli("--sandbox", "notify", "retry", alarm["alarm"]).stdout
    assert "Nothing to resend" in nothing
    assert len(requests(cli)) == 3


def test_retry_refuses_unknown_alarms_and_repeats(cli, sandbox):
    deploy(cli)
    cli("--sandbox", "sim", "click", "--double", "--count", "2", "--wait")
    # The two clicks' invocations run at once: whichever claims the button first is the alarm.
    # --wait waits for the alarm's messages; the repeat sends none, so its invocation may still
    # be between opening its record ("new") and calling it a repeat.
    alarms = {a["state"]: a for a in opened(cli, 2)}
    assert sorted(alarms) == ["alarm", "repeat"]

    repeat = cli.json("--sandbox", "notify", "retry", alarms["repeat"]["alarm"], code=1)["error"]
    unknown = cli.json("--sandbox", "notify", "retry", "G030-NOPE-1", code=1)["error"]

    assert repeat["code"] == "alarm-is-a-repeat" and alarms["alarm"]["alarm"] in repeat["hint"]
    assert unknown["code"] == "alarm-not-found" and "notify history" in unknown["hint"]
