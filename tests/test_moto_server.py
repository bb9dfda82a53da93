"""The installed command against a standalone moto server, reached through AWS_ENDPOINT_URL."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import boto3


def run(*args: str, env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "iotbutton_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == code, result.stderr
    return result


def test_full_lifecycle_against_a_moto_server(moto_url, isolated_env):
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_url}
    iot = boto3.client("iot", endpoint_url=moto_url, region_name="us-east-1")

    created = json.loads(run("things", "create", "--count", "20", "--json", env=env).stdout)
    assert len(created["buttons"]) == 20
    assert len(iot.list_things()["things"]) == 20
    serial = created["buttons"][0]["serial"]
    key = json.loads(run("things", "show", serial, "--json", env=env).stdout)["files"][
        "private_key"
    ]
    assert stat.S_IMODE(Path(key).stat().st_mode) == 0o600

    rotated = json.loads(run("certs", "rotate", serial, "--json", env=env).stdout)
    run("certs", "revoke", created["buttons"][1]["serial"], "--yes", env=env)
    status = iot.describe_certificate(certificateId=rotated["certificate_id"])
    assert status["certificateDescription"]["status"] == "ACTIVE"
    run("things", "delete", created["buttons"][2]["serial"], "--yes", env=env)
    assert len(iot.list_things()["things"]) == 19
    assert len(iot.list_certificates()["certificates"]) == 19

    endpoint = json.loads(run("endpoint", "--json", env=env).stdout)
    assert endpoint["port"] == 8883 and endpoint["host"].endswith(".amazonaws.com")

    cleaned = json.loads(run("clean", "--yes", "--json", env=env).stdout)
    assert cleaned["complete"] is True
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert iot.list_thing_types()["thingTypes"] == []
    registry = json.loads((isolated_env / "registry.json").read_text())
    assert registry["namespaces"] == {}


def test_endpoint_url_option_beats_the_environment(moto_url, isolated_env):
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run(
        "--endpoint-url", moto_url, "things", "create", "G030JF0553648RUH", "--json", env=env
    )
    assert json.loads(result.stdout)["buttons"][0]["action"] == "created"
