"""notify.yaml: the template `notify init` writes, its validation, the Lambda document, secrets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from iotbutton_cli.errors import ExitStatus, IotButtonError
from iotbutton_cli.notifier_lambda import contract, handler
from iotbutton_cli.notify import config as notify_config
from iotbutton_cli.notify.config import NotifyConfig, TwilioSecret, resolve_secret

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
API_KEY_SID = "SK" + "fedcba9876543210" * 2
OTHER_KEY_SID = "SK" + "00112233445566778899aabbccddeeff"
SENDER = "+15005550006"
SECRET = "tw-secret-do-not-print-9f8e7d6c"
TWILIO_VARS = ("TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_ACCOUNT_SID")

# A valid config; the bad ones below change one line of it (line numbers matter).
GOOD = """\
account_sid: "AC0123456789abcdef0123456789abcdef"
from: "+15005550006"
person: "Grandma"
clicks:
  SINGLE:
    sms: ["+15551230001"]
    call: []
    message: "{person} pressed {serial} at {time}."
  DOUBLE:
    sms: ["+15551230001", "+15551230002"]
    call: ["+15551230003"]
    message: "{person} double-clicked at {time}."
  LONG:
    call: ["+15551230003"]
    message: "Help! {person} needs you. Battery {battery}."
"""


def replace_line(number: int, new: str, text: str = GOOD) -> str:
    """``text`` with line ``number`` (1-based) replaced by ``new`` (which may span lines)."""
    lines = text.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


def insert_line(number: int, new: str, text: str = GOOD) -> str:
    """``text`` with ``new`` inserted so that it becomes line ``number``."""
    lines = text.splitlines()
    lines.insert(number - 1, new)
    return "\n".join(lines) + "\n"


def write_config(text: str) -> Path:
    path = notify_config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TWILIO_VARS:
        monkeypatch.delenv(name, raising=False)


# -- notify init -----------------------------------------------------------------------------


def test_init_writes_the_commented_template_0600(cli, isolated_env):
    result = cli("notify", "init")

    path = isolated_env / "config" / "notify.yaml"
    assert path == notify_config.config_path()
    assert str(path) in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert text == notify_config.render_template()
    for needle in ("E.164", "TWILIO_AUTH_TOKEN", "TWILIO_API_SECRET", "NEVER goes in this file"):
        assert needle in text
    for field in contract.TEMPLATE_FIELDS:
        assert "{" + field + "}" in text
    for click in contract.CLICK_TYPES:
        assert f"  {click}:" in text
    assert "notify check" in result.stderr and "notify deploy" in result.stderr


def test_init_refuses_to_overwrite_without_force(cli):
    path = Path(cli.json("notify", "init")["path"])
    path.write_text("# my edits\n")

    refused = cli.json("notify", "init", code=2)
    assert refused["error"]["code"] == "notify-config-exists"
    assert str(path) in refused["error"]["message"]
    assert "--force" in refused["error"]["hint"]
    assert path.read_text() == "# my edits\n"

    cli("notify", "init", "--force")
    assert path.read_text() == notify_config.render_template()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bare_template_is_sound_but_says_what_to_fill_in(cli):
    path = Path(cli.json("notify", "init")["path"])
    account_line = path.read_text().splitlines().index('account_sid: ""') + 1

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"] == f"{path}:{account_line}: account_sid is empty"
    assert error["exit_status"] == 2


def init_args() -> list[str]:
    return [
        "--account-sid",
        ACCOUNT_SID,
        "--from",
        SENDER,
        "--person",
        'Zoë "Nana" O\'Brien',
        "--sms",
        "+15551230001",
        "--sms",
        "+447700900123",
        "--call",
        "+15551230003",
    ]


def test_init_with_options_gives_a_config_the_handler_accepts(cli):
    cli("notify", "init", *init_args())

    config = notify_config.load_config()
    assert config.account_sid == ACCOUNT_SID
    assert config.sender == SENDER
    assert config.person == 'Zoë "Nana" O\'Brien'
    assert list(config.clicks) == list(contract.CLICK_TYPES)
    for click in config.clicks.values():
        assert click.sms == ("+15551230001", "+447700900123")
        assert click.call == ("+15551230003",)

    document = json.loads(json.dumps(config.lambda_document()))  # it travels as JSON via S3
    parsed = contract.parse_config(document)

    assert parsed.account_sid == ACCOUNT_SID
    assert parsed.api_key_sid is None
    assert parsed.sender == SENDER
    assert parsed.person == config.person
    assert set(parsed.clicks) == set(contract.CLICK_TYPES)
    for name, click in config.clicks.items():
        assert parsed.clicks[name] == contract.ClickConfig(click.sms, click.call, click.message)
        event = handler.ButtonEvent(serial="G030JF0553648RUH", click=name, battery="1650mV")
        text = contract.render(click.message, handler.template_values(parsed, event))
        assert "G030JF0553648RUH" in text and "{" not in text


def test_check_reports_a_summary(cli):
    cli("notify", "init", *init_args())

    report = cli.json("notify", "check")

    assert report["valid"] is True
    assert report["account_sid"] == ACCOUNT_SID
    assert report["clicks"]["LONG"]["sms_count"] == 2
    assert report["clicks"]["LONG"]["call"] == ["+15551230003"]
    assert report["recipients"] == 3
    assert report["twilio_secret"]["available"] is False
    human = cli("notify", "check")
    assert "is valid" in human.stdout and "+447700900123" in human.stdout


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--from", "+0155", "--from '+0155' is not an E.164 phone number"),
        ("--sms", "5551230001", "--sms '5551230001' is not an E.164 phone number"),
        ("--call", "+1 555 123 0001", "--call '+1 555 123 0001' is not an E.164 phone number"),
        ("--account-sid", "AC123", "--account-sid is not a Twilio Account SID"),
        ("--person", "  ", "--person is empty"),
    ],
)
def test_init_rejects_bad_options_before_writing(cli, option, value, fragment):
    error = cli.json("notify", "init", option, value, code=2)["error"]

    assert fragment in error["message"]
    assert not notify_config.config_path().exists()
    if error["code"] == "notify-bad-number":
        # A flag's hint speaks of flags: no YAML quotes for a file the user has not seen yet.
        assert "quotes" not in error["hint"] and f"e.g. {option} +15551234567" in error["hint"]


@pytest.mark.parametrize("option", ["--sms", "--call"])
def test_init_names_the_option_that_repeats_the_from_number(cli, option):
    result = cli("notify", "init", "--from", SENDER, option, SENDER, code=2)

    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"Error: {option} {SENDER} is the --from number.", result.stderr
    assert lines[1].startswith("Hint: ") and "21266" in lines[1] and len(lines) == 2
    assert "notify.yaml" not in result.stderr  # no line of a file that was never written
    assert not notify_config.config_path().exists()


def test_write_template_applies_numbers_to_every_click(tmp_path):
    path = notify_config.write_template(
        tmp_path / "n.yaml",
        account_sid=ACCOUNT_SID,
        from_=SENDER,
        person="Grandpa",
        sms=["+15551230001"],
    )
    config = notify_config.load_config(path)
    assert {name: (c.sms, c.call) for name, c in config.clicks.items()} == {
        name: (("+15551230001",), ()) for name in contract.CLICK_TYPES
    }


# -- validation: every problem names file and line, exit status 2 --------------------------

LONG_SMS_OK = "x" * (1600 - 1 - 128) + " {serial}"  # exactly 1600 with a 128-character serial
BAD_CONFIGS = [
    # (id, text, line, message after "file:line: ", hint fragment)
    (
        "from-not-e164",
        replace_line(2, 'from: "+0155512345"'),
        2,
        "from: '+0155512345' is not an E.164 phone number",
        "E.164",
    ),
    (
        "sms-not-e164",
        replace_line(10, '    sms: ["+15551230001", "+1555-123"]'),
        10,
        "'+1555-123' in clicks.DOUBLE.sms is not an E.164 phone number",
        "E.164",
    ),
    (
        "call-not-e164-block-list",
        replace_line(11, '    call:\n      - "+15551230003"\n      - "5551230004"'),
        13,
        "'5551230004' in clicks.DOUBLE.call is not an E.164 phone number",
        "E.164",
    ),
    (
        "call-with-spaces",
        replace_line(14, '    call: ["+1 555 123 0003"]'),
        14,
        "'+1 555 123 0003' in clicks.LONG.call is not an E.164 phone number",
        "no spaces",
    ),
    (
        "unknown-click-type",
        replace_line(13, "  TRIPLE:"),
        13,
        "unknown click type 'TRIPLE' in clicks",
        "SINGLE, DOUBLE and LONG",
    ),
    (
        "lowercase-click-type",
        replace_line(5, "  single:"),
        5,
        "unknown click type 'single' in clicks",
        "Did you mean SINGLE?",
    ),
    (
        "unknown-template-field",
        replace_line(8, '    message: "{nmae} pressed {serial}"'),
        8,
        "clicks.SINGLE.message: unknown template field {nmae}; allowed: {person}, {serial}, "
        "{click}, {battery}, {time}, {address}, {notes}, {fields.NAME}",
        "{{ and }}",
    ),
    (
        "unbalanced-brace",
        replace_line(12, '    message: "{person pressed"'),
        12,
        "clicks.DOUBLE.message: malformed template: expected '}' before end of string",
        "{{ and }}",
    ),
    (
        "format-spec",
        replace_line(15, '    message: "{battery:>10}"'),
        15,
        "clicks.LONG.message: template field {battery} may not have a format or conversion",
        "",
    ),
    (
        "sms-too-long",
        replace_line(8, f'    message: "x{LONG_SMS_OK}"'),
        8,
        "clicks.SINGLE.message can be 1601 characters long once filled in; "
        "an SMS holds at most 1600",
        "128-character {serial}",
    ),
    (
        "twiml-too-long",
        replace_line(15, '    message: "' + "&" * 794 + '"'),
        15,
        "clicks.LONG.message makes a call's TwiML 4002 characters long once filled in; "
        "Twilio allows at most 4000",
        "&, < and >",
    ),
    (
        "yaml-unquoted-braces",
        replace_line(8, "    message: {person} pressed the button"),
        8,
        "YAML syntax error: expected <block end>, but found '<scalar>' "
        "(while parsing a block mapping on line 6)",
        "quotes",
    ),
    (
        "yaml-unclosed-list",
        replace_line(6, '    sms: ["+15551230001"'),
        7,
        "YAML syntax error: expected ',' or ']', but got '<scalar>' "
        "(while parsing a flow sequence on line 6)",
        "quotes",
    ),
    (
        "yaml-tab",
        replace_line(7, "\tcall: []"),
        7,
        "YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token)",
        "indentation",
    ),
    (
        "bad-account-sid",
        replace_line(1, 'account_sid: "AC0123"'),
        1,
        "account_sid is not a Twilio Account SID (AC followed by 32 hex digits; "
        "this is 6 characters)",
        "starts with AC",
    ),
    (
        "bad-api-key-sid",
        insert_line(2, 'api_key_sid: "SK42"'),
        2,
        "api_key_sid is not a Twilio API key SID (SK followed by 32 hex digits; "
        "this is 4 characters)",
        "not its secret",
    ),
    (
        "unknown-top-level-key",
        insert_line(4, "persn: Grandpa"),
        4,
        "unknown setting 'persn'",
        "Did you mean person?",
    ),
    (
        "unknown-click-key",
        replace_line(15, '    mesage: "Help!"'),
        15,
        "unknown setting 'mesage' in clicks.LONG",
        "Did you mean message?",
    ),
    (
        "duplicate-key",
        insert_line(4, 'person: "Grandpa"'),
        4,
        "person appears twice (first on line 3)",
        "only the last",
    ),
    ("empty-file", "", 1, "the file is empty", "notify init --force"),
    ("only-comments", "# nothing here\n\n# yet\n", 1, "the file is empty", "notify init"),
    (
        "not-a-mapping",
        '\n- "+15551230001"\n',
        2,
        "expected settings (account_sid, from, person, clicks), found a list",
        "",
    ),
    (
        "nobody-messaged",
        replace_line(14, "    call: []", replace_line(11, "    call: []", GOOD))
        .replace('["+15551230001"]', "[]")
        .replace('["+15551230001", "+15551230002"]', "[]"),
        4,
        "no click type sends an SMS or places a call",
        "sms: or call:",
    ),
    (
        "clicks-empty",
        GOOD.split("clicks:")[0] + "clicks:\n",
        4,
        "no click type sends an SMS or places a call",
        "sms: or call:",
    ),
    ("missing-from", replace_line(2, "# no from"), 1, "from is missing", "Twilio phone number"),
    ("empty-person", replace_line(3, "person:"), 3, "person is empty", "belongs to"),
    (
        "missing-message",
        replace_line(15, "    sms: []"),
        13,
        "clicks.LONG.message is missing",
        "message:",
    ),
    (
        "recipient-is-sender",
        replace_line(6, '    sms: ["+15005550006"]'),
        6,
        "+15005550006 in clicks.SINGLE.sms is the from number",
        "21266",
    ),
    (
        "numbers-not-a-mapping",
        replace_line(6, '    sms: {"+15551230001": yes}'),
        6,
        "clicks.SINGLE.sms must be a list of phone numbers",
        "",
    ),
    (
        "control-character",
        replace_line(3, 'person: "Gran\x07dma"'),
        3,
        "the file contains a character YAML does not allow (U+0007)",
        "UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "detail", "hint"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_names_file_and_line(cli, text, line, detail, hint):
    path = write_config(text)

    error = cli.json("notify", "check", code=2)["error"]

    assert error["message"] == f"{path}:{line}: {detail}"
    assert hint in error["hint"]
    assert error["exit_status"] == int(ExitStatus.USAGE)
    with pytest.raises(IotButtonError) as raised:
        notify_config.load_config(path)
    assert raised.value.exit_status == ExitStatus.USAGE


def test_bad_config_in_human_mode_is_one_line_and_a_hint(cli):
    path = write_config(replace_line(10, '    sms: ["+15551230001", "555 0123"]'))

    result = cli("notify", "check", code=2)

    assert result.stdout == ""
    assert f"Error: {path}:10: '555 0123' in clicks.DOUBLE.sms is not an E.164 phone number" in (
        result.stderr
    )
    assert "Hint:" in result.stderr


def test_missing_config_file_says_to_run_init(cli, isolated_env):
    error = cli.json("notify", "check", code=2)["error"]

    assert error["code"] == "notify-config-missing"
    assert error["message"] == f"{isolated_env / 'config' / 'notify.yaml'} does not exist."
    assert "iotbutton notify init" in error["hint"]


def test_the_limits_are_inclusive():
    """A message that fills exactly 1600 SMS characters, or exactly 4000 of TwiML, passes."""
    sms_ok = replace_line(8, f'    message: "{LONG_SMS_OK}"')
    assert notify_config.parse_config_text(sms_ok).clicks["SINGLE"].message == LONG_SMS_OK
    twiml_ok = replace_line(15, '    message: "' + "&" * 793 + 'xxx"')
    assert len(notify_config.twiml("&" * 793 + "xxx")) == 4000
    notify_config.parse_config_text(twiml_ok)


def test_length_limits_apply_to_the_channels_used():
    """1700 plain characters are too long for an SMS but fine to speak on a call."""
    long_text = "y" * 1700
    only_call = replace_line(15, f'    message: "{long_text}"')
    assert notify_config.parse_config_text(only_call).clicks["LONG"].message == long_text
    with pytest.raises(IotButtonError, match="an SMS holds at most 1600"):
        notify_config.parse_config_text(replace_line(14, '    sms: ["+15551230001"]', only_call))


def test_worst_case_counts_the_persons_real_name():
    name = "N" * 100
    with_name = replace_line(3, f'person: "{name}"')
    fits = replace_line(8, '    message: "' + "{person}" * 16 + '"', with_name)
    assert notify_config.parse_config_text(fits).person == name
    too_long = replace_line(8, '    message: "' + "{person}" * 17 + '"', with_name)
    with pytest.raises(IotButtonError, match="can be 1700 characters long"):
        notify_config.parse_config_text(too_long)


def test_yaml_quirks_read_as_written():
    """Unquoted +numbers (ints in YAML 1.1) and words like `no` keep the text the user typed."""
    text = replace_line(3, "person: no", replace_line(6, "    sms: [+15551230001]"))
    text = replace_line(14, "    call: +15551230003", text)  # one bare number is a list of one
    config = notify_config.parse_config_text(text)
    assert config.person == "no"
    assert config.clicks["SINGLE"].sms == ("+15551230001",)
    assert config.clicks["LONG"].call == ("+15551230003",)


def test_click_with_no_numbers_is_kept_and_ignored():
    config = notify_config.parse_config_text(replace_line(6, "    sms: []"))
    assert config.clicks["SINGLE"].recipients == 0
    parsed = contract.parse_config(config.lambda_document())
    assert parsed.clicks["SINGLE"].sms == () and parsed.clicks["SINGLE"].call == ()


def test_secret_pasted_into_the_file_is_refused_without_echoing_it(cli):
    token = "0123456789abcdef" * 2  # shaped like an auth token
    for text in (
        insert_line(2, f'auth_token: "{token}"'),
        replace_line(1, f'account_sid: "{token}"'),
    ):
        path = write_config(text)
        result = cli("notify", "check", "--json", code=2)
        error = json.loads(result.stdout)["error"]
        assert error["message"].startswith(f"{path}:")
        assert "Secrets never go in this file" in error["hint"]
        assert token not in result.stdout + result.stderr


# -- the Lambda document ---------------------------------------------------------------------


def good_config(**changes: str) -> NotifyConfig:
    text = GOOD
    for key, value in changes.items():
        text = insert_line(2, f'{key}: "{value}"', text)
    return notify_config.parse_config_text(text, Path("notify.yaml"))


def test_lambda_document_round_trips_through_parse_config():
    config = good_config(api_key_sid=API_KEY_SID)
    document = config.lambda_document()

    assert document == {
        "version": contract.CONFIG_VERSION,
        "account_sid": ACCOUNT_SID,
        "api_key_sid": API_KEY_SID,
        "from": SENDER,
        "person": "Grandma",
        "debounce_seconds": 5,
        "clicks": {
            "SINGLE": {
                "sms": ["+15551230001"],
                "call": [],
                "message": "{person} pressed {serial} at {time}.",
            },
            "DOUBLE": {
                "sms": ["+15551230001", "+15551230002"],
                "call": ["+15551230003"],
                "message": "{person} double-clicked at {time}.",
            },
            "LONG": {
                "sms": [],
                "call": ["+15551230003"],
                "message": "Help! {person} needs you. Battery {battery}.",
            },
        },
    }
    parsed = contract.parse_config(json.loads(json.dumps(document)))
    assert parsed.auth_user == API_KEY_SID
    assert parsed.clicks["DOUBLE"].sms == ("+15551230001", "+15551230002")


def test_lambda_document_follows_the_stored_secret():
    config = good_config(api_key_sid=API_KEY_SID)
    token = TwilioSecret(ACCOUNT_SID, SECRET, "TWILIO_AUTH_TOKEN")
    key = TwilioSecret(OTHER_KEY_SID, SECRET, "TWILIO_API_SECRET")

    assert contract.parse_config(config.lambda_document(token)).auth_user == ACCOUNT_SID
    assert contract.parse_config(config.lambda_document(key)).auth_user == OTHER_KEY_SID


def test_summary_holds_no_secret_and_counts():
    summary = good_config().summary()
    assert summary["clicks"]["DOUBLE"] == {
        "sms": ["+15551230001", "+15551230002"],
        "call": ["+15551230003"],
        "sms_count": 2,
        "call_count": 1,
        "message": "{person} double-clicked at {time}.",
        "escalation": None,
    }
    assert summary["recipients"] == 3
    assert summary["path"] == "notify.yaml"


# -- the Twilio secret -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_key", "environ", "username", "source"),
    [
        (None, {"TWILIO_AUTH_TOKEN": SECRET}, ACCOUNT_SID, "TWILIO_AUTH_TOKEN"),
        (API_KEY_SID, {"TWILIO_AUTH_TOKEN": SECRET}, ACCOUNT_SID, "TWILIO_AUTH_TOKEN"),
        (
            None,
            {"TWILIO_API_KEY": OTHER_KEY_SID, "TWILIO_API_SECRET": SECRET},
            OTHER_KEY_SID,
            "TWILIO_API_SECRET",
        ),
        (
            API_KEY_SID,
            {"TWILIO_API_KEY": OTHER_KEY_SID, "TWILIO_API_SECRET": SECRET},
            OTHER_KEY_SID,  # the environment's key SID wins over the file's
            "TWILIO_API_SECRET",
        ),
        (API_KEY_SID, {"TWILIO_API_SECRET": SECRET}, API_KEY_SID, "TWILIO_API_SECRET"),
        (
            None,
            {
                "TWILIO_AUTH_TOKEN": "other",
                "TWILIO_API_KEY": OTHER_KEY_SID,
                "TWILIO_API_SECRET": SECRET,
            },
            OTHER_KEY_SID,  # an API key beats the account's auth token
            "TWILIO_API_SECRET",
        ),
        (
            None,
            {"TWILIO_AUTH_TOKEN": f" {SECRET}\n", "TWILIO_ACCOUNT_SID": ACCOUNT_SID},
            ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN",
        ),
    ],
)
def test_secret_from_the_environment(file_key, environ, username, source):
    config = good_config(api_key_sid=file_key) if file_key else good_config()

    secret = resolve_secret(config, environ, prompt=pytest.fail, interactive=True)

    assert (secret.username, secret.value, secret.source) == (username, SECRET, source)
    assert secret.kind == ("api_key" if username.startswith("SK") else "auth_token")


@pytest.mark.parametrize(
    ("file_key", "environ", "code", "fragment"),
    [
        (None, {}, "twilio-no-secret", "TWILIO_AUTH_TOKEN"),
        (None, {"TWILIO_API_KEY": OTHER_KEY_SID}, "twilio-no-api-secret", "TWILIO_API_SECRET"),
        (None, {"TWILIO_API_SECRET": SECRET}, "twilio-no-api-key", "TWILIO_API_KEY"),
        (
            None,
            {"TWILIO_API_KEY": SECRET, "TWILIO_API_SECRET": SECRET},  # secret in the SID variable
            "twilio-bad-api-key",
            "TWILIO_API_KEY",
        ),
        (
            None,
            {"TWILIO_AUTH_TOKEN": SECRET, "TWILIO_ACCOUNT_SID": "AC" + "f" * 32},
            "twilio-account-mismatch",
            "TWILIO_ACCOUNT_SID",
        ),
    ],
)
def test_secret_problems_are_usage_errors_that_never_show_it(file_key, environ, code, fragment):
    config = good_config(api_key_sid=file_key) if file_key else good_config()

    with pytest.raises(IotButtonError) as raised:
        resolve_secret(config, environ, interactive=False)

    error = raised.value
    assert (error.code, error.exit_status) == (code, ExitStatus.USAGE)
    assert fragment in error.message + error.hint
    assert SECRET not in json.dumps(error.as_dict())


def test_missing_secret_names_the_variables():
    with pytest.raises(IotButtonError) as raised:
        resolve_secret(good_config(), {}, prompt=lambda question: SECRET, interactive=False)
    hint = raised.value.hint
    assert "TWILIO_AUTH_TOKEN" in hint and "TWILIO_API_KEY" in hint and "TWILIO_API_SECRET" in hint


def test_secret_is_asked_for_only_on_a_terminal():
    questions: list[str] = []

    def prompt(question: str) -> str:
        questions.append(question)
        return SECRET + "\n"

    secret = resolve_secret(good_config(), {}, prompt=prompt, interactive=True)
    assert (secret.username, secret.value, secret.source) == (ACCOUNT_SID, SECRET, "prompt")
    assert questions == [f"Twilio auth token for {ACCOUNT_SID}"]

    keyed = resolve_secret(good_config(api_key_sid=API_KEY_SID), {}, prompt, interactive=True)
    assert keyed.username == API_KEY_SID and keyed.kind == "api_key"
    assert questions[-1] == f"Twilio API key secret for {API_KEY_SID}"

    # Under pytest stdin is no terminal: interactive=None must not prompt.
    with pytest.raises(IotButtonError, match="No Twilio secret"):
        resolve_secret(good_config(), {}, prompt=pytest.fail)
    with pytest.raises(IotButtonError, match="No Twilio secret was entered"):
        resolve_secret(good_config(), {}, prompt=lambda question: "  ", interactive=True)


def test_secret_repr_hides_the_value():
    secret = TwilioSecret(ACCOUNT_SID, SECRET, "TWILIO_AUTH_TOKEN")
    assert SECRET not in repr(secret)
    assert SECRET not in str(secret)
    assert SECRET not in f"{secret!r} {secret}"


def test_secret_never_appears_in_command_output(cli, monkeypatch):
    cli("notify", "init", *init_args())
    runs = []
    for environ in (
        {"TWILIO_AUTH_TOKEN": SECRET},
        {"TWILIO_API_KEY": OTHER_KEY_SID, "TWILIO_API_SECRET": SECRET},
        {"TWILIO_API_KEY": SECRET, "TWILIO_API_SECRET": SECRET},
        {"TWILIO_AUTH_TOKEN": SECRET, "TWILIO_ACCOUNT_SID": "AC" + "f" * 32},
    ):
        for name in TWILIO_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        runs.append(cli("notify", "check"))
        runs.append(cli("notify", "check", "--json"))
    report = json.loads(runs[1].stdout)
    assert report["twilio_secret"] == {
        "available": True,
        "source": "TWILIO_AUTH_TOKEN",
        "username": ACCOUNT_SID,
        "problem": None,
        "problem_code": None,
    }
    assert "from TWILIO_AUTH_TOKEN" in runs[0].stdout
    assert json.loads(runs[5].stdout)["twilio_secret"]["problem_code"] == "twilio-bad-api-key"
    for result in runs:
        assert SECRET not in result.stdout + result.stderr


# -- startup stays light ---------------------------------------------------------------------

HEAVY = ["yaml", "boto3", "botocore", "rich", "moto", "twilio"]
PROBE = """
import json, sys
from iotbutton_cli.cli.app import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["notify", "--help"],
        ["notify", "init", "--help"],
        ["notify", "check", "--help"],
        ["notify", "bundle", "--help"],
    ],
)
def test_notify_help_imports_nothing_heavy(args):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert "Usage:" in result.stdout
