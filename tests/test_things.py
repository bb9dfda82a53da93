"""`things create/list/show/delete` against moto, checked in AWS, the registry and on disk."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from support import recorded

SERIAL = "G030JF0553648RUH"


def mode(path: str | Path) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def test_create_provisions_thing_certificate_policy_and_files(cli, iot, isolated_env):
    result = cli.json("things", "create", SERIAL)

    [button] = result["buttons"]
    assert button["serial"] == SERIAL and button["action"] == "created"
    cert_id = button["certificate_id"]
    thing = iot.describe_thing(thingName=SERIAL)
    assert thing["thingTypeName"] == "iotbutton"
    assert thing["attributes"] == {"createdBy": "iotbutton-cli"}
    cert = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    assert [
        p["policyName"]
        for p in iot.list_attached_policies(target=cert["certificateArn"])["policies"]
    ] == ["iotbutton-button"]
    assert iot.list_thing_principals(thingName=SERIAL)["principals"] == [cert["certificateArn"]]

    files = recorded(isolated_env, "certificates")[cert_id]["files"]
    assert Path(files["certificate"]).read_text() == cert["certificatePem"]
    assert "PRIVATE KEY" in Path(files["private_key"]).read_text()
    assert mode(files["private_key"]) == 0o600
    folder = Path(files["private_key"]).parent
    while folder != isolated_env.parent:
        assert mode(folder) == 0o700, folder
        folder = folder.parent
    assert recorded(isolated_env, "things")[SERIAL]["certificate"] == cert_id


def test_policy_is_least_privilege_with_policy_variables(cli, iot):
    cli("things", "create", SERIAL)

    document = json.loads(iot.get_policy(policyName="iotbutton-button")["policyDocument"])
    grants = {s["Action"]: s["Resource"] for s in document["Statement"]}
    arn = "arn:aws:iot:us-east-1:123456789012"
    assert grants == {
        "iot:Connect": f"{arn}:client/${{iot:Connection.Thing.ThingName}}",
        "iot:Publish": f"{arn}:topic/iotbutton/${{iot:Connection.Thing.ThingName}}",
    }
    assert all(s["Effect"] == "Allow" for s in document["Statement"])


def test_rerun_changes_nothing_and_says_so(cli, iot):
    first = cli.json("things", "create", SERIAL)["buttons"][0]
    result = cli("things", "create", SERIAL)

    assert "unchanged" in result.stdout and "Nothing to do" in result.stderr
    assert len(iot.list_certificates()["certificates"]) == 1
    again = cli.json("things", "create", SERIAL)["buttons"][0]
    assert again == {**first, "action": "unchanged"}


def test_no_serial_generates_a_realistic_one(cli, iot):
    [button] = cli.json("things", "create")["buttons"]
    assert re.fullmatch(r"G030[A-Z]{2}\d{7}[A-Z]{3}", button["serial"])
    assert iot.describe_thing(thingName=button["serial"])


def test_count_provisions_many_concurrently(cli, iot, isolated_env):
    result = cli.json("things", "create", "--count", "20")

    serials = {b["serial"] for b in result["buttons"]}
    assert len(serials) == 20
    assert all(b["action"] == "created" for b in result["buttons"])
    assert {t["thingName"] for t in iot.list_things()["things"]} == serials
    assert len(iot.list_certificates()["certificates"]) == 20
    assert set(recorded(isolated_env, "things")) == serials
    assert len(recorded(isolated_env, "certificates")) == 20


def test_one_failure_does_not_lose_the_others(cli, iot, isolated_env):
    iot.create_thing(thingName="TAKEN1", attributePayload={"attributes": {"owner": "someone"}})

    result = cli("things", "create", "TAKEN1", "--json", code=1)

    [button] = json.loads(result.stdout)["buttons"]
    assert button["action"] == "failed"
    assert button["error"]["code"] == "thing-not-ours"
    # The thing we did not make is untouched and not recorded.
    assert iot.describe_thing(thingName="TAKEN1")["attributes"] == {"owner": "someone"}
    assert "TAKEN1" not in recorded(isolated_env, "things")
    # The certificate made beside the thing (at once, see provisioning/overlap.py) is retired:
    # nothing is left in AWS, in the registry or on disk for a serial that was not ours.
    assert iot.list_certificates()["certificates"] == []
    assert recorded(isolated_env, "certificates") == {}
    assert not list((isolated_env / "keys").rglob("*.pem.key"))


def test_new_buttons_make_thing_and_certificate_at_once(cli, iot, isolated_env, monkeypatch):
    """A new button's CreateThing and CreateCertificateFromCsr are in flight together, and so are
    its AttachPolicy and AttachThingPrincipal: each answer is held until the other call arrives
    (a barrier of two), which would deadlock one after another."""
    import threading

    from iotbutton_cli.provisioning import certs, things

    pairs = {"thing": threading.Barrier(2, timeout=10), "attach": threading.Barrier(2, timeout=10)}
    create_thing, create_certificate = things._create_thing, certs.create_certificate

    def held(name, call):
        def wrapper(*args, **kwargs):
            answer = call(*args, **kwargs)
            pairs[name].wait()
            return answer

        return wrapper

    monkeypatch.setattr(things, "_create_thing", held("thing", create_thing))
    monkeypatch.setattr(certs, "create_certificate", held("thing", create_certificate))
    client = __import__("iotbutton_cli.context", fromlist=["AppContext"]).AppContext.client

    def client_with_held_attachments(self, service):
        made = client(self, service)
        if service == "iot" and not getattr(made, "_held", False):
            made.attach_policy = held("attach", made.attach_policy)
            made.attach_thing_principal = held("attach", made.attach_thing_principal)
            made._held = True
        return made

    monkeypatch.setattr("iotbutton_cli.context.AppContext.client", client_with_held_attachments)

    result = json.loads(cli("things", "create", "G030JF0553648RUH", "--json").stdout)

    assert [b["action"] for b in result["buttons"]] == ["created"]
    assert not any(barrier.broken for barrier in pairs.values())
    assert len(iot.list_thing_principals(thingName="G030JF0553648RUH")["principals"]) == 1


def test_bad_serial_is_rejected_before_any_aws_call(cli, iot, isolated_env):
    result = cli("things", "create", "bad/serial", code=2)

    assert result.stderr.splitlines()[0] == "Error: Invalid serial 'bad/serial': it contains '/'."
    assert "Hint:" in result.stderr and "Traceback" not in result.stderr
    assert iot.list_policies()["policies"] == []
    assert not (isolated_env / "registry.json").exists()


def test_serial_too_long_and_serial_with_count(cli, aws):
    too_long = cli("things", "create", "A" * 129, code=2)
    assert "129 characters long (AWS allows 128)" in too_long.stderr
    both = cli("things", "create", SERIAL, "--count", "3", code=2)
    assert "cannot be combined" in both.stderr


def test_list_and_show(cli, iot, isolated_env):
    assert cli.json("things", "list") == []
    cli("things", "create", SERIAL)

    [listed] = cli.json("things", "list")
    assert listed["serial"] == SERIAL and listed["certificate_status"] == "ACTIVE"
    table = cli("things", "list").stdout
    assert SERIAL in table and "ACTIVE" in table and "ok" in table

    shown = cli.json("things", "show", SERIAL)
    assert shown["aws"]["exists"] is True
    assert shown["certificate_status"] == "ACTIVE"
    assert Path(shown["files"]["private_key"]).is_file()
    assert Path(shown["root_ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert shown["thing_arn"] == iot.describe_thing(thingName=SERIAL)["thingArn"]


def test_show_unknown_serial(cli, aws):
    result = cli("things", "show", "NOPE", code=2)
    assert "No button 'NOPE' in the registry" in result.stderr
    assert (
        json.loads(cli("things", "show", "NOPE", "--json", code=2).stdout)["error"]["code"]
        == "unknown-serial"
    )


def test_delete_removes_everything_of_the_button(cli, iot, isolated_env):
    cli("things", "create", SERIAL)
    cli("things", "create", "KEEPME")
    files = cli.json("things", "show", SERIAL)["files"]

    result = cli.json("things", "delete", SERIAL, "--yes")

    assert result["deleted"] is True and len(result["certificates"]) == 1
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["KEEPME"]
    assert len(iot.list_certificates()["certificates"]) == 1
    assert not any(Path(p).exists() for p in files.values())
    assert set(recorded(isolated_env, "things")) == {"KEEPME"}


def test_delete_asks_and_refuses_without_a_terminal(cli, iot):
    cli("things", "create", SERIAL)
    result = cli("things", "delete", SERIAL, code=2)
    assert "Pass --yes" in result.stderr
    assert iot.describe_thing(thingName=SERIAL)


def test_resumes_a_run_interrupted_after_the_thing(cli, iot, isolated_env):
    """A run killed after CreateThing was recorded: the re-run finishes the button."""
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import policies, things

    ctx = AppContext()
    policies.ensure_button_policy(ctx)
    things.ensure_thing_type(ctx, "iotbutton")
    response = things._create_thing(ctx, SERIAL, "iotbutton")
    ctx.namespace.put("things", SERIAL, {"arn": response["thingArn"], "thing_type": "iotbutton"})

    [button] = cli.json("things", "create", SERIAL)["buttons"]

    assert button["action"] == "resumed"
    assert len(iot.list_certificates()["certificates"]) == 1
    assert iot.list_thing_principals(thingName=SERIAL)["principals"]


def test_certificate_whose_key_was_lost_is_replaced(cli, iot, isolated_env):
    """A run killed before the private key reached the disk leaves an unusable certificate."""
    cli("things", "create", SERIAL)
    cert_id = cli.json("things", "show", SERIAL)["certificate_id"]
    Path(recorded(isolated_env, "certificates")[cert_id]["files"]["private_key"]).unlink()
    from iotbutton_cli.context import AppContext

    AppContext().namespace.update("things", SERIAL, certificate=None)

    [button] = cli.json("things", "create", SERIAL)["buttons"]

    assert button["action"] == "resumed" and button["certificate_id"] != cert_id
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [
        button["certificate_id"]
    ]


def test_delete_of_a_half_done_button_counts_no_certificate(cli, iot, isolated_env):
    """A button an interrupted run left with a thing and no certificate: nothing to count."""
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import policies, things

    ctx = AppContext()
    policies.ensure_button_policy(ctx)
    things.ensure_thing_type(ctx, "iotbutton")
    response = things._create_thing(ctx, SERIAL, "iotbutton")
    ctx.namespace.put("things", SERIAL, {"arn": response["thingArn"], "thing_type": "iotbutton"})

    result = cli.json("things", "delete", SERIAL, "--yes")

    assert result["certificates"] == [] and result["already_gone"] == []
    assert iot.list_things()["things"] == [] and recorded(isolated_env, "things") == {}
    ctx.namespace.put("things", "G030AA0000000BBB", {"arn": ctx.arn("iot", "thing/x")})
    said = cli("things", "delete", "G030AA0000000BBB", "--yes")
    assert (
        said.stdout.strip() == "Deleted button G030AA0000000BBB; it had no certificate to delete."
    )


def test_delete_counts_only_certificates_it_deleted(cli, iot, isolated_env):
    """A recorded certificate someone already deleted in AWS is forgotten, not counted."""

    def delete_certificate_by_hand() -> str:
        gone = cli.json("certs", "show", SERIAL)
        iot.detach_policy(policyName="iotbutton-button", target=gone["arn"])
        iot.detach_thing_principal(thingName=SERIAL, principal=gone["arn"])
        iot.update_certificate(certificateId=gone["certificate_id"], newStatus="INACTIVE")
        iot.delete_certificate(certificateId=gone["certificate_id"])
        return str(gone["certificate_id"])

    cli("things", "create", SERIAL)
    delete_certificate_by_hand()

    result = cli("things", "delete", SERIAL, "--yes")

    assert result.stdout.strip() == f"Deleted button {SERIAL}; it had no certificate to delete."
    assert "1 recorded certificate was already gone from AWS" in result.stderr
    cli("things", "create", SERIAL)
    gone = delete_certificate_by_hand()
    as_json = cli.json("things", "delete", SERIAL, "--yes")
    assert as_json["certificates"] == [] and as_json["already_gone"] == [gone]
    assert recorded(isolated_env, "certificates") == {}

    cli("things", "create", SERIAL)
    cert = cli.json("certs", "show", SERIAL)["certificate_id"]
    as_json = cli.json("things", "delete", SERIAL, "--yes")
    assert as_json["certificates"] == [cert] and as_json["already_gone"] == []
    assert iot.list_certificates()["certificates"] == []
    cli("things", "create", SERIAL)
    said = cli("things", "delete", SERIAL, "--yes")
    assert said.stdout.strip() == f"Deleted button {SERIAL} and 1 certificate."


def test_delete_leaves_a_certificate_another_thing_shares(cli, iot, isolated_env):
    """Someone attached the button's certificate to a thing of theirs as well: deleting the
    button detaches it from the button only; the other thing keeps a working certificate. (A
    button's certificate is attached exclusively now, which AWS lets no other thing share: this
    is one an older iotbutton attached non-exclusively.)"""
    cli("things", "create", SERIAL)
    cert = cli.json("certs", "show", SERIAL)
    iot.detach_thing_principal(thingName=SERIAL, principal=cert["arn"])
    iot.attach_thing_principal(thingName=SERIAL, principal=cert["arn"])
    iot.create_thing(thingName="THEIRS")
    iot.attach_thing_principal(thingName="THEIRS", principal=cert["arn"])

    result = cli.json("things", "delete", SERIAL, "--yes")

    assert result["certificates"] == []
    assert list(result["certificates_left"]) == [cert["certificate_id"]]
    assert "also attached to THEIRS" in result["certificates_left"][cert["certificate_id"]]
    described = iot.describe_certificate(certificateId=cert["certificate_id"])
    assert described["certificateDescription"]["status"] == "ACTIVE"
    assert iot.list_principal_things(principal=cert["arn"])["things"] == ["THEIRS"]
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["THEIRS"]
    assert recorded(isolated_env, "certificates") == {}  # left alone, and forgotten
    assert recorded(isolated_env, "things") == {}
    cli("things", "create", SERIAL)
    said = cli("things", "delete", SERIAL, "--yes")
    assert said.stdout.strip() == f"Deleted button {SERIAL} and 1 certificate."
