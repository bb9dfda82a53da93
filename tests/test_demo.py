"""`iotbutton demo`: the README's main job, in its own sandbox and home."""

from __future__ import annotations

import json

from support import registry_document


def test_demo_clicks_and_checks_every_message(cli, isolated_env):
    result = cli.json("demo")

    assert result["ok"] is True
    assert result["clicks"] == {"SINGLE": True, "DOUBLE": True, "LONG": True}
    assert len(result["outbox"]) == 7
    assert {entry["http_status"] for entry in result["outbox"]} == {201}
    assert result["home"] == str(isolated_env / "demo")
    # The user's own registry and sandbox are untouched; the demo's sandbox is gone.
    assert registry_document(isolated_env)["namespaces"] == {}
    assert not (isolated_env / "demo" / "state" / "sandbox" / "sandbox.json").exists()
    assert cli.json("sandbox", "status", code=1) == {"running": False}


def test_demo_keep_leaves_its_sandbox_to_explore(cli, isolated_env, monkeypatch):
    try:
        result = cli("demo", "--keep", code=None)
        assert "Every click produced exactly the configured messages." in result.stdout
        assert f"IOTBUTTON_HOME={isolated_env / 'demo'}" in result.stdout
        monkeypatch.setenv("IOTBUTTON_HOME", str(isolated_env / "demo"))
        listed = cli.json("--sandbox", "things", "list")
        assert [button["serial"] for button in listed] == ["G030JF0553648RUH"]
    finally:
        # Whatever failed above, the kept sandbox must not outlive the test.
        monkeypatch.setenv("IOTBUTTON_HOME", str(isolated_env / "demo"))
        stopped = cli("sandbox", "stop", "--json", code=None)
    assert result.exit_code == 0
    assert json.loads(stopped.stdout)["stopped"] is True


def test_a_demo_button_that_cannot_be_provisioned_is_a_clear_error(cli, isolated_env):
    """The demo's keys folder is a file: its button gets no key files, and the demo says so
    with an error code (not a traceback), cleans up and stops its sandbox."""
    demo_home = isolated_env / "demo"
    demo_home.mkdir(parents=True)
    (demo_home / "keys").write_text("not a folder\n")

    result = cli("demo", "--json", code=None)

    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "demo-provisioning-failed"
    assert "G030JF0553648RUH" in error["message"] and error["hint"]
    assert "Traceback" not in result.stderr
    assert not (demo_home / "state" / "sandbox" / "sandbox.json").exists()
