"""The first click after a deploy: `sim click --wait` and `sandbox outbox --wait N` wait for the
click's SMS and calls, so the outbox read right after holds them (the cold Lambda worker makes
the first ones arrive a moment after the click)."""

from __future__ import annotations

import time

from support import notify_init_args

SERIAL = "G030JF0553648RUH"
SMS_TO = "+15551230001"
CALL_TO = "+15551230002"


def deploy_notifier(cli, debounce: int | None = None):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO), "--call", CALL_TO)
    if debounce is not None:
        from iotbutton_cli.notify.config import config_path

        config = config_path()
        text = config.read_text()
        assert "debounce: 5" in text  # notify init's default, which this replaces
        config.write_text(text.replace("debounce: 5", f"debounce: {debounce}"))
    cli("--sandbox", "notify", "deploy")


def configured(cli, click):
    config = cli.json("--sandbox", "notify", "show")["config"]["clicks"][click]
    return len(config["sms"]) + len(config["call"])


def test_the_first_click_with_wait_is_in_the_outbox_at_once(cli, sandbox):
    # A window no busy machine crosses between the LONG clicks below (the default's 5 s can be).
    deploy_notifier(cli, debounce=600)
    expected = configured(cli, "DOUBLE")
    assert expected >= 1

    said = cli("--sandbox", "sim", "click", "--double", "--wait")
    outbox = [  # no polling: --wait did it
        e for e in cli.json("sandbox", "outbox") if e.get("kind") != "callback"
    ]

    assert len(outbox) == expected
    assert {(e["resource"], e["fields"]["To"]) for e in outbox} <= {
        ("Messages", SMS_TO),
        ("Calls", CALL_TO),
    }
    assert "Twilio received: " in said.stdout
    assert f"SMS to {SMS_TO} [queued]" in said.stdout

    # --json keeps its shape: the clicks published, nothing else.
    # Two LONG clicks within the debounce window are one alarm: --wait waits for that one.
    sent = cli.json("--sandbox", "sim", "click", "--long", "--count", "2", "--wait")
    assert [one["payload"]["clickType"] for one in sent] == ["LONG", "LONG"]
    requests = [e for e in cli.json("sandbox", "outbox") if e.get("kind") != "callback"]
    assert len(requests) == expected + configured(cli, "LONG")
    # The repeat's own invocation may still be running (it sends nothing, so --wait has no
    # reason to wait for it): its alarm item appears, and is decided, within moments.
    deadline = time.monotonic() + 15
    while True:
        alarms = cli.json("--sandbox", "notify", "history")
        states = [a["state"] for a in alarms if a["click"] == "LONG"]
        # Past "new": the two invocations run at once, and the repeat's is decided a moment
        # after its item is written.
        if (len(states) >= 2 and "new" not in states) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # One alarm, one repeat of it; which click's invocation claimed the alarm first is the
    # Lambda service's order, not the clicks' (the history lists them by click time).
    assert sorted(states) == ["alarm", "repeat"]
    # Again at once: a repeat of that alarm, so there is nothing to wait for.
    said = cli("--sandbox", "sim", "click", "--long", "--wait").stdout
    assert "within the debounce window" in said


def test_outbox_wait_waits_for_n_entries(cli, sandbox):
    deploy_notifier(cli)
    expected = configured(cli, "DOUBLE")
    cli("--sandbox", "sim", "click", "--double")

    entries = cli.json("sandbox", "outbox", "--wait", str(expected))

    assert len(entries) >= expected
    human = cli("sandbox", "outbox", "--wait", str(expected))
    assert SMS_TO in human.stdout


def test_outbox_wait_gives_up_with_outbox_timeout(cli, sandbox):
    result = cli("sandbox", "outbox", "--wait", "1", "--timeout", "0.5", code=1)

    assert "The outbox received 0 of the 1 SMS and calls waited for within 0.5 s." in result.stderr
    assert "notify logs" in result.stderr
    assert "Traceback" not in result.stderr


def test_click_wait_needs_a_deployed_notifier(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)

    result = cli("--sandbox", "sim", "click", "--wait", code=1)

    assert "notifier is not deployed" in result.stderr
    assert "`iotbutton --sandbox notify deploy`" in result.stderr  # pasteable as printed


def test_click_wait_needs_the_sandbox(cli):
    result = cli("sim", "click", "--wait", code=2)

    assert "--wait works in the sandbox only" in result.stderr


def test_outbox_wait_without_a_sandbox_says_so(cli):
    result = cli("sandbox", "outbox", "--wait", "1", code=1)

    assert "The sandbox is not running." in result.stderr
