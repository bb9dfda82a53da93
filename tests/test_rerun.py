"""A re-run finishes what an interrupted or failed run left half done, `--count N` runs too: the
half-done buttons come first and count toward N, and `things list`/`show` mark them."""

from __future__ import annotations

import json
import signal
import time

import pytest

from awsinventory import aws_env, clients, compare, recorded, run, spawn
from support import recorded as recorded_kind

SERIAL = "G030JF0553648RUH"


def half_done_by_a_denied_certificate(cli, fault_proxy, count: int, denied: int) -> dict:
    """`things create --count` where AWS refuses the first ``denied`` certificates: those
    buttons' things are made and recorded, their certificates never are."""
    fault_proxy.add(
        "POST", r"^/certificates\?", 403, "AccessDeniedException", "not authorized", times=denied
    )
    result = cli("things", "create", "--count", str(count), "--json", code=1)
    fault_proxy.faults.clear()
    return json.loads(result.stdout)


def test_count_rerun_finishes_the_half_done_buttons_first(cli, fault_proxy, isolated_env):
    first = half_done_by_a_denied_certificate(cli, fault_proxy, count=5, denied=2)
    failed = {b["serial"] for b in first["buttons"] if b["action"] == "failed"}
    assert len(failed) == 2 and first["half_done_left"] == 2
    listed = {b["serial"]: b for b in cli.json("things", "list")}
    assert {serial for serial, b in listed.items() if b["half_done"]} == failed
    assert all(listed[serial]["certificate_id"] is None for serial in failed)

    again = cli.json("things", "create", "--count", "5")

    actions = {b["serial"]: b["action"] for b in again["buttons"]}
    assert {serial for serial, action in actions.items() if action == "resumed"} == failed
    assert sorted(actions.values()) == ["created"] * 3 + ["resumed"] * 2
    assert again["half_done_left"] == 0
    iot = clients(fault_proxy.upstream)["iot"]
    things = {t["thingName"] for t in iot.list_things()["things"]}
    assert len(things) == 8 and failed <= things  # 5 + 3 new, not 5 + 5
    assert len(iot.list_certificates()["certificates"]) == 8
    for serial in failed:
        assert iot.list_thing_principals(thingName=serial)["principals"]
    assert not any(b["half_done"] for b in cli.json("things", "list"))
    assert not compare(fault_proxy.upstream, isolated_env).unrecorded


def test_the_run_and_the_list_say_what_is_half_done(cli, fault_proxy):
    fault_proxy.add("POST", r"^/certificates\?", 403, "AccessDeniedException", "no", times=1)
    first = cli("things", "create", "--count", "2", code=1)
    fault_proxy.faults.clear()
    assert (
        "1 button is still half done (HALF-DONE in `iotbutton things list`); "
        "`iotbutton things create --count 1` finishes it." in first.stderr
    )
    listed = cli("things", "list")
    assert listed.stdout.count("HALF-DONE") == 1 and "ACTIVE" in listed.stdout
    assert "`iotbutton things create SERIAL` (or --count N) finishes it" in listed.stderr

    again = cli("things", "create", "--count", "2")

    assert "Finished 1 half-done button from an earlier run." in again.stderr
    assert again.stdout.count("resumed") == 1 and again.stdout.count("created") == 1
    assert "still half done" not in again.stderr
    assert "HALF-DONE" not in cli("things", "list").stdout


def test_more_half_done_than_count_finishes_the_oldest(cli, fault_proxy):
    first = half_done_by_a_denied_certificate(cli, fault_proxy, count=3, denied=3)
    serials = sorted(b["serial"] for b in first["buttons"])

    one = cli.json("things", "create", "--count", "1")  # the default count is 1 too

    [button] = one["buttons"]
    assert button["action"] == "resumed" and button["serial"] in serials
    assert one["half_done_left"] == 2
    rest = cli.json("things", "create", "--count", "4")
    actions = sorted(b["action"] for b in rest["buttons"])
    assert actions == ["created", "created", "resumed", "resumed"]
    assert {b["serial"] for b in rest["buttons"] if b["action"] == "resumed"} == set(serials) - {
        button["serial"]
    }
    assert len(clients(fault_proxy.upstream)["iot"].list_things()["things"]) == 5


def test_a_named_serial_finishes_only_itself(cli, fault_proxy):
    first = half_done_by_a_denied_certificate(cli, fault_proxy, count=2, denied=2)
    half_done = sorted(b["serial"] for b in first["buttons"])

    named = cli.json("things", "create", SERIAL)

    assert [(b["serial"], b["action"]) for b in named["buttons"]] == [(SERIAL, "created")]
    assert named["half_done_left"] == 2  # still there, and said so
    finished = cli.json("things", "create", half_done[0])
    assert finished["buttons"][0]["action"] == "resumed" and finished["half_done_left"] == 1


def test_half_done_of_another_thing_type_is_left_for_its_own_run(cli, fault_proxy):
    first = half_done_by_a_denied_certificate(cli, fault_proxy, count=1, denied=1)
    [earlier] = [b["serial"] for b in first["buttons"]]

    other = cli.json("things", "create", "--type", "lobby")

    [button] = other["buttons"]
    assert button["action"] == "created" and button["serial"] != earlier
    assert other["half_done_left"] == 1
    assert cli.json("things", "create")["buttons"][0]["serial"] == earlier


def test_pending_and_unattached_buttons_are_half_done_and_finished(cli, iot, isolated_env):
    """The two other shapes a killed run leaves: a thing recorded just before CreateThing (never
    made), and a certificate issued but not yet attached to its thing."""
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import certs, policies, things

    ctx = AppContext()
    policies.ensure_button_policy(ctx)
    things.ensure_thing_type(ctx, "iotbutton")
    ctx.namespace.put(
        "things",
        "G030AA0000001PND",
        {
            "arn": ctx.arn("iot", "thing/G030AA0000001PND"),
            "thing_type": "iotbutton",
            "pending": True,
        },
    )
    response = things._create_thing(ctx, "G030AA0000002UNA", "iotbutton")
    ctx.namespace.put("things", "G030AA0000002UNA", {"arn": response["thingArn"]})
    cert_id = certs.create_certificate(ctx, {"thing": "G030AA0000002UNA"})["certificateId"]
    assert things.half_done(ctx) == ["G030AA0000001PND", "G030AA0000002UNA"]
    assert [b["half_done"] for b in cli.json("things", "list")] == [True, True]

    result = cli.json("things", "create", "--count", "2")

    assert {(b["serial"], b["action"]) for b in result["buttons"]} == {
        ("G030AA0000001PND", "resumed"),
        ("G030AA0000002UNA", "resumed"),
    }
    [unattached] = [b for b in result["buttons"] if b["serial"] == "G030AA0000002UNA"]
    assert unattached["certificate_id"] == cert_id  # the issued certificate, not a second one
    assert len(iot.list_certificates()["certificates"]) == 2
    assert {t["thingName"] for t in iot.list_things()["things"]} == {
        "G030AA0000001PND",
        "G030AA0000002UNA",
    }
    assert not any(
        record.get("pending") for record in recorded_kind(isolated_env, "things").values()
    )


def test_show_prints_none_for_what_a_half_done_button_lacks(cli, fault_proxy):
    first = half_done_by_a_denied_certificate(cli, fault_proxy, count=1, denied=1)
    [serial] = [b["serial"] for b in first["buttons"]]

    shown = cli.json("things", "show", serial)
    assert shown["half_done"] is True and shown["certificate_id"] is None and shown["files"] == {}
    table = cli("things", "show", serial).stdout
    rows = {
        cells[0]: cells[1]
        for line in table.splitlines()
        if line.startswith("│")
        for cells in [[cell.strip() for cell in line.strip("│").split("│")]]
    }
    assert rows["certificate"] == "none" and rows["certificate status"] == "none"
    assert rows["key files"] == "none"
    assert rows["state"].startswith(f"HALF-DONE (`iotbutton things create {serial}`")
    assert all(value for value in rows.values()), rows  # no blank cell

    cli("things", "create", serial)
    finished = {
        line.split("│")[1].strip(): line
        for line in cli("things", "show", serial).stdout.splitlines()
        if line.startswith("│")
    }
    assert "complete" in finished["state"] and "private key file" in finished


@pytest.mark.slow
def test_rerun_after_ctrl_c_ends_with_count_buttons(moto_url, tmp_path):
    """The issue's story: Ctrl-C in `things create --count N`, then the same command again: the
    buttons left half done are finished and count toward N, every one is complete, none is made
    twice. (CreateThing is paced, so the buttons in flight at Ctrl-C stop with a thing and no
    certificate.)"""
    count = 30
    home = tmp_path / "home"
    slow = {"IOTBUTTON_RATE_LIMITER": "on", "IOTBUTTON_RATE_LIMITS": "CreateThing=2"}
    process = spawn(
        "things", "create", "--count", str(count), "--json", env=aws_env(home, moto_url, **slow)
    )
    deadline = time.monotonic() + 60
    while len(recorded(home).get("certificates", {})) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    before = json.loads(run("things", "list", "--json", env=aws_env(home, moto_url)).stdout)
    half_done = sum(button["half_done"] for button in before)
    print(f"interrupted with {len(before)} buttons recorded, {half_done} of them half done")

    again = run("things", "create", "--count", str(count), "--json", env=aws_env(home, moto_url))

    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    resumed = {b["serial"] for b in report["buttons"] if b["action"] == "resumed"}
    assert resumed == {button["serial"] for button in before if button["half_done"]}
    assert half_done > 0 and len(report["buttons"]) == count
    assert "Finished" not in again.stderr  # --json: nothing for people on stderr
    iot = clients(moto_url)["iot"]
    # The complete buttons of the first run, plus N: the half-done ones counted toward N.
    total = len(before) - half_done + count
    assert len(iot.list_things()["things"]) == total
    assert len(iot.list_certificates()["certificates"]) == total
    assert not compare(moto_url, home).unrecorded
    listed = run("things", "list", "--json", env=aws_env(home, moto_url))
    assert not any(button["half_done"] for button in json.loads(listed.stdout))
