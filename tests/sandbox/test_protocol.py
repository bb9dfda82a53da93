"""What the sandbox's client and server share is written once, in sandbox.protocol."""

from __future__ import annotations

import sys
from pathlib import Path

from iotbutton_cli.sandbox import protocol, server


def test_the_server_parses_the_arguments_the_client_builds(tmp_path):
    args = protocol.server_args(tmp_path, 1, 2, 3, verbose=True)
    parsed = server.argument_parser().parse_args(args)

    assert (parsed.state_dir, parsed.aws_port, parsed.mqtt_port, parsed.twilio_port) == (
        Path(tmp_path),
        1,
        2,
        3,
    )
    assert parsed.verbose is True
    assert server.argument_parser().parse_args(protocol.server_args(tmp_path)).verbose is False
    command = protocol.server_command(tmp_path, 1, 2, 3)
    assert command[:3] == [sys.executable, "-m", "iotbutton_cli.sandbox.server"]
    assert command[3:] == protocol.server_args(tmp_path, 1, 2, 3)


def test_the_state_file_round_trips_and_the_log_never_gets_the_secret():
    info = protocol.SandboxInfo(
        pid=42,
        aws_url="http://127.0.0.1:1",
        mqtt_host="localhost",
        mqtt_port=2,
        ca_file="/ca.pem",
        twilio_url="http://127.0.0.1:3",
        outbox="/outbox.jsonl",
        region=protocol.SANDBOX_REGION,
        account=protocol.SANDBOX_ACCOUNT,
        access_key_id="AKIA" + "B" * 16,
        secret_access_key="s" * 40,
        process={"source": "proc", "start": "1", "command": "python"},
    )

    assert protocol.SandboxInfo.from_state(info.state()) == info
    assert info.public()["secret_access_key"] == "s" * 40
    assert "process" not in info.public()
    assert "secret_access_key" not in info.loggable() and "process" not in info.loggable()
    assert "s" * 40 not in repr(info)
    assert protocol.SandboxInfo.from_state({**info.state(), "secret_access_key": ""}) is None
