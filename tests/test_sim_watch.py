"""`sim subscribe` notices a lost broker, reconnects or gives up; Ctrl-C stops it; people read JSON.

The sandbox is the real background process. To cut the monitor's connection without stopping
the broker, the tests put a TCP relay of their own between the CLI and the broker (the sandbox's
state file is pointed at it): the CLI is not patched, it connects where the state file says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest

from relay import Relay

SERIAL = "G030JF0553648RUH"


@pytest.fixture
def relay(sandbox: dict[str, Any]) -> Any:
    """The running sandbox's MQTT port, as the CLI reads it, is a relay's."""
    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox.protocol import STATE_FILE

    relay = Relay(sandbox["mqtt_port"])
    state = sandbox_control.sandbox_dir() / STATE_FILE
    data = json.loads(state.read_text())
    data["mqtt_port"] = relay.port
    state.write_text(json.dumps(data))
    yield relay
    relay.close()


def watcher(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "iotbutton_cli", "--sandbox", "sim", "subscribe", *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    assert "Watching iotbutton/#" in first, first + process.stderr.read()
    return process


def next_line(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    return process.stderr.readline()


def test_a_cut_connection_is_reported_and_resumed(cli, sandbox, relay):
    cli("--sandbox", "things", "create", SERIAL)
    process = watcher("--count", "1", "--duration", "90", "--reconnect-for", "60", "--json")

    relay.cut()
    lost = next_line(process)
    back = next_line(process)
    print(lost, back)
    cli("--sandbox", "sim", "click", "--long")  # through the relay too, after the reconnection
    stdout, stderr = process.communicate(timeout=60)

    assert f"Lost the connection to localhost:{relay.port}" in lost
    assert "trying to reconnect for 60 s" in lost
    assert f"Reconnected to localhost:{relay.port}; watching iotbutton/# again." in back
    assert process.returncode == 0, stderr
    message = json.loads(stdout.splitlines()[0])
    assert message["payload"]["clickType"] == "LONG"  # the subscription was made again


def test_a_broker_that_stays_away_ends_the_watch_with_exit_1(cli, sandbox, relay):
    cli("--sandbox", "things", "create", SERIAL)
    process = watcher("--reconnect-for", "3")

    relay.cut(refuse=True)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 1, stderr
    assert f"Lost the connection to localhost:{relay.port}" in stderr
    assert f"Lost the connection to localhost:{relay.port} and could not reconnect within 3 s" in (
        stderr
    )
    assert "iotbutton sandbox status" in stderr  # the hint
    assert "Traceback" not in stderr
    assert stdout == ""


def test_a_stopped_sandbox_ends_the_watch_at_once_with_exit_1_in_json_too(cli, sandbox):
    """No broker will come back when the sandbox itself is gone: said at once, not after the
    600 s of reconnecting asked for (communicate's 60 s would fail first)."""
    cli("--sandbox", "things", "create", SERIAL)
    process = watcher("--reconnect-for", "600", "--json")

    cli("sandbox", "stop")
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 1, stderr
    error = json.loads(stdout)["error"]
    assert error["code"] == "sandbox-stopped"
    assert f"The sandbox (pid {sandbox['pid']}) stopped while this command ran" in error["message"]
    assert "Traceback" not in stderr


def test_ctrl_c_while_reconnecting_stops_at_once(cli, sandbox, relay):
    cli("--sandbox", "things", "create", SERIAL)
    process = watcher("--reconnect-for", "120")
    relay.cut(refuse=True)
    assert "Lost the connection" in next_line(process)

    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    print(f"exited {time.monotonic() - interrupted:.2f} s after SIGINT")  # measured, not asserted

    assert process.returncode == 0, stderr
    assert "Stopped." in stderr
    assert "Traceback" not in stderr


def test_payloads_read_as_json_and_json_times_carry_date_and_zone(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    human = watcher("--count", "1", "--duration", "60")
    machine = watcher("--count", "1", "--duration", "60", "--json")

    clicked = cli("--sandbox", "sim", "click", "--double")
    said, _ = human.communicate(timeout=60)
    lines, _ = machine.communicate(timeout=60)

    payload = {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "DOUBLE"}
    assert clicked.stdout.rstrip().endswith(": " + json.dumps(payload))
    assert "{'" not in clicked.stdout
    assert said.rstrip().endswith(f"iotbutton/{SERIAL} " + json.dumps(payload)), said
    seen = json.loads(lines.splitlines()[0])
    moment = datetime.fromisoformat(seen["time"])
    assert moment.tzinfo is not None and moment.utcoffset().total_seconds() == 0
    assert abs(time.time() - moment.timestamp()) < 600  # today's date, not 1900-01-01
    assert seen["payload"] == payload
