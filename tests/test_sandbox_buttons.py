"""Two buttons for two people, through the CLI and the real background sandbox: each click
becomes its own button's message, to its own button's recipients."""

from __future__ import annotations

import time

from support import TWILIO_ACCOUNT_SID, notify_init_args

GRANDMA, GRANDPA = "G030JF0553648RUH", "G030JF0553648RUX"
ALICE, BOB = "+15551230001", "+15551230002"

CONFIG = f"""\
account_sid: "{TWILIO_ACCOUNT_SID}"
from: "+15005550006"
person: "someone"
address: "12 High Street"
clicks:
  SINGLE:
    sms: ["{ALICE}"]
    message: "{{person}} ({{fields.room}}, {{address}}) pressed the button."
buttons:
  {GRANDMA}:
    person: "Grandma"
    fields: {{room: "bedroom"}}
  {GRANDPA}:
    person: "Grandpa"
    fields: {{room: "garden shed"}}
    clicks:
      SINGLE:
        sms: ["{BOB}"]
unlisted: refuse
"""


def texts(cli) -> list[tuple[str, str]]:
    return [
        (e["fields"]["To"], e["fields"]["Body"])
        for e in cli.json("sandbox", "outbox")
        if e.get("resource") == "Messages" and e.get("http_status") == 201
    ]


def test_two_buttons_two_people_two_messages_to_two_recipients(cli, sandbox, isolated_env):
    for serial in (GRANDMA, GRANDPA):
        cli("--sandbox", "things", "create", serial)
    cli("--sandbox", *notify_init_args("someone", ALICE))
    (isolated_env / "config" / "notify.yaml").write_text(CONFIG)
    cli("--sandbox", "notify", "deploy")

    cli("--sandbox", "sim", "click", GRANDMA, "--single")
    cli("--sandbox", "sim", "click", GRANDPA, "--single")
    deadline = time.monotonic() + 30
    while len(texts(cli)) < 2:
        assert time.monotonic() < deadline, texts(cli)
        time.sleep(0.3)

    assert sorted(texts(cli)) == [
        (ALICE, "Grandma (bedroom, 12 High Street) pressed the button."),
        (BOB, "Grandpa (garden shed, 12 High Street) pressed the button."),
    ]


def test_one_low_battery_message_per_period(cli, sandbox, isolated_env):
    cli("--sandbox", "things", "create", GRANDMA)
    cli("--sandbox", *notify_init_args("someone", ALICE))
    config = isolated_env / "config" / "notify.yaml"
    config.write_text(
        CONFIG
        + f'battery: {{warn_below_mv: 1500, notify: ["{BOB}"], at_most_every: 1d}}\n'
        + "debounce: 0\n"
    )
    cli("--sandbox", "notify", "deploy")

    for _ in range(3):
        cli("--sandbox", "sim", "click", GRANDMA, "--single", "--battery", "1400", "--wait")
    deadline = time.monotonic() + 30
    while len([t for t in texts(cli) if t[0] == ALICE]) < 3:
        assert time.monotonic() < deadline, texts(cli)
        time.sleep(0.3)

    warned = [body for to, body in texts(cli) if to == BOB]
    assert warned == [
        "The battery of Grandma's button G030JF0553648RUH is low (1400 mV, below 1500 mV). "
        "Replace it soon, so that it works when it is needed."
    ]


def test_quiet_hours_turn_a_single_call_into_an_sms(cli, sandbox, isolated_env):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    window = [(now + timedelta(minutes=m)).strftime("%H:%M") for m in (-60, 60)]
    cli("--sandbox", "things", "create", GRANDMA)
    cli("--sandbox", *notify_init_args("Grandma", ALICE), "--call", BOB)
    config = isolated_env / "config" / "notify.yaml"
    config.write_text(
        config.read_text()
        + f'quiet_hours: {{from: "{window[0]}", to: "{window[1]}", then: sms-only}}\n'
    )
    cli("--sandbox", "notify", "deploy")

    cli("--sandbox", "sim", "click", GRANDMA, "--single", "--wait")
    cli("--sandbox", "sim", "click", GRANDMA, "--long", "--wait")
    deadline = time.monotonic() + 30
    while len(requests(cli)) < 4:
        assert time.monotonic() < deadline, requests(cli)
        time.sleep(0.3)

    sent = requests(cli)
    single = [(kind, to) for kind, to, body in sent if "pressed the button" in body]
    assert sorted(single) == [("Messages", ALICE), ("Messages", BOB)]  # Bob texted, not called
    calls = [to for kind, to, _ in sent if kind == "Calls"]
    assert calls == [BOB]  # LONG always rings


def requests(cli) -> list[tuple[str, str, str]]:
    return [
        (e["resource"], e["fields"]["To"], e["fields"].get("Body") or e["fields"].get("Twiml", ""))
        for e in cli.json("sandbox", "outbox")
        if e.get("resource") in ("Messages", "Calls")
        and e.get("http_status") == 201
        and "fields" in e
    ]


def test_retry_of_a_buttons_alarm_goes_to_its_own_recipients_only(cli, sandbox, isolated_env):
    """Grandpa's SINGLE texts Bob only: when Twilio was down for Bob, `notify retry` resends
    to Bob, and never to Alice, whom only the defaults (and Grandma) text."""
    import json
    from pathlib import Path

    cli("--sandbox", "things", "create", GRANDPA)
    cli("--sandbox", *notify_init_args("someone", ALICE))
    (isolated_env / "config" / "notify.yaml").write_text(CONFIG)
    cli("--sandbox", "notify", "deploy")
    phones = Path(sandbox["outbox"]).parent / "phones.json"
    phones.write_text(json.dumps({BOB: {"sms": "failed"}}))
    cli("--sandbox", "sim", "click", GRANDPA, "--single", "--wait")
    deadline = time.monotonic() + 30
    while True:
        [alarm] = cli.json("--sandbox", "notify", "history")
        if [(d["to"], d["reached"]) for d in alarm["deliveries"]] == [(BOB, False)]:
            break
        assert time.monotonic() < deadline, alarm
        time.sleep(0.3)
    phones.write_text("{}")

    result = cli.json("--sandbox", "notify", "retry", alarm["alarm"])

    assert [(r["channel"], r["to"]) for r in result["results"]] == [("sms", BOB)]
    sent = [to for to, _body in texts(cli)]
    assert ALICE not in sent
