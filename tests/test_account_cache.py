"""The account of an access key is asked of STS once and remembered (aws/accounts.py): local
commands make no AWS call; a change still asks STS; --refresh, another key, a damaged or edited
file are handled as the reference says."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

SERIAL = "G030JF0553648RUH"


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operation names of every AWS call the CLI makes in this process."""
    from botocore.client import BaseClient

    calls: list[str] = []
    make_call = BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        calls.append(operation_name)
        return make_call(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


def cache_file(home: Path) -> Path:
    return home / "state" / "accounts.json"


def test_local_commands_ask_sts_once_then_never(cli, aws, isolated_env, aws_calls):
    cli("certs", "list")
    assert aws_calls == ["GetCallerIdentity"]

    aws_calls.clear()
    cli("certs", "list")
    cli("rules", "list")
    cli("things", "list")

    assert aws_calls == []


def test_the_file_holds_no_key_id_and_no_secret(cli, aws, isolated_env, monkeypatch):
    import os

    cli("certs", "list")

    path = cache_file(isolated_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert os.environ["AWS_ACCESS_KEY_ID"] not in text
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in text
    [(key, account)] = json.loads(text)["accounts"].items()
    assert len(key) == 64 and account == "123456789012"


def test_refresh_and_another_key_ask_again(cli, aws, isolated_env, aws_calls, monkeypatch):
    cli("certs", "list")
    aws_calls.clear()

    cli("certs", "list", "--refresh")
    assert aws_calls == ["GetCallerIdentity"]

    aws_calls.clear()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    cli("certs", "list")
    assert aws_calls == ["GetCallerIdentity"]
    assert len(json.loads(cache_file(isolated_env).read_text())["accounts"]) == 2


def test_a_change_still_asks_sts_first(cli, aws, isolated_env, aws_calls):
    cli("certs", "list")
    aws_calls.clear()

    cli("things", "create", SERIAL)

    assert aws_calls[0] == "GetCallerIdentity"


def test_an_edited_file_stops_a_change_before_it_and_is_corrected(cli, iot, isolated_env):
    cli("certs", "list")
    path = cache_file(isolated_env)
    document = json.loads(path.read_text())
    [key] = document["accounts"]
    document["accounts"][key] = "999999999999"
    path.write_text(json.dumps(document))

    result = cli("things", "create", SERIAL, code=1)

    assert "Error: " in result.stderr and "Traceback" not in result.stderr
    assert "said these credentials are account 999999999999; AWS says 123456789012" in (
        result.stderr
    )
    assert iot.list_things()["things"] == []
    assert json.loads(path.read_text())["accounts"][key] == "123456789012"
    cli("things", "create", SERIAL)
    assert [b["serial"] for b in cli.json("things", "list")] == [SERIAL]


@pytest.mark.parametrize(
    "damage",
    ["not json", '{"accounts": ["a list"]}', '{"accounts": {"k": 5}}', "x" * 70_000, "link"],
)
def test_a_damaged_file_is_ignored_and_rewritten(cli, aws, isolated_env, aws_calls, damage):
    path = cache_file(isolated_env)
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "link":
        target = isolated_env / "elsewhere.json"
        target.write_text('{"accounts": {}}')
        path.symlink_to(target)
    else:
        path.write_text(damage)

    cli("certs", "list")

    assert aws_calls == ["GetCallerIdentity"]
    assert not path.is_symlink()
    assert list(json.loads(path.read_text())["accounts"].values()) == ["123456789012"]
    if damage == "link":
        assert (isolated_env / "elsewhere.json").read_text() == '{"accounts": {}}'


LIST_AND_MODULES = """
import sys
from iotbutton_cli.cli.app import main
sys.argv = ["iotbutton", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"boto3", "botocore", "rich"})
print("LOADED", ",".join(loaded), "EXIT", code, file=sys.stderr)
"""


def _list_in_a_process(home: Path, moto_url: str, *args: str, **env: str) -> tuple[str, str]:
    """`iotbutton ARGS` in a fresh process: (its stdout, what it had imported and its exit)."""
    import subprocess
    import sys

    from awsinventory import aws_env

    result = subprocess.run(
        [sys.executable, "-c", LIST_AND_MODULES, *args],
        env=aws_env(home, moto_url, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout, result.stderr.strip().splitlines()[-1]


def test_with_the_key_in_the_environment_a_listing_imports_no_aws_sdk(tmp_path, moto_url):
    """The issue's goal: `things list` reads a local file, so once the account is remembered it
    neither waits for the network nor imports boto3 (nor Rich, with --json)."""
    home = tmp_path / "home"
    _, first = _list_in_a_process(home, moto_url, "things", "list", "--json")
    assert first == "LOADED boto3,botocore EXIT 0"  # asked STS, which needs botocore

    out, again = _list_in_a_process(home, moto_url, "things", "list", "--json")
    assert (out.strip(), again) == ("[]", "LOADED  EXIT 0")
    _, certs = _list_in_a_process(home, moto_url, "certs", "list", "--json")
    assert certs == "LOADED  EXIT 0"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--region", "eu-west-1"), {}),  # another region: botocore checks it first
        (("--refresh",), {}),
        (("--profile", "default"), {}),  # botocore's own order of credentials decides
        ((), {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"}),  # another STS: another entry
    ],
)
def test_anything_the_entry_was_not_made_for_goes_through_botocore(tmp_path, moto_url, args, env):
    home = tmp_path / "home"
    _list_in_a_process(home, moto_url, "things", "list", "--json")
    _, loaded = _list_in_a_process(home, moto_url, *args, "things", "list", "--json", **env)
    assert loaded.startswith("LOADED boto3,botocore"), loaded


def test_an_unknown_region_is_still_refused_without_a_remembered_entry(tmp_path, moto_url):
    home = tmp_path / "home"
    _list_in_a_process(home, moto_url, "things", "list", "--json")
    _, loaded = _list_in_a_process(home, moto_url, "--region", "us-eest-1", "things", "list")
    assert loaded.endswith("EXIT 3"), loaded  # unknown-region: a credentials/config error
