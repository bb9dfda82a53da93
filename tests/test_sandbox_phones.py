"""`iotbutton sandbox phone` and `sandbox phones`: the running sandbox's phone table, through the
CLI, against the real background sandbox process."""

from __future__ import annotations

import base64
import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from support import TWILIO_ACCOUNT_SID, TWILIO_SECRET, notify_init_args

SMS_TO, CALL_TO, DOWN = "+15551230001", "+15551230002", "+15005550101"
ANSWERS = {"press": "1", "hold": 0}  # a person who presses 1, a Twilio that answers at once


def phones_file(sandbox: dict[str, Any]) -> Path:
    return Path(sandbox["outbox"]).parent / "phones.json"


def one_error_line(result: Any) -> str:
    """The error of a failed command: one `Error:` line and one `Hint:` line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["Error", "Hint"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return str(lines[0])


def test_phone_writes_merges_lists_and_resets_and_sandbox_stop_forgets(cli, sandbox):
    path = phones_file(sandbox)
    assert cli.json("sandbox", "phones") == {}
    assert "Every number is on" in cli("sandbox", "phones").stderr

    set_sms = cli.json("sandbox", "phone", SMS_TO, "--sms", "undelivered", "--sms-error", "30005")
    assert set_sms == {
        SMS_TO: {
            "sms": "undelivered",
            "sms_error": 30005,
            "call": "completed",
            **ANSWERS,
            "outage": False,
        }
    }
    merged = cli.json("sandbox", "phone", SMS_TO, "--call", "busy")  # the SMS setting stays
    assert merged[SMS_TO] == {
        "sms": "undelivered",
        "sms_error": 30005,
        "call": "busy",
        **ANSWERS,
        "outage": False,
    }
    cli("sandbox", "phone", DOWN, "--outage")
    assert json.loads(path.read_text()) == {
        SMS_TO: {"sms": "undelivered", "sms_error": 30005, "call": "busy"},
        DOWN: {"outage": True},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [name for name in os.listdir(path.parent) if name.endswith(".tmp")] == []

    # A new --sms outcome takes its own default code; showing a number writes nothing.
    failed = cli.json("sandbox", "phone", SMS_TO, "--sms", "failed")
    assert failed[SMS_TO]["sms_error"] == 30008
    before = path.read_text()
    assert cli.json("sandbox", "phone", CALL_TO) == {
        CALL_TO: {
            "sms": "delivered",
            "sms_error": None,
            "call": "completed",
            **ANSWERS,
            "outage": False,
        }
    }
    assert path.read_text() == before

    listed = cli("sandbox", "phones").stdout.splitlines()
    assert listed == [
        f"{DOWN}  sms delivered, call completed, outage: Twilio answers 503 (20503)",
        f"{SMS_TO}  sms failed (30008), call busy",
    ]
    assert cli.json("sandbox", "phones") == {
        DOWN: {
            "sms": "delivered",
            "sms_error": None,
            "call": "completed",
            **ANSWERS,
            "outage": True,
        },
        SMS_TO: {"sms": "failed", "sms_error": 30008, "call": "busy", **ANSWERS, "outage": False},
    }

    # --no-outage on an entry that only had the outage leaves nothing of it; --reset with
    # options starts from a number that behaves as any other.
    cli("sandbox", "phone", DOWN, "--no-outage")
    cli.json("sandbox", "phone", SMS_TO, "--reset", "--call", "machine")
    assert json.loads(path.read_text()) == {SMS_TO: {"call": "machine"}}
    reset = cli("sandbox", "phone", SMS_TO, "--reset")
    assert reset.stdout == f"{SMS_TO}  sms delivered, call completed (as any number)\n"
    assert json.loads(path.read_text()) == {}

    refused = cli("sandbox", "phone", SMS_TO, "--sms-error", "30005", code=2)
    assert "--sms-error needs an SMS" in one_error_line(refused)

    cli("sandbox", "phone", DOWN, "--outage")
    assert path.exists()
    cli("sandbox", "stop")
    assert not path.exists()  # the next sandbox starts with every number on


@pytest.mark.parametrize(
    "number",
    [
        "5551230001",
        "+0551230001",
        "+1 555 123 0001",
        "+1555123000123456",
        "+\uff11\uff15\uff15\uff15",
        "+1\n",
    ],
)
def test_a_number_that_is_not_e164_is_refused_in_one_line(cli, number):
    result = cli("sandbox", "phone", number, "--outage", code=2)
    line = one_error_line(result)
    assert line.startswith("Error: ") and "is not an E.164 phone number" in line
    assert "+15551230001" in result.stderr  # the hint shows one
    error = cli.json("sandbox", "phone", number, code=2)["error"]
    assert (error["code"], error["exit_status"]) == ("sandbox-bad-number", 2)


def test_without_a_running_sandbox_both_say_so(cli):
    for args in (("phones",), ("phone", SMS_TO, "--outage"), ("phone", SMS_TO)):
        error = cli.json("sandbox", *args, code=1)["error"]
        assert error["code"] == "sandbox-not-running"


CORRUPT = [
    ("{not json", "Expecting property name"),
    ("[]", "must hold an object"),
    ('{"+15551230001": {"outage": "yes"}}', "outage must be true or false"),
    ('{"+15551230001": {"sms": 3}}', "sms must be one of"),
    ('{"+15551230001": {"sms_error": "30003"}}', "integer code"),
    ('{"+15551230001\\n\\u001b[2J": {"colour": "red"}}', "unknown keys"),
    ("[" * 100_000, "nested too deeply"),
    (b"\xff\xfe", "not UTF-8"),
    ("x" * (257 * 1024), "larger than 256 KiB"),
]


def test_a_corrupt_phone_table_is_a_one_line_error_and_is_left_as_it_is(cli, sandbox):
    path = phones_file(sandbox)
    for content, problem in CORRUPT:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        before = path.read_bytes()
        for args in (("phones",), ("phone", SMS_TO, "--outage")):
            result = cli("sandbox", *args, code=1)
            line = one_error_line(result)
            assert line.startswith(f"Error: {path} is not a phone table: "), line
            assert problem in line and "\x1b" not in line, line
            error = cli.json("sandbox", *args, code=1)["error"]
            assert error["code"] == "sandbox-phones-corrupt"
        assert path.read_bytes() == before


def test_a_planted_link_is_never_followed_and_a_fifo_never_waited_on(cli, sandbox, tmp_path):
    path = phones_file(sandbox)
    target = tmp_path / "someone-elses.json"
    target.write_text("{}")
    os.symlink(target, path)
    for args in (("phones",), ("phone", SMS_TO, "--outage"), ("phone", SMS_TO, "--reset")):
        line = one_error_line(cli("sandbox", *args, code=1))
        assert line == (
            f"Error: {path} is a symbolic link; iotbutton never follows one in its folders."
        )
    assert target.read_text() == "{}" and path.is_symlink()

    os.unlink(path)
    os.mkfifo(path)  # nobody writes to it: an open for reading would wait forever
    line = one_error_line(cli("sandbox", "phone", SMS_TO, "--outage", code=1))
    assert line == f"Error: {path} is not a phone table: it is not a regular file."

    os.unlink(path)
    os.symlink(target, path)
    cli("sandbox", "stop")
    assert not os.path.lexists(path) and target.read_text() == "{}"  # the link went, not its target


# -- the running sandbox obeys the table the command wrote ---------------------------------------


def twilio_post(
    sandbox: dict[str, Any], resource: str, fields: dict[str, str], auth: bool = True
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth:
        token = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_SECRET}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    url = f"{sandbox['twilio_url']}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/{resource}.json"
    request = urllib.request.Request(url, data=urlencode(fields).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_outage_set_with_the_command_is_what_the_sandbox_answers(cli, sandbox):
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO), "--call", CALL_TO)
    cli("--sandbox", "notify", "deploy")  # the stand-in now plays this account
    cli("sandbox", "phone", DOWN, "--outage")
    message = {"To": DOWN, "From": "+15005550006", "Body": "help"}
    call = {"To": DOWN, "From": "+15005550006", "Twiml": "<Response><Say>hi</Say></Response>"}

    assert twilio_post(sandbox, "Messages", message) == (
        503,
        {
            "code": 20503,
            "message": "Service Unavailable",
            "more_info": "https://www.twilio.com/docs/errors/20503",
            "status": 503,
        },
    )
    assert twilio_post(sandbox, "Calls", call)[0] == 503
    assert twilio_post(sandbox, "Messages", message, auth=False)[0] == 401
    status, created = twilio_post(sandbox, "Messages", {**message, "To": SMS_TO})
    assert (status, created["status"]) == (201, "queued")

    outbox = [entry for entry in cli.json("sandbox", "outbox") if entry.get("kind") is None]
    assert [(e["fields"]["To"], e["http_status"]) for e in outbox] == [
        (DOWN, 503),
        (DOWN, 503),
        (SMS_TO, 201),
    ]
    assert [e["error"]["code"] for e in outbox[:2]] == [20503, 20503]

    cli("sandbox", "phone", DOWN, "--no-outage")
    assert twilio_post(sandbox, "Calls", call)[0] == 201  # Twilio is back for it


# -- callees that answer, press keys, and slow Twilio down --------------------------------------


def test_phone_sets_a_hangup_callee_its_keys_and_a_hold(cli, sandbox):
    path = phones_file(sandbox)
    shown = cli.json("sandbox", "phone", CALL_TO, "--call", "hangup", "--press", "12#")
    assert shown == {
        CALL_TO: {
            "sms": "delivered",
            "sms_error": None,
            "call": "hangup",
            "press": "12#",
            "hold": 0,
            "outage": False,
        }
    }
    held = cli("sandbox", "phone", CALL_TO, "--call", "completed", "--press", "", "--hold", "2.5")
    assert held.stdout == (
        f"{CALL_TO}  sms delivered, call completed, presses nothing, Twilio holds creates 2.5 s\n"
    )
    assert json.loads(path.read_text()) == {CALL_TO: {"press": "", "hold": 2.5}}
    assert cli.json("sandbox", "phones")[CALL_TO]["hold"] == 2.5
    cli("sandbox", "phone", CALL_TO, "--press", "1", "--hold", "0")
    assert json.loads(path.read_text()) == {}  # as any number again


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--press", "1a", "sandbox-bad-press"),
        ("--press", "1" * 33, "sandbox-bad-press"),
        ("--press", "\uff11", "sandbox-bad-press"),
        ("--hold", "-1", "sandbox-bad-hold"),
        ("--hold", "soon", "sandbox-bad-hold"),
        ("--hold", "nan", "sandbox-bad-hold"),
        ("--hold", "inf", "sandbox-bad-hold"),
    ],
)
def test_bad_keys_or_hold_are_refused_in_one_line_before_the_sandbox_is_asked(
    cli, option, value, code
):
    line = one_error_line(cli("sandbox", "phone", SMS_TO, option, value, code=2))
    assert line.startswith(f"Error: {option} ")
    error = cli.json("sandbox", "phone", SMS_TO, option, value, code=2)["error"]
    assert (error["code"], error["exit_status"]) == (code, 2)


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "fast", "nan"])
def test_a_time_scale_out_of_range_is_refused_and_nothing_starts(cli, monkeypatch, value):
    line = one_error_line(cli("sandbox", "start", "--time-scale", value, code=2))
    assert "is not a number > 0 and <= 1" in line
    monkeypatch.setenv("IOTBUTTON_SANDBOX_TIME_SCALE", value)
    error = cli.json("sandbox", "start", code=2)["error"]
    assert error["code"] == "sandbox-bad-time-scale"
    assert cli.json("sandbox", "status", code=1) == {"running": False}


def test_the_time_scale_is_taken_from_the_environment_and_shown_by_status(cli, monkeypatch):
    monkeypatch.setenv("IOTBUTTON_SANDBOX_TIME_SCALE", "0.2")
    try:
        assert cli.json("sandbox", "start")["time_scale"] == 0.2
        assert cli.json("sandbox", "status")["time_scale"] == 0.2
        assert "Twilio time scale" in cli("sandbox", "status").stdout
        again = cli("sandbox", "start", "--time-scale", "0.5")  # running: it keeps its own
        assert "keeps its time scale 0.2, not 0.5" in again.stderr
    finally:
        cli("sandbox", "stop")


def test_the_default_time_scale_is_shown_and_a_hold_is_logged(cli, sandbox):
    from iotbutton_cli.sandbox import client as sandbox_control

    assert cli.json("sandbox", "status")["time_scale"] == 0.05
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO), "--call", CALL_TO)
    cli("--sandbox", "notify", "deploy")
    cli("sandbox", "phone", SMS_TO, "--hold", "0.3")
    message = {"To": SMS_TO, "From": "+15005550006", "Body": "help"}
    assert twilio_post(sandbox, "Messages", message)[0] == 201
    log = sandbox_control.log_path().read_text()
    assert f"twilio stand-in: holding a create to {SMS_TO} for 0.3 s" in log
