"""In sandbox mode, files, hints and notices are about the sandbox: a device (here paho-mqtt, a
client we did not write) connects with exactly the files `things show --json` names, a pasted
hint reaches the same sandbox, starting the sandbox is said once, a sandbox that died is noticed
at once, and a port that is taken is named. Global options work after the command too."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import threading
import time
from typing import Any

import pytest

SERIAL = "G030JF0553648RUH"


def publish_with_paho(host: str, port: int, button: dict[str, Any]) -> int:
    """Publish one click as a device would, with the CA, certificate and key `things show`
    names; the reason code of the PUBACK (0: the broker took it)."""
    import paho.mqtt.client as mqtt

    acked = threading.Event()
    codes: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=button["serial"])
    client.tls_set(
        ca_certs=button["root_ca"],
        certfile=button["files"]["certificate"],
        keyfile=button["files"]["private_key"],
        cert_reqs=ssl.CERT_REQUIRED,
    )

    def on_publish(_client: Any, _userdata: Any, _mid: int, reason: Any, _props: Any) -> None:
        codes.append(int(getattr(reason, "value", reason)))
        acked.set()

    client.on_publish = on_publish
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        payload = {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "SINGLE"}
        client.publish(f"iotbutton/{SERIAL}", json.dumps(payload), qos=1)
        assert acked.wait(20), "no PUBACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def test_the_files_things_show_names_connect_a_device_to_the_sandbox(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    shown = cli.json("--sandbox", "things", "show", SERIAL)
    listed = cli.json("--sandbox", "things", "list")
    endpoint = cli.json("--sandbox", "endpoint")

    assert shown["root_ca"] == sandbox["ca_file"] == endpoint["ca_file"]
    assert [button["root_ca"] for button in listed] == [sandbox["ca_file"]]
    assert publish_with_paho(endpoint["host"], endpoint["port"], shown) == 0


def test_amazon_root_ca_verifies_nothing_the_sandbox_serves(cli, sandbox):
    """Why root_ca must be the sandbox CA there: Amazon Root CA 1 refuses the broker."""
    from iotbutton_cli.registry import keyfiles

    cli("--sandbox", "things", "create", SERIAL)
    shown = cli.json("--sandbox", "things", "show", SERIAL)
    endpoint = cli.json("--sandbox", "endpoint")
    shown["root_ca"] = str(keyfiles.amazon_root_ca())

    with pytest.raises(ssl.SSLCertVerificationError):
        publish_with_paho(endpoint["host"], endpoint["port"], shown)


def test_hints_and_next_steps_carry_sandbox_when_it_was_a_flag(cli, sandbox):
    empty = cli("--sandbox", "things", "list")
    unknown = cli("--sandbox", "things", "show", "G030XX0000000000", code=2)

    assert "Create one with `iotbutton --sandbox things create`." in empty.stderr
    assert "List the buttons with `iotbutton --sandbox things list`." in unknown.stderr
    as_json = cli.json("--sandbox", "things", "show", "G030XX0000000000", code=2)
    assert "`iotbutton --sandbox things list`" in as_json["error"]["hint"]


def test_hints_need_no_flag_when_the_environment_asks_for_the_sandbox(
    cli, sandbox, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("IOTBUTTON_SANDBOX", "1")
    empty = cli("things", "list")
    assert "Create one with `iotbutton things create`." in empty.stderr


def test_hints_outside_the_sandbox_are_unchanged(cli, aws):
    empty = cli("things", "list")
    assert "Create one with `iotbutton things create`." in empty.stderr
    assert "--sandbox" not in empty.stderr


def test_sandbox_group_commands_in_hints_get_no_flag(cli, sandbox):
    from iotbutton_cli.cli.output import Output

    out = Output(sandbox_flag=True)
    assert out.pasteable("see `iotbutton sandbox status`") == "see `iotbutton sandbox status`"
    assert out.pasteable("`iotbutton --sandbox clean`") == "`iotbutton --sandbox clean`"
    assert out.pasteable("`iotbutton clean` or `iotbutton things list`") == (
        "`iotbutton --sandbox clean` or `iotbutton --sandbox things list`"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("things", "list", "--sandbox"),
        ("things", "--sandbox", "list"),
        ("things", "list", "--json", "--sandbox"),
    ],
)
def test_global_options_after_the_command_are_accepted(cli, sandbox, args):
    cli("--sandbox", "things", "create", SERIAL)
    result = cli(*args)
    assert SERIAL in result.stdout


def test_a_global_option_with_a_value_after_the_command(cli, aws):
    result = cli("things", "list", "--region", "us-esat-1", code=3)
    assert "Unknown AWS region 'us-esat-1'" in result.stderr
    result = cli("things", "list", "--region=us-esat-1", code=3)
    assert "Unknown AWS region 'us-esat-1'" in result.stderr


def test_after_a_double_dash_nothing_is_moved(cli):
    from iotbutton_cli.cli.app import hoist_global_options

    assert hoist_global_options(["sim", "send", "--", "--sandbox"]) == [
        "sim",
        "send",
        "--",
        "--sandbox",
    ]
    assert hoist_global_options(["--region", "eu-west-1", "things", "list", "-v"]) == [
        "-v",
        "--region",
        "eu-west-1",
        "things",
        "list",
    ]


def test_starting_the_sandbox_is_said_once_on_stderr(cli):
    first = cli("--sandbox", "things", "list", "--json")
    try:
        second = cli("--sandbox", "things", "list")
        info = cli.json("sandbox", "status")
    finally:
        cli("sandbox", "stop")

    started = f"Started the sandbox (pid {info['pid']}); `iotbutton sandbox stop` ends it."
    assert first.stderr.count(started) == 1
    assert json.loads(first.stdout) == []  # stdout is the result alone
    assert "Started the sandbox" not in second.stderr


def test_a_sandbox_that_died_takes_its_buttons_and_the_next_start_says_so(cli):
    kill_a_sandbox_with_a_button(cli)

    try:
        after = cli("--sandbox", "things", "list", "--json")
        new_pid = cli.json("sandbox", "status")["pid"]
    finally:
        cli("sandbox", "stop")

    assert json.loads(after.stdout) == []
    assert f"Started the sandbox (pid {new_pid})" in after.stderr
    assert (
        "The sandbox before it had stopped without `iotbutton sandbox stop`: its 1 button went "
        "with it (" in after.stderr
    )


def test_sandbox_start_reports_what_a_dead_sandbox_left(cli):
    kill_a_sandbox_with_a_button(cli)

    try:
        started = cli.json("sandbox", "start")
        cli("sandbox", "stop")
        kill_a_sandbox_with_a_button(cli)
        human = cli("sandbox", "start")
    finally:
        cli("sandbox", "stop")

    assert started["started"] is True
    assert started["forgotten_records"] >= 2  # the thing and its certificate, at least
    assert "its 1 button went with it" in human.stdout


def test_a_sandbox_that_dies_under_a_command_is_named_at_once(cli):
    from iotbutton_cli.context import AppContext, Settings, clean_error

    ctx = AppContext(Settings(sandbox=True))
    pid = ctx.sandbox_info.pid
    try:
        ctx.client("iot").list_things()
        os.kill(pid, signal.SIGKILL)
        wait_until_gone(pid)
        with pytest.raises(Exception) as failure:
            ctx.client("iot").list_things()
    finally:
        cli("sandbox", "stop")

    error = clean_error(failure.value, ctx)
    assert error is not None and error.code == "sandbox-stopped"
    assert f"The sandbox (pid {pid}) stopped while this command ran" in error.message
    assert "--sandbox starts a fresh, empty sandbox" in error.hint


@pytest.mark.parametrize(("part", "name"), [("aws", "AWS"), ("mqtt", "MQTT"), ("twilio", "Twilio")])
def test_a_port_in_use_is_named(cli, part, name):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        result = cli("sandbox", "start", f"--{part}-port", str(port), code=1)
    finally:
        taken.close()

    assert f"Error: The sandbox could not start: its {name} port {port} is already in use." in (
        result.stderr
    )
    assert f"pick another with --{part}-port (0: any free one)" in result.stderr
    assert cli.json("sandbox", "status", code=1)["running"] is False


def kill_a_sandbox_with_a_button(cli) -> None:
    """Start a sandbox with one button in it, and kill it as a crash would (no `sandbox stop`)."""
    cli("--sandbox", "things", "create", SERIAL)
    pid = cli.json("sandbox", "status")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until_gone(pid)


def wait_until_gone(pid: int) -> None:
    """Until the killed sandbox is reaped (it is this process's child) or gone."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still there")
