"""`--help` must stay fast: no AWS SDK, no Rich, no moto on the way to any help screen."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "boto3",
    "botocore",
    "awscrt",
    "awsiot",
    "twilio",
    "moto",
    "amqtt",
    "cryptography",
    "yaml",
    "openapi_core",
]
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
        ["things", "--help"],
        ["certs", "--help"],
        ["things", "create", "--help"],
        ["clean", "--help"],
        ["endpoint", "--help"],
        ["--version"],
    ],
)
def test_help_imports_nothing_heavy(args):
    probe = PROBE.format(heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == []


def test_python_dash_m_works():
    result = subprocess.run(
        [sys.executable, "-m", "iotbutton_cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for group in ("things", "certs", "endpoint", "clean"):
        assert group in result.stdout


def test_every_command_has_help_text():
    from typer.main import get_command

    from iotbutton_cli.cli.app import app

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, command in walk(get_command(app), ["iotbutton"]):
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
