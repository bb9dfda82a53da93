"""`clean`: everything recorded goes, in AWS's order; what cannot go stays recorded."""

from __future__ import annotations

import json
from pathlib import Path

from support import NAMESPACE, recorded, registry_document


def assert_nothing_left(iot):
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert iot.list_thing_types()["thingTypes"] == []


def test_clean_removes_everything_and_empties_the_namespace(cli, iot, isolated_env):
    cli("things", "create", "--count", "3")
    cli("things", "create", "G030JF0553648RUH")
    cli("certs", "rotate", "G030JF0553648RUH")
    key = cli.json("things", "show", "G030JF0553648RUH")["files"]["private_key"]

    result = cli.json("clean", "--yes")

    assert result["complete"] is True
    kinds = [step["kind"] for step in result["steps"]]
    assert kinds == ["certificates"] * 4 + ["things"] * 4 + ["policies", "thing_types"]
    assert all(step["status"] == "removed" for step in result["steps"])
    assert_nothing_left(iot)
    assert NAMESPACE not in registry_document(isolated_env)["namespaces"]
    assert not Path(key).exists()
    assert "Nothing to clean" in cli("clean").stdout


def test_dry_run_changes_nothing(cli, iot, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    before = registry_document(isolated_env)

    result = cli.json("clean", "--dry-run")

    assert [s["label"] for s in result["steps"]][1:] == [
        "thing G030JF0553648RUH",
        "IoT policy iotbutton-button",
        "thing type iotbutton",
    ]
    assert registry_document(isolated_env) == before
    assert len(iot.list_things()["things"]) == 1
    assert "Would remove" in cli("clean", "--dry-run").stdout


def test_clean_asks_first(cli, iot):
    cli("things", "create", "G030JF0553648RUH")
    result = cli("clean", code=2)
    assert "Pass --yes" in result.stderr
    assert len(iot.list_things()["things"]) == 1


def test_keep_local_keeps_the_key_files(cli, iot):
    cli("things", "create", "G030JF0553648RUH")
    files = cli.json("things", "show", "G030JF0553648RUH")["files"]
    cli("clean", "--yes", "--keep-local")
    assert all(Path(path).is_file() for path in files.values())
    assert_nothing_left(iot)


def test_resources_deleted_by_hand_count_as_gone(cli, iot, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    cert = cli.json("certs", "show", "G030JF0553648RUH")
    iot.detach_policy(policyName="iotbutton-button", target=cert["arn"])
    iot.detach_thing_principal(thingName="G030JF0553648RUH", principal=cert["arn"])
    iot.update_certificate(certificateId=cert["certificate_id"], newStatus="INACTIVE")
    iot.delete_certificate(certificateId=cert["certificate_id"])
    iot.delete_thing(thingName="G030JF0553648RUH")

    assert cli.json("clean", "--yes")["complete"] is True
    assert_nothing_left(iot)


def test_partial_teardown_keeps_what_failed_recorded_and_exits_4(cli, iot, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    cli("things", "create", "G030AA0000000BBB")
    stuck = cli.json("certs", "show", "G030JF0553648RUH")
    # Someone attached their own policy to one certificate: AWS refuses to delete it.
    iot.create_policy(
        policyName="theirs",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
            }
        ),
    )
    iot.attach_policy(policyName="theirs", target=stuck["arn"])

    result = cli("clean", "--yes", "--json", code=4)

    report = json.loads(result.stdout)
    assert report["complete"] is False
    statuses = {s["label"]: s["status"] for s in report["steps"]}
    assert statuses["thing G030AA0000000BBB"] == "removed"
    assert statuses[f"certificate {stuck['certificate_id'][:12]}… of G030JF0553648RUH"] == "failed"
    assert statuses["thing G030JF0553648RUH"] == "skipped"
    assert statuses["IoT policy iotbutton-button"] == "skipped"
    assert set(recorded(isolated_env, "certificates")) == {stuck["certificate_id"]}
    assert set(recorded(isolated_env, "things")) == {"G030JF0553648RUH"}
    assert "iotbutton-button" in recorded(isolated_env, "policies")
    # The foreign policy is never touched.
    assert iot.get_policy(policyName="theirs")

    iot.detach_policy(policyName="theirs", target=stuck["arn"])
    assert cli.json("clean", "--yes")["complete"] is True
    assert iot.get_policy(policyName="theirs")
    assert len(iot.list_policies()["policies"]) == 1


def test_refuses_a_namespace_recorded_for_another_account(cli, iot, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    path = isolated_env / "registry.json"
    document = json.loads(path.read_text())
    document["namespaces"][NAMESPACE]["account"] = "999999999999"
    path.write_text(json.dumps(document))

    result = cli("clean", "--yes", code=3)

    assert "records account 999999999999" in result.stderr
    assert len(iot.list_things()["things"]) == 1


def test_thing_type_within_its_deprecation_delay_is_pending(cli, fault_proxy, isolated_env):
    """AWS deletes a thing type only 5 minutes after deprecating it: clean says when to rerun."""
    cli("things", "create", "G030JF0553648RUH")
    fault_proxy.add(
        "DELETE",
        r"^/thing-types/iotbutton",
        400,
        "InvalidRequestException",
        "Thing type iotbutton must be deprecated for at least 5 minutes",
    )

    result = cli.json("clean", "--yes")  # exit 0: nothing is left but a free, deprecated type

    assert result["complete"] is False and result["pending"] == 1
    [pending] = [s for s in result["steps"] if s["status"] == "pending"]
    assert pending["label"] == "thing type iotbutton"
    assert "run `iotbutton clean` again" in pending["detail"]
    assert "iotbutton" in recorded(isolated_env, "thing_types")

    fault_proxy.faults.clear()
    again = cli.json("clean", "--yes")
    assert again["complete"] is True and recorded(isolated_env, "thing_types") == {}


def test_thing_type_refused_after_the_delay_is_a_failure(cli, fault_proxy, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    from iotbutton_cli.context import AppContext

    AppContext().namespace.update("thing_types", "iotbutton", deprecated_at="2020-01-01T00:00:00Z")
    fault_proxy.add(
        "DELETE",
        r"^/thing-types/iotbutton",
        400,
        "InvalidRequestException",
        "Can not delete thing type: things of this type still exist",
    )

    result = cli("clean", "--yes", "--json", code=4)

    [failed] = [s for s in json.loads(result.stdout)["steps"] if s["status"] == "failed"]
    assert "things of this type still exist" in failed["detail"]


def test_json_never_prompts_and_never_acts_unasked(cli, iot):
    cli("things", "create", "G030JF0553648RUH")
    result = cli("clean", "--json", code=2)
    assert json.loads(result.stdout)["error"]["code"] == "needs-confirmation"
    assert len(iot.list_things()["things"]) == 1


def test_clean_leaves_no_empty_key_folders(cli, iot, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    cli("clean", "--yes")
    assert list((isolated_env / "keys").iterdir()) == []


def test_many_resources_are_summarised_by_kind_before_the_rows(cli, iot):
    cli("things", "create", "--count", "10")  # 10 certificates, 10 things, policy, type: 22

    plan = cli("clean", "--dry-run").stdout
    assert plan.index("By kind (22 resources)") < plan.index("Would remove")
    summary = plan[: plan.index("Would remove")]
    for kind, count in (("certificates", 10), ("things", 10), ("policies", 1), ("thing types", 1)):
        assert any(kind in line and f" {count} " in line for line in summary.splitlines()), summary
    assert summary.index("certificates") < summary.index("things") < summary.index("thing types")

    result = cli("clean", "--yes")
    assert "Removed 22 of 22 resources." in result.stdout
    assert "certificates: 10 removed" in result.stderr
    assert "thing types: 1 removed" in result.stderr
    assert iot.list_things()["things"] == []


def test_a_few_resources_get_no_summary(cli, iot):
    cli("things", "create", "G030JF0553648RUH")
    assert "By kind" not in cli("clean", "--dry-run").stdout
    result = cli("clean", "--yes")
    assert "By kind" not in result.stdout and "removed" not in result.stderr
