"""`certs list/show/rotate/revoke` against moto."""

from __future__ import annotations

from pathlib import Path

from support import recorded

SERIAL = "G030JF0553648RUH"


def test_rotate_attaches_the_new_certificate_before_retiring_the_old(cli, iot, isolated_env):
    cli("things", "create", SERIAL)
    old = cli.json("things", "show", SERIAL)

    result = cli.json("certs", "rotate", SERIAL)

    assert result["retired"] == [old["certificate_id"]]
    new_id = result["certificate_id"]
    new = iot.describe_certificate(certificateId=new_id)["certificateDescription"]
    assert new["status"] == "ACTIVE"
    assert iot.list_thing_principals(thingName=SERIAL)["principals"] == [new["certificateArn"]]
    assert [
        p["policyName"]
        for p in iot.list_attached_policies(target=new["certificateArn"])["policies"]
    ] == ["iotbutton-button"]
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [new_id]
    assert not Path(old["files"]["private_key"]).exists()
    shown = cli.json("things", "show", SERIAL)
    assert shown["certificate_id"] == new_id and Path(shown["files"]["private_key"]).is_file()
    assert set(recorded(isolated_env, "certificates")) == {new_id}


def test_rotate_order_never_leaves_the_button_without_a_certificate(cli, iot, monkeypatch):
    """Record the order of AWS calls: the new certificate is attached before the old detaches."""
    cli("things", "create", SERIAL)
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import certs

    ctx = AppContext()
    calls: list[str] = []
    client = ctx.client("iot")
    client.meta.events.register("before-call.iot", lambda model, **_: calls.append(model.name))

    certs.rotate_certificate(ctx, SERIAL)

    assert calls.index("AttachThingPrincipal") < calls.index("DetachThingPrincipal")
    assert calls.index("AttachPolicy") < calls.index("DetachPolicy")
    assert calls[-4:] == [
        "DetachPolicy",
        "UpdateCertificate",
        "DetachThingPrincipal",
        "DeleteCertificate",
    ]


def test_revoke_deactivates_in_aws(cli, iot):
    cli("things", "create", SERIAL)
    cert_id = cli.json("things", "show", SERIAL)["certificate_id"]

    result = cli.json("certs", "revoke", SERIAL, "--yes")

    assert result == {"serial": SERIAL, "certificate_id": cert_id, "status": "INACTIVE"}
    status = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
    assert status == "INACTIVE"
    assert cli.json("certs", "show", SERIAL)["status"] == "INACTIVE"
    assert "INACTIVE" in cli("certs", "list").stdout


def test_revoke_asks_first(cli, iot):
    cli("things", "create", SERIAL)
    assert "Pass --yes" in cli("certs", "revoke", SERIAL, code=2).stderr
    cert_id = cli.json("things", "show", SERIAL)["certificate_id"]
    status = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
    assert status == "ACTIVE"


def test_list_and_show(cli, iot):
    assert cli.json("certs", "list") == []
    cli("things", "create", SERIAL)
    [listed] = cli.json("certs", "list")
    assert listed["serial"] == SERIAL and listed["current"] is True
    shown = cli.json("certs", "show", SERIAL)
    assert shown["certificate_id"] == listed["certificate_id"]
    assert shown["status"] == "ACTIVE"
    assert shown["arn"].startswith("arn:aws:iot:us-east-1:123456789012:cert/")


def test_show_reports_a_certificate_deleted_outside_iotbutton(cli, iot):
    cli("things", "create", SERIAL)
    shown = cli.json("certs", "show", SERIAL)
    arn = shown["arn"]
    iot.detach_policy(policyName="iotbutton-button", target=arn)
    iot.detach_thing_principal(thingName=SERIAL, principal=arn)
    iot.update_certificate(certificateId=shown["certificate_id"], newStatus="INACTIVE")
    iot.delete_certificate(certificateId=shown["certificate_id"])

    assert cli.json("certs", "show", SERIAL)["status"] == "MISSING"


def test_unknown_serial(cli, aws):
    for command in (["certs", "show"], ["certs", "rotate"], ["certs", "revoke", "--yes"]):
        result = cli(*command, "NOPE", code=2)
        assert "No button 'NOPE'" in result.stderr, command
