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
