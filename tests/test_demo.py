"""`iotbutton demo`: the README's main job, in its own sandbox and home."""

from __future__ import annotations

import json
import shlex
import tempfile

from iotbutton_cli import demo as demos
from support import registry_document


def test_demo_clicks_and_checks_every_message(cli, isolated_env):
    result = cli.json("demo")

    assert result["ok"] is True
    assert result["clicks"] == {"SINGLE": True, "DOUBLE": True, "LONG": True}
    assert result["receipts"] is True and result["owner_told"] is True
    assert result["escalated"] is True
    delivered = [e for e in result["outbox"] if e["http_status"] == 201]
    refused = [e for e in result["outbox"] if e["http_status"] != 201]
    # Grandma's three clicks (LONG: Alice's call, both SMS, Bob told Alice is coming), her last
    # LONG (both SMS, Alice's call: no answer, Bob's: he presses 1, Alice told Bob is coming),
    # then `notify retry`'s SMS to Carol once Twilio is back: to Carol, and nobody else.
    assert len(delivered) == 13
    to_carol = [e for e in delivered if e["fields"]["To"] == demos.CAROL]
    assert to_carol == delivered[-1:] and "Grandpa" in to_carol[0]["fields"]["Body"]
    assert any("acknowledged" in (e["fields"].get("Body") or "") for e in delivered)
    # Twilio down for Carol: Lambda's three attempts, each with the notifier's three tries.
    assert [(e["http_status"], e["fields"]["To"]) for e in refused] == [(503, demos.CAROL)] * 9
    # It ran in a folder of its own under IOTBUTTON_HOME, and left nothing of it behind: no
    # CA, cache, locks, registry or sandbox state, and no <data>/demo.
    assert result["home"].startswith(str(isolated_env / "iotbutton-demo-"))
    assert list(isolated_env.iterdir()) == []
    # The user's own registry and sandbox are untouched; the demo's sandbox is gone.
    assert registry_document(isolated_env)["namespaces"] == {}
    assert cli.json("sandbox", "status", code=1) == {"running": False}


def test_demo_writes_nothing_in_the_data_folder(cli, tmp_path, monkeypatch):
    """Without IOTBUTTON_HOME (a user's first run), the demo works in a temporary folder that it
    deletes: the user's data, config and cache folders are not even created."""
    user = tmp_path / "user"
    for name, sub in (
        ("HOME", ""),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        monkeypatch.setenv(name, str(user / sub))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.delenv("IOTBUTTON_HOME")

    result = cli("demo", code=None)

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Removed the demo's folder: it left nothing on disk." in result.stdout
    assert not user.exists()
    assert list(temporary.iterdir()) == []


def test_demo_keep_leaves_its_sandbox_to_explore(cli, isolated_env, monkeypatch):
    home = isolated_env / "demo"
    try:
        result = cli("demo", "--keep", code=None)
        assert "Every click produced exactly the configured messages." in result.stdout
        lines = result.stdout.splitlines()
        explore = next(line for line in lines if line.startswith("Explore: "))
        stop = next(line for line in lines if line.startswith("Stop it: "))
        # Both are whole commands, as a shell would read them when pasted.
        assert shlex.split(explore.removeprefix("Explore: ")) == [
            f"IOTBUTTON_HOME={home}",
            "iotbutton",
            "--sandbox",
            "things",
            "list",
        ]
        assignment, *command = shlex.split(stop.removeprefix("Stop it: "))
        assert assignment == f"IOTBUTTON_HOME={home}" and command == [
            "iotbutton",
            "sandbox",
            "stop",
        ]
        monkeypatch.setenv("IOTBUTTON_HOME", str(home))
        listed = cli.json("--sandbox", "things", "list")
        assert sorted(button["serial"] for button in listed) == [
            demos.DEMO_SERIAL,
            demos.GRANDPA_SERIAL,
        ]
        stopped = cli(*command[1:], "--json", code=None)
    finally:
        # Whatever failed above, the kept sandbox must not outlive the test.
        monkeypatch.setenv("IOTBUTTON_HOME", str(home))
        cli("sandbox", "stop", "--json", code=None)
    assert result.exit_code == 0
    assert json.loads(stopped.stdout)["stopped"] is True


def test_a_demo_button_that_cannot_be_provisioned_is_a_clear_error(cli, isolated_env, monkeypatch):
    """The demo's keys folder is a file: its button gets no key files, and the demo says so
    with an error code (not a traceback), cleans up, stops its sandbox, and keeps its folder
    (with the sandbox's log) where the hint says."""
    demo_home = isolated_env / "broken-demo"
    demo_home.mkdir(parents=True)
    (demo_home / "keys").write_text("not a folder\n")
    monkeypatch.setattr(demos, "fresh_home", lambda: demo_home)

    result = cli("demo", "--json", code=None)

    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "demo-provisioning-failed"
    assert "G030JF0553648RUH" in error["message"] and error["hint"]
    assert str(demo_home) in error["message"] + error["hint"]
    assert "Traceback" not in result.stderr
    assert not (demo_home / "state" / "sandbox" / "sandbox.json").exists()
    assert (demo_home / "keys").is_file()  # kept, as the hint says
