"""The table of resource kinds: each kind declared once, bound to what removes and finds it, and
torn down in an order computed from the declared constraints."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from iotbutton_cli.lifecycle import kinds_table, teardown
from iotbutton_cli.registry import kinds, records, shape
from support import ACCOUNT, NAMESPACE, registry_document

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
NAMES = [kind.name for kind in kinds.KINDS]

# What AWS (DESIGN.md, "Teardown order") and the code require, stated independently of the table.
MUST_PRECEDE = [
    (kinds.TOPIC_RULES, kinds.LAMBDA_PERMISSIONS),  # the rule's removal takes its permission
    (kinds.TOPIC_RULES, kinds.FUNCTIONS),  # no rule invokes a half-deleted function
    (kinds.LAMBDA_PERMISSIONS, kinds.FUNCTIONS),
    (kinds.FUNCTIONS, kinds.LOG_GROUPS),  # a live function writes its log group back
    (kinds.FUNCTIONS, kinds.PARAMETERS),  # ... reads its secret
    (kinds.FUNCTIONS, kinds.BUCKETS),  # ... and its config
    (kinds.FUNCTIONS, kinds.ROLES),  # ... runs as a role
    (kinds.TOPIC_RULES, kinds.ROLES),  # the rule's error action runs as a role
    (kinds.SCHEDULES, kinds.FUNCTIONS),  # the release schedule invokes the function
    (kinds.SCHEDULES, kinds.SCHEDULE_GROUPS),  # ... from its group
    (kinds.SCHEDULES, kinds.ROLES),  # ... as a role
    (kinds.CERTIFICATES, kinds.THINGS),  # no thing is deleted with a principal attached
    (kinds.CERTIFICATES, kinds.POLICIES),  # nor a policy still attached
    (kinds.CERTIFICATE_REQUESTS, kinds.THINGS),  # a reclaimed certificate is retired first
    (kinds.CERTIFICATE_REQUESTS, kinds.POLICIES),
    (kinds.THINGS, kinds.THING_TYPES),  # no thing type is deleted while a thing uses it
    (kinds.CERTIFICATES, kinds.LEFTOVER_FILES),  # retiring may leave key files
    (kinds.CERTIFICATE_REQUESTS, kinds.LEFTOVER_FILES),
]

# One record of each kind (of resources that are not in AWS), valid for shape.py.
MINIMAL_RECORDS: dict[str, dict[str, Any]] = {
    kinds.THINGS: {"G030JF0553648RUH": {"arn": "arn:aws:iot:::thing/G030JF0553648RUH"}},
    kinds.CERTIFICATES: {"c" * 64: {"arn": "arn:aws:iot:::cert/" + "c" * 64, "thing": "X"}},
    kinds.CERTIFICATE_REQUESTS: {"r1": {"since": "2026-01-01T00:00:00Z", "thing": "X"}},
    kinds.LEFTOVER_FILES: {"/nonexistent/key.pem.key": {"reason": "test"}},
    kinds.POLICIES: {"iotbutton-button": {"arn": "arn:aws:iot:::policy/iotbutton-button"}},
    kinds.THING_TYPES: {"iotbutton": {"arn": "arn:aws:iot:::thingtype/iotbutton"}},
    kinds.TOPIC_RULES: {"iotbutton_x": {"arn": "arn:aws:iot:::rule/iotbutton_x"}},
    kinds.LAMBDA_PERMISSIONS: {"iotbutton-rule-x": {"function": "iotbutton-notifier"}},
    kinds.FUNCTIONS: {"iotbutton-notifier": {"arn": "arn:aws:lambda:::function:n"}},
    kinds.LOG_GROUPS: {"/aws/lambda/iotbutton-notifier": {"retention_days": 30}},
    kinds.PARAMETERS: {"/iotbutton/twilio-secret": {"version": 1}},
    kinds.BUCKETS: {"iotbutton-config-x": {"arn": "arn:aws:s3:::iotbutton-config-x"}},
    kinds.TABLES: {"iotbutton-alarms": {"arn": "arn:aws:dynamodb:::table/iotbutton-alarms"}},
    kinds.TOPICS: {"iotbutton-owner": {"arn": "arn:aws:sns:::iotbutton-owner"}},
    kinds.METRIC_ALARMS: {"iotbutton-rule-errors": {"arn": "arn:aws:cloudwatch:::alarm:x"}},
    kinds.ROLES: {"iotbutton-notifier-us-east-1": {"arn": "arn:aws:iam:::role/n"}},
    kinds.SCHEDULES: {
        "iotbutton/release-held": {
            "arn": "arn:aws:scheduler:::schedule/iotbutton/release-held",
            "group": "iotbutton",
        }
    },
    kinds.SCHEDULE_GROUPS: {"iotbutton": {"arn": "arn:aws:scheduler:::schedule-group/iotbutton"}},
}


def write_registry(resources: dict[str, dict[str, Any]]) -> None:
    from iotbutton_cli.registry.store import Registry

    namespace = Registry().namespace(NAMESPACE, account=ACCOUNT, region="us-east-1")
    with namespace.transaction() as held:
        for kind, items in resources.items():
            held[kind] = {resource_id: dict(record) for resource_id, record in items.items()}


def satisfies_constraints(order: list[kinds.Kind]) -> bool:
    index = {kind.name: position for position, kind in enumerate(order)}
    return all(index[first] < index[kind.name] for kind in order for first in kind.before)


def documented_kinds() -> dict[str, str]:
    """The registry file's kind table in docs/reference.md: kind -> its Fields column."""
    text = REFERENCE.read_text()
    table = text[text.index("| Kind | Key | Fields |") :].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[2]
    return rows


def test_every_kind_is_declared_once_and_bound_to_its_functions():
    assert len(NAMES) == len(set(NAMES))
    assert set(NAMES) == set(get_args(kinds.KindName))
    assert set(shape.FIELDS) <= set(NAMES)
    assert set(records.RECORD_TYPES) == set(NAMES)
    assert set(kinds_table.ROWS) == set(NAMES)
    for name, row in kinds_table.ROWS.items():
        assert row.kind is kinds.BY_NAME[name]
        assert callable(row.remove)
    assert [row.name for row in teardown.KINDS] == [k.name for k in kinds.teardown_order()]


def test_the_documented_kinds_are_the_declared_ones():
    assert set(documented_kinds()) == set(NAMES)


def test_record_types_hold_every_checked_and_documented_field():
    def fields(kind: str) -> set[str]:
        record_type: Any = records.RECORD_TYPES[kind]
        return set(record_type.__required_keys__ | record_type.__optional_keys__)

    for kind, checked in shape.FIELDS.items():
        assert set(checked) <= fields(kind), kind
    key_files = set(records.KeyFilePaths.__required_keys__ | records.KeyFilePaths.__optional_keys__)
    for kind, column in documented_kinds().items():
        named = set(re.findall(r"`([a-z][a-z0-9_]*)`", column)) - {"null", "clean"}
        inner = key_files if kind == kinds.CERTIFICATES else set()
        assert named <= fields(kind) | inner, (kind, named - fields(kind))


def test_the_teardown_order_satisfies_every_declared_constraint():
    order = kinds.teardown_order()
    assert [kind.name for kind in order] == [kind.name for kind in kinds.teardown_order()]
    assert sorted(kind.name for kind in order) == sorted(NAMES)
    assert satisfies_constraints(order)
    index = {kind.name: position for position, kind in enumerate(order)}
    for first, then in MUST_PRECEDE:
        assert index[first] < index[then], (first, then)


def test_the_order_comes_from_the_constraints_not_from_the_list():
    rng = random.Random(11)
    for _ in range(50):
        shuffled = list(kinds.KINDS)
        rng.shuffle(shuffled)
        order = kinds.teardown_order(tuple(shuffled))
        assert satisfies_constraints(order)
        index = {kind.name: position for position, kind in enumerate(order)}
        assert all(index[first] < index[then] for first, then in MUST_PRECEDE)


def test_a_cycle_or_an_unknown_kind_in_the_constraints_is_refused():
    rule = dataclasses.replace(kinds.BY_NAME[kinds.TOPIC_RULES], after=(kinds.ROLES,))
    cyclic = tuple(rule if kind.name == kinds.TOPIC_RULES else kind for kind in kinds.KINDS)
    with pytest.raises(ValueError, match="cycle"):
        kinds.teardown_order(cyclic)
    with pytest.raises(ValueError, match="undeclared"):
        kinds.teardown_order((kinds.BY_NAME[kinds.THINGS],))


def test_discover_covers_every_kind_that_lives_in_aws():
    finders = {row.name for row in kinds_table.ROWS.values() if row.find is not None}
    for name, row in kinds_table.ROWS.items():
        if name in kinds_table.LOCAL_ONLY:
            assert row.find is None and not row.found_with, name
        else:
            assert row.find is not None or row.found_with, name
            assert set(row.found_with) <= finders, name
    assert len(kinds_table.FINDERS) == len(finders)
    # A thing's certificates are found before the policies' (which add to their records).
    finder_of = {row.name: row.find for row in kinds_table.ROWS.values()}
    positions = {find: i for i, find in enumerate(kinds_table.FINDERS)}
    assert positions[finder_of[kinds.THINGS]] < positions[finder_of[kinds.POLICIES]]


def test_clean_plans_every_kind_in_the_computed_order(cli, aws, isolated_env):
    write_registry(MINIMAL_RECORDS)

    planned = cli.json("clean", "--dry-run")["steps"]

    assert [step["kind"] for step in planned] == [k.name for k in kinds.teardown_order()]
    labels = {step["kind"]: step["label"] for step in planned}
    for name in NAMES:
        assert labels[name].startswith(kinds.BY_NAME[name].label + " ")


def test_a_kind_that_stays_holds_back_only_what_must_come_after_it(
    cli, aws, isolated_env, monkeypatch
):
    """A function that cannot be removed keeps its roles and log groups (``after``), but not
    the parameter and bucket it merely comes before (``follows``)."""
    from iotbutton_cli.errors import IotButtonError

    def refuse(ctx, resource_id, keep_local):
        raise IotButtonError("test-refusal", "refused for the test", "none")

    stuck = dataclasses.replace(kinds_table.ROWS[kinds.FUNCTIONS], remove=refuse)
    rows = [stuck if row.name == kinds.FUNCTIONS else row for row in teardown.KINDS]
    monkeypatch.setattr(teardown, "KINDS", rows)
    monkeypatch.setattr(teardown, "KIND_BY_NAME", {row.name: row for row in rows})
    notifier = (kinds.FUNCTIONS, kinds.ROLES, kinds.LOG_GROUPS, kinds.PARAMETERS, kinds.BUCKETS)
    write_registry({kind: MINIMAL_RECORDS[kind] for kind in notifier})

    result = cli.json("clean", "--yes", code=4)

    status = {step["kind"]: step["status"] for step in result["steps"]}
    assert status == {
        kinds.FUNCTIONS: "failed",
        kinds.ROLES: "skipped",
        kinds.LOG_GROUPS: "skipped",
        kinds.PARAMETERS: "removed",
        kinds.BUCKETS: "removed",
    }
    still = registry_document(isolated_env)["namespaces"][NAMESPACE]["resources"]
    assert set(still) == {kinds.FUNCTIONS, kinds.ROLES, kinds.LOG_GROUPS}


def test_clean_records_nothing_it_found_until_the_plan_is_agreed(cli, iot, isolated_env):
    cli("things", "create", "G030JF0553648RUH")
    (isolated_env / "registry.json").unlink()

    assert "Pass --yes" in cli("clean", "--discover", code=2).stderr

    assert registry_document(isolated_env) == {"namespaces": {}}
    assert len(iot.list_things()["things"]) == 1


def test_the_clean_command_leaves_the_work_to_the_service():
    source = (Path(teardown.__file__).parents[1] / "cli" / "clean.py").read_text()
    assert "namespace" not in source
    assert "check_namespace_owner" not in source
    assert "teardown.clean(" in source
