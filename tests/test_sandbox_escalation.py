"""Escalation end to end, through the CLI and the real background sandbox: a LONG click calls
step by step until someone presses 1, as the Twilio stand-in plays each callee (answers and
presses 1, rings out, is busy, is voicemail), posting the callbacks Twilio would post, signed."""

from __future__ import annotations

import time

from support import TWILIO_ACCOUNT_SID, notify_init_args

SERIAL = "G030JF0553648RUH"
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
SMS_ONLY = "+15551230008"
OWNER = "+15551230009"


def escalation_config(
    steps: list[list[str]], rounds: int = 1, owner: bool = False, ring: int = 20
) -> str:
    listed = "\n".join(
        "        - call: [" + ", ".join(f'"{n}"' for n in step) + "]" for step in steps
    )
    return f"""\
account_sid: "{TWILIO_ACCOUNT_SID}"
from: "+15005550006"
person: "Grandma"
debounce: 0
{f'owner: {{sms: "{OWNER}"}}' if owner else ""}
clicks:
  LONG:
    sms: ["{SMS_ONLY}"]
    message: "URGENT: {{person}} held the button ({{serial}}) and needs help."
    escalation:
      ring: {ring}
      rounds: {rounds}
      steps:
{listed}
      exhausted: "Nobody acknowledged {{person}}'s alarm. Call 911."
"""


def deploy(cli, isolated_env, steps, rounds=1, owner=False, ring=20):
    """``ring`` 20 is 1 s at the sandbox's time scale; 600 (30 s) keeps a step ringing while a
    test acts."""
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", SMS_ONLY))
    config = isolated_env / "config" / "notify.yaml"
    config.write_text(escalation_config(steps, rounds, owner, ring))
    cli("--sandbox", "notify", "deploy")


def outbox(cli) -> list[dict]:
    return cli.json("sandbox", "outbox")


def calls_made(cli) -> list[str]:
    """The numbers Twilio accepted a call to, in order."""
    return [
        e["fields"]["To"]
        for e in outbox(cli)
        if e.get("resource") == "Calls"
        and e.get("http_status") == 201
        and e["method"] == "POST"
        and e["path"].endswith("/Calls.json")
    ]


def texts(cli) -> list[tuple[str, str]]:
    return [
        (e["fields"]["To"], e["fields"]["Body"])
        for e in outbox(cli)
        if e.get("resource") == "Messages" and e.get("http_status") == 201
    ]


def escalation_of(cli, wait_for: str, timeout: float = 60) -> dict:
    """The alarm's escalation once it is in state ``wait_for``."""
    deadline = time.monotonic() + timeout
    while True:
        alarms = cli.json("--sandbox", "notify", "history")
        if alarms and (alarms[-1].get("escalation") or {}).get("state") == wait_for:
            return alarms[-1]
        assert time.monotonic() < deadline, f"never {wait_for}: {alarms}"
        time.sleep(0.3)


def settle(cli, seconds: float = 2.0) -> None:
    """Wait until nothing new reaches the outbox for ``seconds``."""
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < seconds:
        count = len(outbox(cli))
        if count != seen:
            seen, quiet_since = count, time.monotonic()
        time.sleep(0.3)


def test_everyone_fails_and_the_exhausted_text_goes_out_once(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB]], rounds=2, owner=True)
    cli("sandbox", "phone", ALICE, "--call", "no-answer")
    cli("sandbox", "phone", BOB, "--call", "busy")

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation_of(cli, "exhausted")
    settle(cli)

    assert calls_made(cli) == [ALICE, BOB, ALICE, BOB]  # two rounds, one call per step each
    exhausted = [(to, body) for to, body in texts(cli) if "Nobody acknowledged" in body]
    assert sorted(to for to, _ in exhausted) == sorted([SMS_ONLY, ALICE, BOB])
    assert exhausted[0][1] == "Nobody acknowledged Grandma's alarm. Call 911."
    owner = [e for e in outbox(cli) if e.get("kind") == "sns"]
    assert [e["to"] for e in owner] == [OWNER]
    outcomes = [
        (c["round"], c["step"], c["to"], c["outcome"]) for c in alarm["escalation"]["calls"]
    ]
    assert outcomes == [
        (1, 1, ALICE, "no-answer"),
        (1, 2, BOB, "busy"),
        (2, 1, ALICE, "no-answer"),
        (2, 2, BOB, "busy"),
    ]
    shown = cli("--sandbox", "notify", "history").stdout
    print(shown)
    assert "nobody" in shown


def gathers(cli) -> list[dict]:
    """The key presses the stand-in posted, as the outbox has them."""
    return [e for e in outbox(cli) if e.get("kind") == "callback" and e.get("event") == "gather"]


def ack_texts(cli) -> list[tuple[str, str]]:
    return [(to, body) for to, body in texts(cli) if " acknowledged Grandma's alarm at " in body]


def test_the_first_callee_acknowledges(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB]])

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation_of(cli, "acknowledged")
    settle(cli)

    assert calls_made(cli) == [ALICE]  # Bob is never called
    escalation = alarm["escalation"]
    assert escalation["acknowledged_by"] == ALICE
    assert escalation["acknowledged_via"] == "call"
    assert [(c["to"], c["outcome"]) for c in escalation["calls"]] == [(ALICE, "acknowledged")]
    assert [g["digits"] for g in gathers(cli)] == ["1"]
    told = ack_texts(cli)
    assert sorted(to for to, _ in told) == sorted([SMS_ONLY, BOB])  # everyone but Alice
    assert told[0][1].startswith(f"{ALICE} acknowledged Grandma's alarm at ")
    assert "acknowledged by " + ALICE in cli("--sandbox", "notify", "history").stdout


def test_no_answer_then_the_second_acknowledges(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB], [CAROL]])
    cli("sandbox", "phone", ALICE, "--call", "no-answer")

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation_of(cli, "acknowledged")
    settle(cli)

    assert calls_made(cli) == [ALICE, BOB]
    calls = alarm["escalation"]["calls"]
    assert [(c["step"], c["to"], c["outcome"]) for c in calls] == [
        (1, ALICE, "no-answer"),
        (2, BOB, "acknowledged"),
    ]
    assert alarm["escalation"]["acknowledged_by"] == BOB
    assert sorted(to for to, _ in ack_texts(cli)) == sorted([SMS_ONLY, ALICE, CAROL])
    ring = next(e for e in outbox(cli) if e.get("path", "").endswith("/Calls.json"))
    assert ring["fields"]["Timeout"] == "20" and ring["fields"]["MachineDetection"] == "Enable"


def test_voicemail_and_a_hang_up_count_as_no_answer(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB], [CAROL]])
    cli("sandbox", "phone", ALICE, "--call", "machine")
    cli("sandbox", "phone", BOB, "--call", "hangup")

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation_of(cli, "acknowledged")

    assert [(c["to"], c["outcome"]) for c in alarm["escalation"]["calls"]] == [
        (ALICE, "voicemail"),
        (BOB, "answered, no key"),
        (CAROL, "acknowledged"),
    ]
    settle(cli)  # the stand-in records its key press after the notifier has answered it
    assert gathers(cli)[-1]["params"]["To"] == CAROL


def test_two_acknowledgements_at_once_one_wins_and_the_other_is_told(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE, BOB]])  # both ring at once, both press 1

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation_of(cli, "acknowledged")
    settle(cli)

    winner = alarm["escalation"]["acknowledged_by"]
    loser = BOB if winner == ALICE else ALICE
    assert sorted(g["params"]["To"] for g in gathers(cli)) == sorted([ALICE, BOB])
    assert all(g["http_status"] == 200 for g in gathers(cli))
    # The other is told who is coming, by SMS, as everyone else is; only one ack is recorded.
    assert sorted(to for to, _ in ack_texts(cli)) == sorted([SMS_ONLY, loser])
    [history] = cli.json("--sandbox", "notify", "history")
    assert history["escalation"]["acknowledged_by"] == winner


def test_acknowledged_from_a_terminal(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB]], ring=600)
    cli("sandbox", "phone", ALICE, "--call", "no-answer")

    cli("--sandbox", "sim", "click", "--long")
    alarm_id = escalation_of(cli, "ringing")["alarm"]
    acked = cli.json("--sandbox", "notify", "ack", alarm_id, "--by", "Dana")

    assert acked["acknowledged"] is True and acked["by"] == "Dana"
    assert set(acked) == {"alarm", "acknowledged", "state", "by", "at", "error"}  # the reference
    again = cli.json("--sandbox", "notify", "ack", alarm_id, "--by", "Eve")
    assert again["acknowledged"] is False and again["by"] == "Dana"
    alarm = escalation_of(cli, "acknowledged")
    assert alarm["escalation"]["acknowledged_via"] == "terminal"
    settle(cli)
    assert BOB not in calls_made(cli)  # the list stopped where it was
    assert sorted(to for to, _ in ack_texts(cli)) == sorted([SMS_ONLY, ALICE, BOB])
    assert all(body.startswith("Dana acknowledged") for _, body in ack_texts(cli))


def test_no_such_alarm_to_acknowledge_is_a_one_line_error(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE]])

    error = cli.json("--sandbox", "notify", "ack", "G030JF0553648RUH-LONG-1", code=1)["error"]

    assert error["code"] == "alarm-not-found"


def function_url(cli) -> str:
    """The notifier's function URL, as its calls' StatusCallback names it."""
    create = next(e for e in outbox(cli) if e.get("path", "").endswith("/Calls.json"))
    return create["fields"]["StatusCallback"].split("?", 1)[0]


def post_signed(url: str, params: dict[str, str], token: str) -> int:
    """POST ``params`` to ``url`` signed as Twilio signs it (its own validator computes it)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from twilio.request_validator import RequestValidator

    bare = url.split("#", 1)[0]
    signature = RequestValidator(token).compute_signature(bare, params)
    request = urllib.request.Request(
        bare,
        data=urllib.parse.urlencode(params).encode(),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_twilio_posting_a_callback_again_moves_the_escalation_once(cli, sandbox, isolated_env):
    from support import TWILIO_SECRET

    deploy(cli, isolated_env, [[ALICE], [BOB], [CAROL]])
    cli("sandbox", "phone", ALICE, "--call", "no-answer")
    cli("sandbox", "phone", BOB, "--call", "busy")
    cli("--sandbox", "sim", "click", "--long")
    escalation_of(cli, "acknowledged")
    settle(cli)
    before, texted = outbox(cli), texts(cli)
    ended = [
        e
        for e in before
        if e.get("kind") == "callback"
        and e.get("event") == "completed"
        and e["status"] != "completed"
    ]
    assert [e["params"]["To"] for e in ended] == [ALICE, BOB]
    urls = {
        e["fields"]["To"]: e["fields"]["StatusCallback"]
        for e in before
        if e.get("path", "").endswith("/Calls.json")
    }

    for entry in ended * 2:  # each end posted twice more, as Twilio's retries would
        assert post_signed(urls[entry["params"]["To"]], entry["params"], TWILIO_SECRET) == 204

    settle(cli)
    assert calls_made(cli) == [ALICE, BOB, CAROL]  # nobody called again, no step skipped
    assert texts(cli) == texted  # nobody told anything twice
    [alarm] = cli.json("--sandbox", "notify", "history")
    assert alarm["escalation"]["acknowledged_by"] == CAROL


def test_a_forged_callback_is_refused_and_changes_nothing(cli, sandbox, isolated_env):
    from support import TWILIO_SECRET

    deploy(cli, isolated_env, [[ALICE], [BOB]], ring=600)
    cli("sandbox", "phone", ALICE, "--call", "no-answer")
    cli("--sandbox", "sim", "click", "--long")
    alarm_id = escalation_of(cli, "ringing")["alarm"]
    while not any(e.get("path", "").endswith("/Calls.json") for e in outbox(cli)):
        time.sleep(0.2)
    create = next(e for e in outbox(cli) if e.get("path", "").endswith("/Calls.json"))
    gather_url = create["fields"]["StatusCallback"].split("#")[0] + "&event=gather"
    press = {
        "AccountSid": TWILIO_ACCOUNT_SID,
        "CallSid": create["sid"],
        "CallStatus": "in-progress",
        "Digits": "1",
        "From": "+15005550006",
        "To": ALICE,
    }

    assert post_signed(gather_url, press, "not-the-auth-token") == 403
    assert post_signed(gather_url, {**press, "To": BOB}, TWILIO_SECRET[:-1] + "x") == 403

    [alarm] = cli.json("--sandbox", "notify", "history")
    assert alarm["escalation"]["state"] == "ringing"
    assert ack_texts(cli) == []
    cli("--sandbox", "notify", "ack", alarm_id)  # end it; the genuine way in still works
    assert escalation_of(cli, "acknowledged")["escalation"]["acknowledged_via"] == "terminal"


def notifier_workers(sandbox_pid: int) -> list[int]:
    """The sandbox's worker processes running the notifier's click handler."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == sandbox_pid and any(b"handler.lambda_handler" in part for part in command):
            found.append(int(stat.parent.name))
    return found


def test_a_worker_crash_mid_escalation_resumes_from_the_table(cli, sandbox, isolated_env):
    """The worker dies while it waits on Twilio to place the second step's call: the callback
    it was handling is posted again (the URL's connection overrides), the next worker finds the
    claim from the table, learns from Twilio that no call was made, and places it, once."""
    import os
    import signal

    from iotbutton_cli.sandbox.client import LOG_FILE, sandbox_dir

    deploy(cli, isolated_env, [[ALICE], [BOB]])
    cli("sandbox", "phone", ALICE, "--call", "no-answer")
    cli("sandbox", "phone", BOB, "--hold", "3")  # Twilio takes 3 s to answer a create to Bob
    log = sandbox_dir() / LOG_FILE
    start = log.stat().st_size

    cli("--sandbox", "sim", "click", "--long")
    deadline = time.monotonic() + 30
    while f"holding a create to {BOB}" not in log.read_text()[start:]:
        assert time.monotonic() < deadline, "the second step was never placed"
        time.sleep(0.05)
    [worker] = notifier_workers(sandbox["pid"])
    os.kill(worker, signal.SIGKILL)

    alarm = escalation_of(cli, "acknowledged", timeout=90)
    settle(cli)

    assert "client gone" in log.read_text()[start:]  # the first attempt never reached Twilio
    assert calls_made(cli) == [ALICE, BOB]  # Bob called once, though two attempts claimed it
    assert [(c["to"], c["outcome"]) for c in alarm["escalation"]["calls"]] == [
        (ALICE, "no-answer"),
        (BOB, "acknowledged"),
    ]
    retried = [
        e
        for e in outbox(cli)
        if e.get("kind") == "callback"
        and e["params"].get("To") == ALICE
        and e["event"] == "completed"
    ]
    assert retried[0]["attempts"] >= 2  # posted again after the worker died (502)


def test_a_callee_twilio_cannot_reach_is_skipped_and_the_next_is_called(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB]])
    cli("sandbox", "phone", ALICE, "--outage")  # Twilio answers 503 for every call to Alice

    cli("--sandbox", "sim", "click", "--long")
    alarm = escalation_of(cli, "acknowledged")

    assert [(c["to"], c["outcome"]) for c in alarm["escalation"]["calls"]] == [
        (ALICE, "failed"),
        (BOB, "acknowledged"),
    ]


def test_twilio_down_for_everyone_is_not_nobody_acknowledged(cli, sandbox, isolated_env):
    """With every call refused there is nobody who did not answer: the click is tried again by
    Lambda, then the owner is told by SNS that it could not be delivered; no "nobody came"."""
    deploy(cli, isolated_env, [[ALICE], [BOB]], owner=True)
    for number in (ALICE, BOB):  # the SMS goes out: only the calls make Lambda try again
        cli("sandbox", "phone", number, "--outage")

    cli("--sandbox", "sim", "click", "--long")
    deadline = time.monotonic() + 90
    while not [e for e in outbox(cli) if e.get("kind") == "sns"]:
        assert time.monotonic() < deadline, "the owner was never told"
        time.sleep(0.5)

    [told] = [e for e in outbox(cli) if e.get("kind") == "sns"]
    assert "could not be delivered" in told["body"] and "Nobody acknowledged" not in told["body"]
    [alarm] = cli.json("--sandbox", "notify", "history")
    assert alarm["dropped"]["condition"] == "RetriesExhausted"
    assert alarm["escalation"]["state"] == "ringing"  # never claimed to be over
    assert not any(
        "Nobody acknowledged" in e.get("fields", {}).get("Body", "") for e in outbox(cli)
    )


def test_a_second_press_while_it_calls_joins_the_escalation(cli, sandbox, isolated_env):
    """Grandma presses again because nobody came yet: the calls do not start over (nobody is
    rung twice at once); the second press is an alarm of its own (its SMS goes out) that
    joined the first's escalation."""
    deploy(cli, isolated_env, [[ALICE], [BOB]], ring=600)
    cli("sandbox", "phone", ALICE, "--call", "no-answer")

    cli("--sandbox", "sim", "click", "--long")
    first = escalation_of(cli, "ringing")["alarm"]
    cli("--sandbox", "sim", "click", "--long")
    deadline = time.monotonic() + 30
    while True:  # until the second press has been handled, not only opened
        alarms = cli.json("--sandbox", "notify", "history")
        second = alarms[-1]
        if len(alarms) == 2 and (second["joined_escalation"] or second["escalation"]):
            break
        assert time.monotonic() < deadline, alarms
        time.sleep(0.3)

    assert second["joined_escalation"] == first and second["escalation"] is None
    shown = cli("--sandbox", "notify", "history").stdout
    assert f"{second['alarm']} joined the escalation of {first}, which was still calling" in shown
    assert calls_made(cli) == [ALICE]  # once
    cli("--sandbox", "notify", "ack", first, "--by", "Dana [/b]")  # markup in a name is text
    shown = cli("--sandbox", "notify", "history").stdout
    assert "acknowledged by Dana [/b]" in " ".join(shown.split())


def test_notify_test_runs_a_real_escalation(cli, sandbox, isolated_env):
    deploy(cli, isolated_env, [[ALICE], [BOB]])
    cli("sandbox", "phone", ALICE, "--call", "busy")

    tested = cli.json("--sandbox", "notify", "test", SERIAL, "--click", "LONG")

    assert tested["ok"] is True
    assert [(c["to"], c["step"]) for c in tested["payload"]["escalation"]] == [(ALICE, "0.0")]
    assert escalation_of(cli, "acknowledged")["escalation"]["acknowledged_by"] == BOB
    shown = cli("--sandbox", "notify", "test", SERIAL, "--click", "LONG")
    assert "calling real phones until someone presses 1" in " ".join(shown.stderr.split())
