"""Twilio down for every retry, through the CLI and the real background sandbox: the click ends
in the notifier's on-failure destination, the owner is told by SNS, `notify history` says the
alarm was dropped, and `notify retry` delivers it, once, when Twilio is back."""

from __future__ import annotations

import time

from support import notify_init_args

SERIAL = "G030JF0553648RUH"
ALICE, BOB = "+15551230001", "+15551230002"
OWNER = "+15551230009"


def owner_messages(cli) -> list[dict]:
    return [entry for entry in cli.json("sandbox", "outbox") if entry.get("kind") == "sns"]


def twilio_requests(cli) -> list[dict]:
    """What Twilio received (not its callbacks, not SNS's messages)."""
    return [e for e in cli.json("sandbox", "outbox") if e.get("kind") not in ("sns", "callback")]


def test_twilio_down_for_every_retry_tells_the_owner_and_retry_delivers_it(
    cli, sandbox, isolated_env
):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", ALICE), "--sms", BOB)
    config = isolated_env / "config" / "notify.yaml"
    config.write_text(config.read_text() + f'\nowner:\n  sms: "{OWNER}"\n')
    cli("--sandbox", "notify", "deploy")
    cli("sandbox", "phone", ALICE, "--outage")

    cli("--sandbox", "sim", "click", "--long")
    deadline = time.monotonic() + 60
    while not owner_messages(cli):
        assert time.monotonic() < deadline, "the owner was not told"
        time.sleep(0.5)

    [told] = owner_messages(cli)
    assert told["protocol"] == "sms" and told["to"] == OWNER
    assert f"An alarm from Grandma's button {SERIAL} (LONG, " in told["body"]
    assert f"Not reached: {ALICE}." in told["body"] and BOB not in told["body"]
    alarm_id = told["body"].rsplit("notify retry ", 1)[1]
    requests = twilio_requests(cli)
    to_alice = [e["http_status"] for e in requests if e["fields"]["To"] == ALICE]
    to_bob = [e["http_status"] for e in requests if e["fields"]["To"] == BOB]
    assert to_alice == [503] * 9  # Lambda's 3 attempts, each with the notifier's 3 tries
    assert to_bob == [201]  # Bob's got through the first time and was never sent again

    [alarm] = cli.json("--sandbox", "notify", "history")
    assert alarm["alarm"] == alarm_id
    assert alarm["dropped"]["condition"] == "RetriesExhausted"
    assert alarm["dropped"]["attempts"] == 3
    assert alarm["dropped"]["owner_told_at"] is not None
    assert "dropped" in cli("--sandbox", "notify", "history").stdout

    cli("sandbox", "phone", ALICE, "--reset")  # Twilio is back
    retried = cli.json("--sandbox", "notify", "retry", alarm_id)

    assert retried["ok"] is True
    assert [(r["channel"], r["to"], r["status"]) for r in retried["results"]] == [
        ("sms", ALICE, "queued")
    ]
    after = twilio_requests(cli)
    assert [e["http_status"] for e in after if e["fields"]["To"] == ALICE][-1] == 201
    # Told once (on AWS the errors alarm, which the sandbox does not evaluate, would also tell).
    assert len(owner_messages(cli)) == 1
    cli.json("--sandbox", "notify", "retry", alarm_id)  # everything got through now
    assert twilio_requests(cli) == after  # nothing sent twice
