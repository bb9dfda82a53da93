"""Bad input, table-driven: one line and a hint, the documented exit status, no traceback, and no
change to the registry or to AWS."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

SERIAL = "G030JF0553648RUH"
YAML_OK = """\
account_sid: "AC11111111111111111111111111111111"
from: "+15005550006"
person: "Grandma"
clicks:
  SINGLE:
    sms: ["+15551230001"]
    call: []
    message: "{person} pressed {serial}"
"""


def write_config(home: Path, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "config" / "notify.yaml").write_text(text)


def env_no_region(monkeypatch, home):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")


def env_no_credentials(monkeypatch, home):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def env(name, value):
    return lambda monkeypatch, home: monkeypatch.setenv(name, value)


def config(text):
    return lambda monkeypatch, home: write_config(home, text)


def registry(text):
    return lambda monkeypatch, home: (home / "registry.json").write_text(text)


def lose_private_key(monkeypatch, home):
    for key in home.rglob("*-private.pem.key"):
        key.unlink()


def foreign_account(monkeypatch, home):
    path = home / "registry.json"
    document = json.loads(path.read_text())
    document["namespaces"]["aws:123456789012:us-east-1"]["account"] = "999999999999"
    path.write_text(json.dumps(document))


CASES = [
    # (id, setup, args, exit status, words in the message)
    ("serial-slash", None, ["things", "create", "bad/serial"], 2, "Invalid serial"),
    ("serial-space", None, ["things", "create", "bad serial"], 2, "Invalid serial"),
    ("serial-empty", None, ["things", "create", ""], 2, "it is empty"),
    ("serial-long", None, ["things", "create", "A" * 129], 2, "129 characters"),
    ("serial-and-count", None, ["things", "create", "S1", "--count", "2"], 2, "cannot be combined"),
    ("count-zero", None, ["things", "create", "--count", "0"], 2, "between 1 and"),
    ("show-unknown", None, ["things", "show", "NOPE"], 2, "No button 'NOPE'"),
    ("delete-unknown", None, ["things", "delete", "NOPE", "--yes"], 2, "No button 'NOPE'"),
    ("rotate-unknown", None, ["certs", "rotate", "NOPE"], 2, "No button 'NOPE'"),
    ("revoke-unknown", None, ["certs", "revoke", "NOPE", "--yes"], 2, "No button 'NOPE'"),
    ("clean-unconfirmed", None, ["clean"], 2, "asks for confirmation"),
    ("delete-unconfirmed", None, ["things", "delete", SERIAL], 2, "asks for confirmation"),
    ("region-unknown", None, ["--region", "us-east-9", "things", "list"], 3, "Unknown AWS region"),
    ("region-no-iot", None, ["--region", "af-south-1", "things", "list"], 3, "not available"),
    ("profile-unknown", None, ["--profile", "nope", "things", "list"], 3, "could not be found"),
    ("region-missing", env_no_region, ["things", "list"], 3, "No AWS region"),
    ("credentials-missing", env_no_credentials, ["things", "list"], 3, "No AWS credentials"),
    ("max-attempts", env("AWS_MAX_ATTEMPTS", "lots"), ["things", "list"], 2, "AWS_MAX_ATTEMPTS"),
    ("from-not-e164", None, ["notify", "init", "--from", "12345"], 2, "E.164"),
    ("sms-not-e164", None, ["notify", "init", "--sms", "+1"], 2, "E.164"),
    ("account-sid", None, ["notify", "init", "--account-sid", "XYZ"], 2, "account"),
    ("yaml-syntax", config("account_sid: [unclosed\n"), ["notify", "check"], 2, "notify.yaml:"),
    ("yaml-missing", None, ["notify", "check"], 2, "notify.yaml does not exist"),
    ("yaml-click", config(YAML_OK.replace("SINGLE", "TRIPLE")), ["notify", "check"], 2, "TRIPLE"),
    ("yaml-field", config(YAML_OK.replace("{serial}", "{nmae}")), ["notify", "check"], 2, "nmae"),
    (
        "yaml-brace",
        config(YAML_OK.replace("{serial}", "{serial")),
        ["notify", "check"],
        2,
        "notify.yaml:",
    ),
    (
        "yaml-phone",
        config(YAML_OK.replace("+15551230001", "555-1234")),
        ["notify", "check"],
        2,
        "555-1234",
    ),
    (
        "yaml-sms-long",
        config(YAML_OK.replace("{person} pressed {serial}", "x" * 1700)),
        ["notify", "check"],
        2,
        "1600",
    ),
    ("secret-missing", config(YAML_OK), ["notify", "deploy"], 2, "No Twilio secret"),
    ("click-type", None, ["notify", "test", "--click", "TRIPLE"], 2, "Unknown click type"),
    ("rule-name", None, ["rules", "create", "--name", "bad-name"], 2, "Invalid rule name"),
    ("rule-prefix", None, ["rules", "create", "--name", "long_clicks"], 2, "start with iotbutton_"),
    (
        "rule-sql",
        None,
        ["rules", "create", "--name", "iotbutton_ok", "--sql", "DROP TABLE x"],
        2,
        "Cannot read --sql at column 1",
    ),
    ("rule-unknown", None, ["rules", "show", "NOPE"], 2, "No topic rule 'NOPE'"),
    ("sim-two-clicks", None, ["sim", "click", "--single", "--double"], 2, "Choose one"),
    ("sim-no-payload", None, ["sim", "send"], 2, "exactly one of --message and --file"),
    ("sim-lost-key", lose_private_key, ["sim", "click", SERIAL], 1, "missing on this machine"),
    ("registry-corrupt", registry("{oops"), ["things", "list"], 1, "not valid JSON"),
    (
        "registry-foreign",
        registry('{"hello": 1}'),
        ["things", "list"],
        1,
        "not an iotbutton registry",
    ),
    (
        "registry-newer",
        registry('{"schema": 99, "namespaces": {}}'),
        ["things", "list"],
        1,
        "schema 99",
    ),
    ("wrong-account", foreign_account, ["clean", "--yes"], 3, "records account 999999999999"),
    ("sandbox-stopped", None, ["sandbox", "outbox"], 1, "not running"),
]


def aws_state() -> dict[str, object]:
    iot = boto3.client("iot", region_name="us-east-1")
    return {
        "things": iot.list_things()["things"],
        "certificates": [
            (c["certificateId"], c["status"]) for c in iot.list_certificates()["certificates"]
        ],
        "policies": iot.list_policies()["policies"],
        "rules": iot.list_topic_rules()["rules"],
        "roles": boto3.client("iam").list_roles()["Roles"],
        "functions": boto3.client("lambda", region_name="us-east-1").list_functions()["Functions"],
    }


@pytest.mark.parametrize(
    ("setup", "args", "status", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input(cli, aws, isolated_env, monkeypatch, setup, args, status, words):
    cli("things", "create", SERIAL)
    aws_before = aws_state()
    with monkeypatch.context() as patch:  # undone before AWS is checked again below
        if setup is not None:
            setup(patch, isolated_env)
        registry_before = (isolated_env / "registry.json").read_bytes()
        files_before = sorted(p for p in isolated_env.rglob("*") if "cache" not in p.parts)
        result = cli(*args, code=status)

    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and words in lines[0], result.stderr
    assert len(lines) == 2 and lines[1].startswith("Hint: ") and len(lines[1]) > 10
    assert "Traceback" not in result.stdout + result.stderr
    assert (isolated_env / "registry.json").read_bytes() == registry_before
    assert sorted(p for p in isolated_env.rglob("*") if "cache" not in p.parts) == files_before
    assert aws_state() == aws_before


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
