"""notify.yaml's `escalation:`: checked with file:line errors, costed by `notify check`, and
handed to the notifier in the shape its parse_config accepts."""

from __future__ import annotations

import pytest

from iotbutton_cli.errors import ExitStatus
from iotbutton_cli.notifier_lambda import contract
from iotbutton_cli.notify import config as notify_config
from test_notify_config import write_config

HEAD = """\
account_sid: "AC0123456789abcdef0123456789abcdef"
from: "+15005550006"
person: "Grandma"
clicks:
  LONG:
    sms: ["+15551230009"]
    message: "Help! {person} needs you."
"""
ESCALATION = """\
    escalation:
      ring: 20
      rounds: 2
      steps:
        - call: "+15551230001"
        - call: ["+15551230002", "+15551230003"]
          ring: 30
      exhausted: "Nobody acknowledged {person}'s alarm. Call 911."
"""
GOOD = HEAD + ESCALATION


@pytest.fixture(autouse=True)
def _no_twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_an_escalation_reaches_the_notifier_as_it_was_written():
    config = notify_config.parse_config_text(GOOD)

    parsed = contract.parse_config(config.lambda_document())
    escalation = parsed.clicks["LONG"].escalation
    assert escalation == contract.Escalation(
        steps=(
            contract.EscalationStep(("+15551230001",), 20),
            contract.EscalationStep(("+15551230002", "+15551230003"), 30),
        ),
        rounds=2,
        exhausted="Nobody acknowledged {person}'s alarm. Call 911.",
    )
    assert escalation.after((0, 0)) == (0, 1)
    assert escalation.after((0, 1)) == (1, 0)
    assert escalation.after((1, 1)) is None


def test_check_says_what_an_unanswered_alarm_costs(cli):
    write_config(GOOD)

    summary = cli.json("notify", "check")
    escalation = summary["clicks"]["LONG"]["escalation"]
    # Per step: ring + 5 s to connect + the message, question and goodbye spoken at 15
    # characters a second (24 + 26 + 28 = 78 characters: 5.2 s) + 6 s for the key = ring +
    # 16.2 s; two steps (20 s and 30 s rings), two rounds: 2 x 82.4 = 164.8 s.
    assert escalation["worst_case_seconds"] == 165
    assert escalation["calls"] == 6
    assert escalation["billed_minutes_at_most"] == 6
    shown = cli("notify", "check").stdout
    assert "LONG escalates: +15551230001 (20 s) then +15551230002 + +15551230003 (30 s)" in (
        " ".join(shown.split())
    )
    assert "6 calls" in shown


@pytest.mark.parametrize(
    ("change", "line", "detail"),
    [
        ("      ring: 2", 9, "clicks.LONG.escalation.ring must be a whole number from 5 to 600"),
        ("      rounds: 9", 10, "clicks.LONG.escalation.rounds must be a whole number from 1 to 5"),
        (
            '        - call: "555 0123"',
            12,
            "'555 0123' in clicks.LONG.escalation.steps[1].call is not an E.164 phone number",
        ),
        ("        - ring: 30", 12, "clicks.LONG.escalation.steps[1].call is missing"),
        ('      exhausted: "{who}"', 15, "clicks.LONG.escalation.exhausted: unknown template"),
        ("      rings: 20", 9, "unknown setting 'rings' in clicks.LONG.escalation"),
    ],
)
def test_a_bad_escalation_names_file_and_line(cli, change, line, detail):
    lines = GOOD.splitlines()
    lines[line - 1] = change
    path = write_config("\n".join(lines) + "\n")

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"].startswith(f"{path}:{line}: {detail}")
    assert error["exit_status"] == int(ExitStatus.USAGE)


def test_an_escalation_without_exhausted_text_is_refused(cli):
    path = write_config(
        GOOD.replace('      exhausted: "Nobody acknowledged {person}\'s alarm. Call 911."\n', "")
    )

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"].startswith(f"{path}:8: clicks.LONG.escalation.exhausted is missing")


def test_an_escalation_needs_the_auth_token_not_an_api_key(cli):
    text = GOOD.replace('from: "', 'api_key_sid: "SK' + "0" * 32 + '"\nfrom: "', 1)
    path = write_config(text)

    error = cli.json("notify", "check", code=2)["error"]

    assert error["code"] == "notify-config-escalation-api-key"
    assert error["message"] == (
        f"{path}:2: LONG has an escalation, which needs the account's auth token"
    )
    assert "TWILIO_AUTH_TOKEN" in error["hint"]


def test_an_escalation_alone_is_someone_to_reach(cli):
    """A click type with only an escalation is not a click type that does nothing."""
    write_config(GOOD.replace('    sms: ["+15551230009"]\n', ""))

    summary = cli.json("notify", "check")

    assert summary["recipients"] == 3
    assert "do nothing" not in cli("notify", "check").stderr


def test_send_from_here_calls_each_escalation_number_once(cli, twilio_standin, monkeypatch):
    """`notify send` checks numbers: an escalation's get one plain call each (the escalation
    itself needs the deployed function's callbacks)."""
    from support import TWILIO_ACCOUNT_SID, TWILIO_SECRET

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    write_config(GOOD.replace("AC0123456789abcdef0123456789abcdef", TWILIO_ACCOUNT_SID))

    results = cli.json(
        "notify", "send", "--click", "LONG", "--twilio-api-base", twilio_standin.base_url
    )

    assert [(r["channel"], r["to"], r["status"]) for r in results] == [
        ("sms", "+15551230009", "queued"),
        ("call", "+15551230001", "queued"),
        ("call", "+15551230002", "queued"),
        ("call", "+15551230003", "queued"),
    ]


def test_deploy_refuses_an_escalation_with_an_api_key_from_the_environment(cli, monkeypatch):
    """TWILIO_API_KEY wins over the file's (absent) api_key_sid: its secret cannot check the
    callbacks an escalation moves on, so the deploy stops before any AWS call."""
    monkeypatch.setenv("TWILIO_API_KEY", "SK" + "1" * 32)
    monkeypatch.setenv("TWILIO_API_SECRET", "api-key-secret-value")
    write_config(GOOD)

    error = cli.json("notify", "deploy", code=2)["error"]

    assert error["code"] == "notify-config-escalation-api-key"
    assert "TWILIO_API_SECRET" in error["message"] and "TWILIO_AUTH_TOKEN" in error["hint"]
    assert "api-key-secret-value" not in str(error)


def test_a_number_in_call_and_in_the_escalation_is_refused(cli):
    path = write_config(GOOD.replace('    sms: ["+15551230009"]\n', '    call: ["+15551230002"]\n'))

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"] == (
        f"{path}:13: +15551230002 is in clicks.LONG.call and in "
        "clicks.LONG.escalation.steps[2].call: it would get two calls at once"
    )
