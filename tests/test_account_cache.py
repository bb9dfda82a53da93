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
