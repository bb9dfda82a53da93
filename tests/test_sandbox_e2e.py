"""The whole story offline, through the CLI: a click becomes Twilio requests, then clean.

The sandbox runs as the real background process; the button is the real awsiotsdk client over
mutual TLS; the notifier is the deployed zip; Twilio's stand-in checks each request against
Twilio's OpenAPI description.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3

from support import TWILIO_SECRET, Watcher, notify_init_args, wait_for_outbox

SERIAL = "G030JF0553648RUH"
SMS_TO = "+15551230001"
CALL_TO = "+15551230002"


def deploy_notifier(cli):
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO), "--call", CALL_TO)
    cli("--sandbox", "notify", "deploy")


def iotbutton_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "iotbutton_cli", *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def test_a_double_click_becomes_an_sms_and_a_call(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    deploy_notifier(cli)
    watcher = iotbutton_process(
        "--sandbox", "sim", "subscribe", "--count", "1", "--duration", "30", "--json"
    )
    assert "Watching" in watcher.stderr.readline()

    sent = cli.json("--sandbox", "sim", "click", "--double")

    assert sent == [
        {
            "serial": SERIAL,
            "topic": f"iotbutton/{SERIAL}",
            "payload": {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "DOUBLE"},
            "host": "localhost",
            "port": sandbox["mqtt_port"],
        }
    ]
    outbox = wait_for_outbox(cli, 2)
    assert sorted((e["resource"], e["fields"]["To"], e["http_status"]) for e in outbox) == [
        ("Calls", CALL_TO, 201),
        ("Messages", SMS_TO, 201),
    ]
    message = next(e for e in outbox if e["resource"] == "Messages")
    assert message["fields"]["From"] == "+15005550006"
    assert "Grandma" in message["fields"]["Body"] and SERIAL in message["fields"]["Body"]
    assert TWILIO_SECRET not in json.dumps(outbox)
    seen, _ = watcher.communicate(timeout=30)
    assert json.loads(seen.splitlines()[0])["payload"]["clickType"] == "DOUBLE"
    aws = {
        "endpoint_url": sandbox["aws_url"],
        "region_name": "us-east-1",
        "aws_access_key_id": sandbox["access_key_id"],
        "aws_secret_access_key": sandbox["secret_access_key"],
    }
    # The click is one alarm in the ledger, with both deliveries sent.
    ledger = boto3.client("dynamodb", **aws).scan(TableName="iotbutton-alarms")["Items"]
    by_key = {item["sk"]["S"]: item for item in ledger}
    assert sorted(by_key) == ["alarm", f"call#{CALL_TO}", "recent", f"sms#{SMS_TO}"]
    assert by_key["alarm"]["state"]["S"] == "alarm"
    assert by_key["alarm"]["pk"]["S"].startswith(f"{SERIAL}-DOUBLE-")
    assert by_key["recent"]["alarmId"] == by_key["alarm"]["pk"]
    assert {by_key[f"call#{CALL_TO}"]["status"]["S"], by_key[f"sms#{SMS_TO}"]["status"]["S"]} == {
        "sent"
    }

    # ... and `notify history` tells it.
    [alarm] = cli.json("--sandbox", "notify", "history")
    assert alarm["alarm"] == by_key["alarm"]["pk"]["S"]
    assert (alarm["serial"], alarm["click"], alarm["state"]) == (SERIAL, "DOUBLE", "alarm")
    assert alarm["click_time_known"] is True
    assert [(d["channel"], d["to"], d["status"]) for d in alarm["deliveries"]] == [
        ("sms", SMS_TO, "queued"),
        ("call", CALL_TO, "queued"),
    ]
    assert cli.json("--sandbox", "notify", "history", "G030OTHER0000000") == []
    # Twilio's receipts (signed status callbacks to the function URL) tell how it ended.
    deadline = time.monotonic() + 30
    while True:
        [alarm] = cli.json("--sandbox", "notify", "history")
        final = {d["channel"]: d["twilio_status"] for d in alarm["deliveries"]}
        if final == {"sms": "delivered", "call": "completed"} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert final == {"sms": "delivered", "call": "completed"}
    assert [d["reached"] for d in alarm["deliveries"]] == [True, True]
    callbacks = [e for e in cli.json("sandbox", "outbox") if e.get("kind") == "callback"]
    assert callbacks and {e["http_status"] for e in callbacks} == {204}
    table = cli("--sandbox", "notify", "history", "--since", "2h").stdout
    assert SERIAL in table and SMS_TO in table and "delivered" in table

    cleaned = cli.json("--sandbox", "clean", "--yes")
    assert cleaned["complete"] is True
    iot = boto3.client("iot", **aws)
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert iot.list_topic_rules()["rules"] == []
    assert boto3.client("lambda", **aws).list_functions()["Functions"] == []
    assert boto3.client("iam", **aws).list_roles()["Roles"] == []
    assert boto3.client("s3", **aws).list_buckets()["Buckets"] == []
    assert boto3.client("dynamodb", **aws).list_tables()["TableNames"] == []


def test_a_rule_with_a_where_clause_filters_clicks(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    deploy_notifier(cli)
    cli("--sandbox", "rules", "delete", "iotbutton_notifier", "--yes")
    cli(
        "--sandbox",
        "rules",
        "create",
        "--name",
        "iotbutton_long_only",
        "--sql",
        "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'",
    )

    cli("--sandbox", "sim", "click", "--single")
    time.sleep(1.5)
    assert cli.json("sandbox", "outbox") == []
    cli("--sandbox", "sim", "click", "--long")
    assert len(wait_for_outbox(cli, 2)) == 2


def test_a_revoked_button_is_refused_within_seconds(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", "certs", "revoke", SERIAL, "--yes")

    started = time.monotonic()
    result = cli("--sandbox", "sim", "click", code=1)

    assert time.monotonic() - started < 15
    assert "refused the certificate of G030JF0553648RUH" in result.stderr
    cli("--sandbox", "certs", "rotate", SERIAL)
    cli("--sandbox", "sim", "click")  # a fresh certificate works at once


def test_sim_needs_a_button(cli, sandbox):
    result = cli("--sandbox", "sim", "click", code=2)
    assert "Which button? None exists." in result.stderr
    cli("--sandbox", "things", "create", "--count", "2")
    assert "2 are recorded" in cli("--sandbox", "sim", "click", code=2).stderr


def test_status_endpoint_and_stop(cli, sandbox):
    status = cli.json("sandbox", "status")
    assert status["running"] is True and status["pid"] == sandbox["pid"]
    endpoint = cli.json("--sandbox", "endpoint")
    assert endpoint == {
        "host": "localhost",
        "port": sandbox["mqtt_port"],
        "ca_file": sandbox["ca_file"],
    }
    assert "already running" in cli("sandbox", "start").stdout


def test_status_when_stopped_and_with_a_stale_pid_file(cli, isolated_env):
    assert cli.json("sandbox", "status", code=1) == {"running": False}
    state = isolated_env / "state" / "sandbox"
    state.mkdir(parents=True)
    (state / "sandbox.json").write_text(json.dumps({"pid": 2**22 + 12345}))
    assert cli.json("sandbox", "status", code=1) == {"running": False}
    assert not (state / "sandbox.json").exists()
    assert "not running" in cli("sandbox", "outbox", code=1).stderr


def test_a_sandbox_that_died_leaves_no_phantom_records(cli, sandbox):
    """moto keeps state in memory: after a crash, the next sandbox starts empty, and so must the
    registry's sandbox namespace."""
    import signal

    from iotbutton_cli.sandbox.client import _alive

    cli("--sandbox", "things", "create", SERIAL)
    os.kill(sandbox["pid"], signal.SIGKILL)
    # Dead, not dying: a loaded machine can take a moment to tear down a killed process.
    deadline = time.monotonic() + 10
    while _alive(sandbox["pid"]) and time.monotonic() < deadline:
        time.sleep(0.01)

    result = cli.json("--sandbox", "things", "create", SERIAL)

    assert result["buttons"][0]["action"] == "created"
    assert [b["serial"] for b in cli.json("--sandbox", "things", "list")] == [SERIAL]


def test_a_sandbox_that_does_not_answer_is_named_in_the_error(cli, isolated_env, monkeypatch):
    """A sandbox whose process lives but whose port is closed (hung, or dying): the error says
    so, instead of suggesting the network or the region."""
    import socket

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # refused is refused: no need to wait for retries
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    from iotbutton_cli.sandbox.process_identity import identity

    state = isolated_env / "state" / "sandbox"
    state.mkdir(parents=True)
    (state / "sandbox.json").write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "process": identity(os.getpid()),
                "access_key_id": "AKIA" + "A" * 16,
                "secret_access_key": "s" * 40,
                "aws_url": f"http://127.0.0.1:{closed_port}",
                "mqtt_host": "localhost",
                "mqtt_port": closed_port,
                "ca_file": str(state / "ca.pem"),
                "twilio_url": f"http://127.0.0.1:{closed_port}",
                "outbox": str(state / "outbox.jsonl"),
                "region": "us-east-1",
                "account": "123456789012",
            }
        )
    )
    result = cli("--sandbox", "things", "create", SERIAL, code=1)
    assert "Could not reach the sandbox" in result.stderr
    assert "iotbutton sandbox status" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_sandbox_dying_during_sim_click_is_one_line(cli, sandbox):
    """Clicks on one connection, and the broker goes away under them: the command says how far
    it got, in one line, and exits 1."""
    import signal

    cli("--sandbox", "things", "create", SERIAL)
    watcher = Watcher(duration=60)
    clicking = iotbutton_process("--sandbox", "sim", "click", "--count", "100000")
    assert watcher.received(), "no click arrived"  # its first click came: it is publishing
    assert clicking.poll() is None, clicking.communicate()
    os.kill(sandbox["pid"], signal.SIGKILL)
    _, stderr = clicking.communicate(timeout=60)

    assert clicking.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and lines[1].startswith("Hint: ")
    assert "clicks were sent" in lines[0] and "Traceback" not in stderr


def test_a_failed_invocation_is_retried_twice_with_its_request_id_then_dropped(cli, sandbox):
    """As Lambda does with an asynchronous event: here Twilio refuses the notifier's secret
    (another one was stored since the deploy), which the function raises on so it is retried."""
    cli("--sandbox", "things", "create", SERIAL)
    deploy_notifier(cli)
    aws = {
        "endpoint_url": sandbox["aws_url"],
        "region_name": "us-east-1",
        "aws_access_key_id": sandbox["access_key_id"],
        "aws_secret_access_key": sandbox["secret_access_key"],
    }
    boto3.client("ssm", **aws).put_parameter(
        Name="/iotbutton/twilio-secret", Value="r" * 32, Type="SecureString", Overwrite=True
    )
    log = Path(sandbox["outbox"]).parent / "sandbox.log"

    cli("--sandbox", "sim", "click", "--long")

    deadline = time.monotonic() + 30
    while "dropped the event after 2 retries" not in log.read_text():
        assert time.monotonic() < deadline, "the sandbox never gave up on the event"
        time.sleep(0.2)
    starts = [
        line.split("RequestId: ")[1].split()[0]
        for line in cli("--sandbox", "notify", "logs", "--since", "10").stdout.splitlines()
        if "START RequestId: " in line
    ]
    assert len(starts) == 3 and len(set(starts)) == 1
    assert "Lambda retries iotbutton-notifier in 0.25 s (retry 1 of 2" in log.read_text()
