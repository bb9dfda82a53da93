"""A sandbox.json outlives its process, and its pid can be handed to another process: `sandbox
stop` must never signal that one, and `sandbox status` must say the state file was stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from iotbutton_cli.sandbox import process_identity


@pytest.fixture
def stranger():
    """A live process that is not the sandbox (as one that got the sandbox's old pid)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def write_state(home, pid: int, **fields) -> object:
    state = home / "state" / "sandbox"
    state.mkdir(parents=True, exist_ok=True)
    document = {
        "pid": pid,
        "aws_url": "http://127.0.0.1:1",
        "mqtt_host": "localhost",
        "mqtt_port": 1,
        "ca_file": str(state / "tls" / "ca.pem"),
        "twilio_url": "http://127.0.0.1:1",
        "outbox": str(state / "outbox.jsonl"),
        "region": "us-east-1",
        "account": "123456789012",
        "access_key_id": "AKIA" + "B" * 16,
        "secret_access_key": "b" * 40,
        # What the sandbox recorded about itself when it started, long ago.
        "process": {
            "source": "proc",
            "start": "4242",
            "command": f"{sys.executable} -m iotbutton_cli.sandbox.server --state-dir {state}",
        },
        **fields,
    }
    path = state / "sandbox.json"
    path.write_text(json.dumps({k: v for k, v in document.items() if v is not None}))
    return path


def test_stop_never_signals_a_process_that_got_the_pid(cli, isolated_env, stranger):
    path = write_state(isolated_env, stranger.pid)

    assert cli.json("sandbox", "stop") == {
        "stopped": False,
        "pid": None,
        "forgotten_records": 0,
        "stale": True,
        "stale_pid": stranger.pid,
    }

    assert stranger.poll() is None, "sandbox stop signalled a process that is not the sandbox"
    assert not path.exists()
    write_state(isolated_env, stranger.pid)
    said = cli("sandbox", "stop").stdout
    assert "not running" in said and "stale" in said and f"pid {stranger.pid}" in said
    assert stranger.poll() is None


def test_status_says_the_state_file_was_stale(cli, isolated_env, stranger):
    path = write_state(isolated_env, stranger.pid)
    assert cli.json("sandbox", "status", code=1) == {
        "running": False,
        "stale": True,
        "pid": stranger.pid,
    }
    assert not path.exists()

    write_state(isolated_env, stranger.pid)
    said = cli("sandbox", "status", code=1).stdout
    assert "stale" in said and f"pid {stranger.pid}" in said and "another process" in said
    assert cli.json("sandbox", "status", code=1) == {"running": False}  # and it is gone
    assert stranger.poll() is None


def test_a_state_file_without_identity_or_keys_is_stale_too(cli, isolated_env, stranger):
    """From an older iotbutton, or damaged: nothing proves the pid is a sandbox."""
    write_state(isolated_env, stranger.pid, process=None, access_key_id=None)
    assert cli.json("sandbox", "stop")["stale"] is True
    assert stranger.poll() is None


def test_commands_start_a_new_sandbox_instead_of_trusting_a_stale_one(cli, isolated_env, stranger):
    write_state(isolated_env, stranger.pid)
    info = cli.json("sandbox", "start")
    try:
        assert info["started"] is True and info["pid"] != stranger.pid
        recorded = json.loads((isolated_env / "state" / "sandbox" / "sandbox.json").read_text())
        assert recorded["process"] == process_identity.identity(info["pid"])
        assert "iotbutton_cli.sandbox.server" in recorded["process"]["command"]
    finally:
        assert cli.json("sandbox", "stop")["stopped"] is True
    assert stranger.poll() is None


def test_identity_tells_processes_apart(stranger):
    mine = process_identity.identity(os.getpid())
    theirs = process_identity.identity(stranger.pid)
    assert mine and theirs and mine != theirs
    assert "sleep 60" in theirs["command"]
    assert process_identity.same_process(stranger.pid, theirs)
    assert not process_identity.same_process(stranger.pid, {**theirs, "start": "1"})
    assert not process_identity.same_process(stranger.pid, mine)
    assert not process_identity.same_process(stranger.pid, {})
    stranger.kill()
    stranger.wait()
    assert process_identity.identity(stranger.pid) is None
    assert not process_identity.same_process(stranger.pid, theirs)


def test_identity_falls_back_to_ps_without_proc(stranger, monkeypatch, tmp_path):
    if subprocess.run(["ps", "-p", "1"], capture_output=True).returncode != 0:
        pytest.skip("no working ps here")
    monkeypatch.setattr(process_identity, "PROC", tmp_path / "no-proc")
    theirs = process_identity.identity(stranger.pid)
    assert theirs is not None and theirs["source"] == "ps"
    assert theirs["command"] == "sleep 60" and len(theirs["start"]) == 24
    assert process_identity.same_process(stranger.pid, theirs)
    assert not process_identity.same_process(stranger.pid, {**theirs, "start": "x"})
    assert process_identity.identity(2**22 + 12345) is None
