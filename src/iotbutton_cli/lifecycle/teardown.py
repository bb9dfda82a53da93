"""`clean`: remove everything the registry holds for one account and region, in AWS's order.

The plan is data (a list of steps), so ``--dry-run`` only shows it. Execution walks the kinds in
dependency order; within a kind, steps run concurrently. Each removal leaves the registry at once,
NotFound counts as already gone, and whatever fails stays recorded so a re-run can finish the job.

Nothing is deleted on the registry's word alone: each removal first checks iotbutton's marks on
the resource (provisioning/ownership.py). A resource without them is *left* (and forgotten: the
registry was wrong to name it), and so is a policy or thing type that another registry's buttons
(another machine on the same account) still use: the last ``clean`` removes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from iotbutton_cli.aws.errors import error_code, is_not_found
from iotbutton_cli.context import AppContext, clean_error
from iotbutton_cli.errors import NotOurs, not_ours
from iotbutton_cli.notify import deploy as notifier_deploy
from iotbutton_cli.notify import rules
from iotbutton_cli.provisioning import certs, keyfiles, ownership, policies, things
from iotbutton_cli.registry.store import utc_now

THING_TYPE_DELETE_DELAY = timedelta(minutes=5)


@dataclass(frozen=True)
class Step:
    kind: str
    resource_id: str
    label: str
    owner: str | None = None  # the resource this one belongs to (a certificate's thing)


# What a removal can end in besides "removed": still to do later, left alone, or gone from AWS
# with some of its key files left on disk.
Removal = tuple[str, str] | None
BLOCKING = ("failed", "skipped")  # what the resources that depend on this one must wait for
UNFINISHED = (*BLOCKING, "files-left")


@dataclass
class Outcome:
    step: Step
    status: str  # removed | pending | left | files-left | failed | skipped
    detail: str = ""


@dataclass
class CleanReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def with_status(self, status: str) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def complete(self) -> bool:
        """Nothing of iotbutton's is left (not even a thing type waiting out its deprecation)."""
        return all(outcome.status in ("removed", "left") for outcome in self.outcomes)

    @property
    def failed(self) -> bool:
        """Something could not be removed and needs attention (pending ones only need time)."""
        return any(outcome.status in UNFINISHED for outcome in self.outcomes)


@dataclass(frozen=True)
class Kind:
    """One kind of recorded resource: how to name it, remove it, and what must go first."""

    name: str
    label: str
    # Removes one resource; returns None when it is gone, else (status, why).
    remove: Callable[[AppContext, str, bool], Removal]
    # Kinds that must be gone first: all of them, or (own_only) just those it owns.
    after: tuple[str, ...] = ()
    own_only: bool = False


def _remove_certificate(ctx: AppContext, cert_id: str, keep_local: bool) -> Removal:
    left = certs.retire_certificate(ctx, cert_id, keep_local=keep_local)
    if left:
        return "files-left", "deleted in AWS; " + "; ".join(left.values())
    return None


def _remove_certificate_request(ctx: AppContext, request_id: str, keep_local: bool) -> Removal:
    certs.reclaim_request(ctx, request_id)
    return None


def _remove_leftover_file(ctx: AppContext, path: str, keep_local: bool) -> Removal:
    certs.remove_leftover(ctx, path)
    return None


def _remove_thing(ctx: AppContext, serial: str, keep_local: bool) -> Removal:
    things.delete_thing(ctx, serial)
    return None


def _remove_policy(ctx: AppContext, name: str, keep_local: bool) -> Removal:
    why = policies.delete_policy(ctx, name)
    return ("left", why) if why else None


def _remove_thing_type(ctx: AppContext, name: str, keep_local: bool) -> Removal:
    """Deprecate, then delete; AWS deletes a type only 5 minutes after its deprecation."""
    iot = ctx.client("iot")
    record = ctx.namespace.get(things.TYPE_KIND, name) or {}
    verdict = ownership.thing_type(ctx, name)
    if verdict is None:
        ctx.namespace.remove(things.TYPE_KIND, name)
        return None
    if not verdict:
        ctx.namespace.remove(things.TYPE_KIND, name)
        raise not_ours("thing type", name, "its description is not iotbutton's")
    others = iot.list_things(thingTypeName=name, maxResults=1).get("things", [])
    if others:
        ctx.namespace.remove(things.TYPE_KIND, name)
        return "left", (
            "left in AWS: things this registry does not know still use it (another machine's "
            "buttons?); the last `iotbutton clean` removes it"
        )
    if not record.get("deprecated_at"):
        try:
            iot.deprecate_thing_type(thingTypeName=name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            ctx.namespace.remove(things.TYPE_KIND, name)
            return None
        record["deprecated_at"] = utc_now()
        ctx.namespace.update(things.TYPE_KIND, name, deprecated_at=record["deprecated_at"])
    try:
        iot.delete_thing_type(thingTypeName=name)
    except Exception as exc:
        if is_not_found(exc):
            pass
        elif error_code(exc) == "InvalidRequestException" and _within_delay(
            record["deprecated_at"]
        ):
            return "pending", (
                f"deprecated; AWS allows deleting it from {_deletable_at(record['deprecated_at'])}"
                " — run `iotbutton clean` again then"
            )
        else:
            raise
    ctx.namespace.remove(things.TYPE_KIND, name)
    return None


def _removing(
    remove: Callable[[AppContext, str], None],
) -> Callable[[AppContext, str, bool], Removal]:
    """Adapt a ``remove(ctx, id)`` that has no local files to keep."""

    def run(ctx: AppContext, resource_id: str, keep_local: bool) -> Removal:
        remove(ctx, resource_id)
        return None

    return run


# Rules and permissions first (a rule must not invoke a half-deleted function), then the function
# and what it uses, then the buttons, then the IoT policy and thing type they used.
KINDS: list[Kind] = [
    Kind("topic_rules", "topic rule", _removing(rules.delete_rule)),
    Kind("lambda_permissions", "Lambda permission", _removing(rules.remove_permission)),
    Kind(
        "functions",
        "Lambda function",
        _removing(notifier_deploy.delete_function),
        after=("topic_rules", "lambda_permissions"),
    ),
    Kind(
        "log_groups", "log group", _removing(notifier_deploy.delete_log_group), after=("functions",)
    ),
    Kind("parameters", "SSM parameter", _removing(notifier_deploy.delete_parameter)),
    Kind("buckets", "S3 bucket", _removing(notifier_deploy.delete_bucket)),
    Kind(
        "roles",
        "IAM role",
        _removing(notifier_deploy.delete_role),
        after=("functions", "topic_rules"),
    ),
    # A certificate an interrupted run made but never recorded (see provisioning/certs.py).
    Kind(certs.REQUEST_KIND, "unconfirmed certificate request", _remove_certificate_request),
    Kind("certificates", "certificate", _remove_certificate),
    Kind("things", "thing", _remove_thing, after=("certificates",), own_only=True),
    Kind("policies", "IoT policy", _remove_policy, after=("certificates",)),
    Kind("thing_types", "thing type", _remove_thing_type, after=("things",)),
    # Private keys an earlier clean deleted the certificate of but could not delete themselves.
    Kind(certs.LEFTOVER_KIND, "key file", _remove_leftover_file),
]


KIND_BY_NAME = {kind.name: kind for kind in KINDS}


def plan(ctx: AppContext, extra: dict[str, dict[str, Any]] | None = None) -> list[Step]:
    """Every recorded resource (plus ``extra`` ones, e.g. discovered), in removal order."""
    resources = {kind: dict(items) for kind, items in ctx.namespace.snapshot().items()}
    for kind_name, items in (extra or {}).items():
        for resource_id, item in items.items():
            resources.setdefault(kind_name, {}).setdefault(resource_id, item)
    steps = []
    for kind in KINDS:
        for resource_id, record in sorted(resources.get(kind.name, {}).items()):
            label = _label(kind, resource_id, record)
            steps.append(Step(kind.name, resource_id, label, record.get("thing")))
    return steps


def _label(kind: Kind, resource_id: str, record: dict[str, Any]) -> str:
    if kind.name == "certificates":
        return (
            f"{kind.label} {resource_id[:12]}… of {record.get('thing') or record.get('role', '?')}"
        )
    if kind.name == certs.REQUEST_KIND:
        owner = record.get("thing") or record.get("role") or "?"
        return f"{kind.label} for {owner} ({record.get('since', '?')})"
    return f"{kind.label} {resource_id}"


def execute(
    ctx: AppContext,
    steps: list[Step],
    keep_local: bool = False,
    workers: int = things.DEFAULT_WORKERS,
    on_done: Callable[[Outcome], None] | None = None,
) -> CleanReport:
    """Remove ``steps`` kind by kind in KINDS order, each kind's resources concurrently.

    A kind that waits only for what it owns (a thing, for its certificates) does not wait for
    the whole phase before it: each thing goes as soon as its own certificates are gone.
    """
    ctx.before_changes()
    report = CleanReport()
    report_lock = threading.Lock()
    done_early: set[tuple[str, str]] = set()

    def finish(outcome: Outcome) -> None:
        with report_lock:
            _finish(report, outcome, on_done)

    for kind in KINDS:
        batch = [
            s for s in steps if s.kind == kind.name and (s.kind, s.resource_id) not in done_early
        ]
        if not batch:
            continue
        ready = []
        for step in batch:
            blocker = _blocker(kind, step, report)
            if blocker is None:
                ready.append(step)
            else:
                finish(Outcome(step, "skipped", f"waits for {blocker.label}"))
        followers = _followers(kind, steps, report)
        tasks = _tasks(ready, followers)
        done_early.update(
            (step.kind, step.resource_id)
            for chain in tasks
            for step in chain
            if step.kind != kind.name
        )

        def run_chain(chain: list[Step], kind: Kind = kind) -> None:
            """An owner's resources one by one, then (unless one stayed) what they blocked."""
            stayed: Step | None = None
            for step in chain:
                step_kind = KIND_BY_NAME[step.kind]
                if step_kind is not kind and stayed is not None:
                    outcome = Outcome(step, "skipped", f"waits for {stayed.label}")
                else:
                    outcome = _run(ctx, step_kind, step, keep_local)
                if outcome.status in BLOCKING and stayed is None:
                    stayed = step
                finish(outcome)

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks) or 1))) as pool:
            for future in [pool.submit(run_chain, chain) for chain in tasks]:
                future.result()
    if not keep_local:
        keyfiles.remove_empty_namespace_dir(ctx.namespace.key)
    order = {(step.kind, step.resource_id): index for index, step in enumerate(steps)}
    report.outcomes.sort(key=lambda o: order.get((o.step.kind, o.step.resource_id), len(order)))
    return report


def _followers(kind: Kind, steps: list[Step], report: CleanReport) -> dict[str, Step]:
    """Steps of a later kind that wait only for their own resources of ``kind`` (and nothing
    that has failed or been skipped), keyed by owner: they can run right after them."""
    followers = {}
    for later in KINDS[KINDS.index(kind) + 1 :]:
        if not later.own_only or later.after != (kind.name,):
            continue
        for step in steps:
            if step.kind == later.name and _blocker(later, step, report) is None:
                followers[step.resource_id] = step
    return followers


def _tasks(ready: list[Step], followers: dict[str, Step]) -> list[list[Step]]:
    """Chains to run: an owner's steps one after the other, then the step they were blocking."""
    chains: dict[str, list[Step]] = {}
    tasks: list[list[Step]] = []
    for step in ready:
        if step.owner and step.owner in followers:
            if step.owner not in chains:
                chains[step.owner] = []
                tasks.append(chains[step.owner])
            chains[step.owner].append(step)
        else:
            tasks.append([step])
    for owner, chain in chains.items():
        chain.append(followers[owner])
    return tasks


def _blocker(kind: Kind, step: Step, report: CleanReport) -> Step | None:
    """The first unremoved resource that must go before ``step`` can, if any."""
    for outcome in report.outcomes:
        blocking = outcome.step.kind in kind.after and outcome.status in BLOCKING
        if blocking and (not kind.own_only or outcome.step.owner == step.resource_id):
            return outcome.step
    return None


def _finish(
    report: CleanReport, outcome: Outcome, on_done: Callable[[Outcome], None] | None
) -> None:
    report.outcomes.append(outcome)
    if on_done:
        on_done(outcome)


def _run(ctx: AppContext, kind: Kind, step: Step, keep_local: bool) -> Outcome:
    try:
        removal = kind.remove(ctx, step.resource_id, keep_local)
    except NotOurs as left:
        ctx.namespace.remove(kind.name, step.resource_id)
        return Outcome(step, "left", left.message)
    except Exception as exc:
        error = clean_error(exc, ctx)
        if error is None:
            raise
        return Outcome(step, "failed", error.message)
    return Outcome(step, *removal) if removal else Outcome(step, "removed")


def _within_delay(deprecated_at: str) -> bool:
    """AWS refuses DeleteThingType for 5 minutes after deprecation; a refusal later than that
    (plus a minute for clock skew) has another cause and is a real failure."""
    moment = datetime.strptime(deprecated_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) < moment + THING_TYPE_DELETE_DELAY + timedelta(minutes=1)


def _deletable_at(deprecated_at: str) -> str:
    moment = datetime.strptime(deprecated_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (moment + THING_TYPE_DELETE_DELAY).strftime("%H:%M UTC")
