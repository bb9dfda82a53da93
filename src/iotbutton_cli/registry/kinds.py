"""Every kind of resource the registry holds, declared once: its name, its label, and what must be
removed before it.

The registry groups records by kind (``resources → things → G030JF0553648RUH``). This module is
the one list of those kinds, with the order AWS imposes on tearing them down stated as
constraints, not as list order: ``clean`` computes its order from them
(:func:`teardown_order`). It imports nothing of iotbutton's, so every package can use the names;
what removes or discovers each kind is bound to it in ``lifecycle/kinds_table.py``.

Two kinds of constraint:

- ``after``: these kinds must be *gone* first. If one of them stays (failed, or skipped), this
  kind is not attempted (it is ``skipped``): deleting a function a rule still invokes, or a policy
  a certificate still uses, would fail or break something. With ``own_only``, only the resources
  of those kinds that this resource owns hold it back (a thing waits for its own certificates,
  not for every certificate).
- ``follows``: these kinds are removed earlier, but one that stays does not hold this kind back.
  Used where the order avoids needless work or a window of breakage, not a refusal.

Adding a kind: a name constant here, a :class:`Kind` in :data:`KINDS`, a record type in
``records.py``, and its remove (and discover) functions in ``lifecycle/kinds_table.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# The registry's kind names (its JSON keys: never change one without a migration).
THINGS: Final = "things"
CERTIFICATES: Final = "certificates"
CERTIFICATE_REQUESTS: Final = "certificate_requests"
LEFTOVER_FILES: Final = "leftover_files"
POLICIES: Final = "policies"
THING_TYPES: Final = "thing_types"
TOPIC_RULES: Final = "topic_rules"
LAMBDA_PERMISSIONS: Final = "lambda_permissions"
FUNCTIONS: Final = "functions"
LOG_GROUPS: Final = "log_groups"
PARAMETERS: Final = "parameters"
BUCKETS: Final = "buckets"
TABLES: Final = "tables"
TOPICS: Final = "topics"
METRIC_ALARMS: Final = "metric_alarms"
ROLES: Final = "roles"
SCHEDULES: Final = "schedules"
SCHEDULE_GROUPS: Final = "schedule_groups"

KindName = Literal[
    "things",
    "certificates",
    "certificate_requests",
    "leftover_files",
    "policies",
    "thing_types",
    "topic_rules",
    "lambda_permissions",
    "functions",
    "log_groups",
    "parameters",
    "buckets",
    "tables",
    "topics",
    "metric_alarms",
    "roles",
    "schedules",
    "schedule_groups",
]


@dataclass(frozen=True)
class Kind:
    """One kind of recorded resource: how ``clean`` names it, and what must go before it."""

    name: KindName
    label: str
    # Must be gone first; one of them that stays holds this kind back (see the module docstring).
    after: tuple[KindName, ...] = ()
    # With ``after``: only the resources of those kinds that this resource owns hold it back.
    own_only: bool = False
    # Removed earlier, but one that stays does not hold this kind back.
    follows: tuple[KindName, ...] = ()

    @property
    def before(self) -> tuple[KindName, ...]:
        """Every kind that comes earlier in teardown, holding it back or not."""
        return (*self.after, *self.follows)


# The order of this tuple only breaks ties between kinds no constraint orders (so the plan reads
# the same on every run): notifier first, then the buttons. The constraints are the order.
KINDS: tuple[Kind, ...] = (
    # Rules first: a rule must not invoke a half-deleted function.
    Kind(TOPIC_RULES, "topic rule"),
    # A rule's removal takes its permission with it, so after the rules most are already gone;
    # one left by a rule that failed to go is removed anyway (the rule then invokes nothing).
    Kind(LAMBDA_PERMISSIONS, "Lambda permission", follows=(TOPIC_RULES,)),
    # The schedule that releases what quiet hours held invokes the function too: it goes before
    # it, as the rules do. One that stays holds nothing back: once the function is gone, its runs
    # only fail.
    Kind(SCHEDULES, "schedule"),
    # Deleting a group deletes its schedules too (asynchronously, on AWS): the schedule is
    # deleted on its own first, and the group waits for it.
    Kind(SCHEDULE_GROUPS, "schedule group", after=(SCHEDULES,)),
    Kind(
        FUNCTIONS,
        "Lambda function",
        after=(TOPIC_RULES, LAMBDA_PERMISSIONS),
        follows=(SCHEDULES,),
    ),
    # A live function writes its log group back into being.
    Kind(LOG_GROUPS, "log group", after=(FUNCTIONS,)),
    # What the function reads goes after it, so a click in between never half-works.
    Kind(PARAMETERS, "SSM parameter", follows=(FUNCTIONS,)),
    Kind(BUCKETS, "S3 bucket", follows=(FUNCTIONS,)),
    # The alarm ledger the function writes: gone with its history once the function is.
    Kind(TABLES, "DynamoDB table", follows=(FUNCTIONS,)),
    # The owner's alarms and the topic they and the failures function tell: after the
    # functions, so nothing that fails in between goes untold.
    Kind(METRIC_ALARMS, "CloudWatch alarm", follows=(FUNCTIONS,)),
    Kind(TOPICS, "SNS topic", follows=(FUNCTIONS, METRIC_ALARMS)),
    # The function runs as one role, the rule's error action as another, and the release
    # schedule invokes the function as the third (in reverse order of creation: after it).
    Kind(ROLES, "IAM role", after=(FUNCTIONS, TOPIC_RULES), follows=(SCHEDULES, SCHEDULE_GROUPS)),
    # A certificate an interrupted run made but never recorded (see provisioning/certs.py): it is
    # retired with its thing and policy still there, as any certificate is.
    Kind(CERTIFICATE_REQUESTS, "unconfirmed certificate request"),
    Kind(CERTIFICATES, "certificate"),
    # AWS refuses to delete a thing with a principal attached: its certificates go first.
    Kind(THINGS, "thing", after=(CERTIFICATES,), own_only=True, follows=(CERTIFICATE_REQUESTS,)),
    # AWS refuses to delete a policy still attached to a certificate.
    Kind(POLICIES, "IoT policy", after=(CERTIFICATES,), follows=(CERTIFICATE_REQUESTS,)),
    # A thing type is deleted only once no thing uses it.
    Kind(THING_TYPES, "thing type", after=(THINGS,)),
    # Private keys an earlier clean deleted the certificate of but could not delete themselves;
    # after the certificates and requests, whose retiring can leave more of them.
    Kind(LEFTOVER_FILES, "key file", follows=(CERTIFICATES, CERTIFICATE_REQUESTS)),
)

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}


def teardown_order(kinds: tuple[Kind, ...] = KINDS) -> list[Kind]:
    """``kinds`` in an order that satisfies every ``after`` and ``follows`` constraint.

    Deterministic: of the kinds whose predecessors are all placed, the one declared first comes
    next (Kahn's algorithm). A constraint naming an undeclared kind, or a cycle, is a bug.
    """
    declared = {kind.name: index for index, kind in enumerate(kinds)}
    for kind in kinds:
        unknown = [name for name in kind.before if name not in declared]
        if unknown:
            raise ValueError(f"kind {kind.name} comes after undeclared kinds {unknown}")
    placed: list[Kind] = []
    waiting = list(kinds)
    while waiting:
        done = {kind.name for kind in placed}
        ready = [kind for kind in waiting if all(name in done for name in kind.before)]
        if not ready:
            names = sorted(kind.name for kind in waiting)
            raise ValueError(f"the teardown constraints of {names} form a cycle")
        first = min(ready, key=lambda kind: declared[kind.name])
        placed.append(first)
        waiting.remove(first)
    return placed
