"""The table of resource kinds: each kind of ``registry/kinds.py`` bound to how ``clean``
removes it and how ``clean --discover`` finds it.

``teardown.py`` walks :data:`TEARDOWN` (the kinds in the order their constraints give) and
``discover.py`` runs the finders of :data:`ROWS`. A kind is found by its own finder, or along with
another kind (a certificate with its thing or policy, a permission with its function), or not at
all: what only exists on this machine (certificate requests, leftover key files) cannot be found
in AWS.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotbutton_cli.lifecycle import finders, removers
from iotbutton_cli.lifecycle.finders import Finder
from iotbutton_cli.lifecycle.removers import Remover, removing
from iotbutton_cli.notify import alerts, rules, schedules
from iotbutton_cli.notify import apply as notifier_apply
from iotbutton_cli.registry import kinds
from iotbutton_cli.registry.kinds import Kind, KindName


@dataclass(frozen=True)
class Row:
    """One kind, with what removes it and what finds it."""

    kind: Kind
    remove: Remover
    find: Finder | None = None  # adds this kind's resources (and perhaps others') to a Found
    found_with: tuple[KindName, ...] = ()  # kinds whose finders find this kind's resources too

    @property
    def name(self) -> KindName:
        return self.kind.name

    @property
    def label(self) -> str:
        return self.kind.label

    @property
    def after(self) -> tuple[KindName, ...]:
        return self.kind.after

    @property
    def own_only(self) -> bool:
        return self.kind.own_only


def _row(
    name: KindName,
    remove: Remover,
    find: Finder | None = None,
    found_with: tuple[KindName, ...] = (),
) -> Row:
    return Row(kinds.BY_NAME[name], remove, find, found_with)


# Local to this machine: in the registry only, nothing in AWS to find them by.
LOCAL_ONLY: tuple[KindName, ...] = (kinds.CERTIFICATE_REQUESTS, kinds.LEFTOVER_FILES)

ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        _row(kinds.TOPIC_RULES, removing(rules.delete_rule), finders.find_topic_rules),
        _row(
            kinds.LAMBDA_PERMISSIONS,
            removing(rules.remove_permission),
            found_with=(kinds.FUNCTIONS,),
        ),
        _row(
            kinds.SCHEDULES,
            removing(schedules.delete_schedule),
            found_with=(kinds.SCHEDULE_GROUPS,),
        ),
        _row(
            kinds.SCHEDULE_GROUPS,
            removing(schedules.delete_schedule_group),
            finders.find_schedule_groups,
        ),
        _row(kinds.FUNCTIONS, removing(notifier_apply.delete_function), finders.find_functions),
        _row(kinds.LOG_GROUPS, removing(notifier_apply.delete_log_group), finders.find_log_groups),
        _row(kinds.PARAMETERS, removing(notifier_apply.delete_parameter), finders.find_parameters),
        _row(kinds.BUCKETS, removing(notifier_apply.delete_bucket), finders.find_buckets),
        _row(kinds.TABLES, removing(notifier_apply.delete_table), finders.find_tables),
        _row(
            kinds.METRIC_ALARMS,
            removing(alerts.delete_metric_alarm),
            finders.find_metric_alarms,
        ),
        _row(kinds.TOPICS, removing(alerts.delete_topic), finders.find_topics),
        _row(kinds.ROLES, removing(notifier_apply.delete_role), finders.find_roles),
        _row(kinds.CERTIFICATE_REQUESTS, removers.certificate_request),
        _row(
            kinds.CERTIFICATES,
            removers.certificate,
            found_with=(kinds.THINGS, kinds.POLICIES),
        ),
        _row(kinds.THINGS, removers.thing, finders.find_things),
        _row(kinds.POLICIES, removers.policy, finders.find_policies),
        _row(kinds.THING_TYPES, removers.thing_type, finders.find_thing_types),
        _row(kinds.LEFTOVER_FILES, removers.leftover_file),
    )
}

# Every kind, in the order ``clean`` removes them.
TEARDOWN: list[Row] = [ROWS[kind.name] for kind in kinds.teardown_order()]

# The finders ``clean --discover`` runs, in the kinds' declared order (a thing's certificates are
# found before the policies' certificates, which add to their records).
FINDERS: list[Finder] = [find for kind in kinds.KINDS if (find := ROWS[kind.name].find) is not None]
