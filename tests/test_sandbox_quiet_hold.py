"""Quiet hours that hold, end to end through the CLI and the background sandbox: a SINGLE waits
in the alarm table, LONG still rings, and the release schedule's run at the end of the hours (or
`notify release`) sends what was held."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from support import notify_init_args

GRANDMA = "G030JF0553648RUH"
ALICE, BOB = "+15551230001", "+15551230002"
SCHEDULE = "iotbutton/release-held"


def deploy_holding(cli, isolated_env, then: str = "hold") -> str:
    """A button, Alice texted and Bob called, quiet hours from an hour ago to an hour ahead."""
    now = datetime.now(timezone.utc)
    start, end = ((now + timedelta(minutes=m)).strftime("%H:%M") for m in (-60, 60))
    cli("--sandbox", "things", "create", GRANDMA)
    cli("--sandbox", *notify_init_args("Grandma", ALICE), "--call", BOB)
    config = isolated_env / "config" / "notify.yaml"
    config.write_text(
        config.read_text() + f'quiet_hours: {{from: "{start}", to: "{end}", then: {then}}}\n'
    )
    cli("--sandbox", "notify", "deploy")
    return end


def sent(cli) -> list[tuple[str, str]]:
    return [
        (e["resource"], e["fields"]["To"])
        for e in cli.json("sandbox", "outbox")
        if e.get("resource") in ("Messages", "Calls") and e.get("http_status") == 201
    ]


def wait_for(check, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def alarm_of(cli, click: str) -> dict[str, Any] | None:
    return next(
        (a for a in cli.json("--sandbox", "notify", "history") if a["click"] == click), None
    )


def test_a_held_single_goes_out_when_the_release_schedule_runs(cli, sandbox, isolated_env):
    end = deploy_holding(cli, isolated_env)
    schedules = cli.json("sandbox", "schedules")
    listed = {f"{s['group']}/{s['name']}": s for s in schedules}
    hour, minute = (int(part) for part in end.split(":"))
    assert listed[SCHEDULE]["expression"] == f"cron({minute} {hour} * * ? *)"

    cli("--sandbox", "sim", "click", GRANDMA, "--single", "--wait")
    held = wait_for(
        lambda: (a := alarm_of(cli, "SINGLE")) and a["state"] == "held" and a, "the hold"
    )
    assert held["held_until"] == f"until {end} UTC" and held["deliveries"] == []
    shown = cli.json("--sandbox", "things", "show", GRANDMA)["last_click"]
    assert shown["type"] == "SINGLE" and shown["outcome"] == "held"
    refused = cli.json("--sandbox", "notify", "retry", held["alarm"], code=1)["error"]
    assert refused["code"] == "alarm-is-held"

    cli("--sandbox", "sim", "click", GRANDMA, "--long", "--wait")  # LONG always rings
    wait_for(lambda: ("Calls", BOB) in sent(cli), "the LONG call")
    assert alarm_of(cli, "SINGLE")["state"] == "held"  # the SINGLE still waits
    before = sent(cli)

    ran = cli.json("sandbox", "schedules", "run", SCHEDULE)
    assert ran["scheduled_time"].endswith(f"T{end}:00Z")

    released = wait_for(lambda: len(sent(cli)) >= len(before) + 2 and sent(cli), "the release")
    # As configured, SMS and call: the hours are over at the time the run stands for.
    assert sorted(released[len(before) :]) == [("Calls", BOB), ("Messages", ALICE)]
    released = wait_for(
        lambda: (a := alarm_of(cli, "SINGLE")) and a["released_at"] and a, "the release"
    )
    assert released["state"] == "alarm" and len(released["deliveries"]) == 2
    # The LONG is the newer click: the release does not overwrite the shadow's last click.
    assert cli.json("--sandbox", "things", "show", GRANDMA)["last_click"]["type"] == "LONG"


def test_notify_release_sends_what_is_held_now_as_sms(cli, sandbox, isolated_env):
    end = deploy_holding(cli, isolated_env)
    waited = cli("--sandbox", "sim", "click", GRANDMA, "--single", "--wait").stdout
    assert f"Quiet hours hold this click until {end} UTC" in " ".join(waited.split())
    wait_for(lambda: (a := alarm_of(cli, "SINGLE")) and a["state"] == "held", "the hold")

    result = cli.json("--sandbox", "notify", "release")

    assert result["ok"] is True and len(result["released"]) == 1
    assert sorted((r["channel"], r["to"]) for r in result["released"][0]["results"]) == [
        ("sms", ALICE),
        ("sms", BOB),  # texted, not called: it is still quiet
    ]
    assert cli.json("--sandbox", "notify", "release")["released"] == []
    assert cli("--sandbox", "notify", "release").stdout.strip() == "No alarm is held."


def test_a_deploy_that_stops_holding_sends_what_is_held(cli, sandbox, isolated_env):
    deploy_holding(cli, isolated_env)
    cli("--sandbox", "sim", "click", GRANDMA, "--single", "--wait")
    wait_for(lambda: (a := alarm_of(cli, "SINGLE")) and a["state"] == "held", "the hold")
    config = isolated_env / "config" / "notify.yaml"
    config.write_text(config.read_text().replace("then: hold", "then: sms-only"))

    cli("--sandbox", "notify", "deploy")

    wait_for(lambda: ("Messages", BOB) in sent(cli), "the SMS that was held")
    assert ("Messages", ALICE) in sent(cli) and ("Calls", BOB) not in sent(cli)
    assert SCHEDULE not in {f"{s['group']}/{s['name']}" for s in cli.json("sandbox", "schedules")}
