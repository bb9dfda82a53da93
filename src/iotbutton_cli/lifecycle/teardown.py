"""`clean`: remove everything the registry holds for one account and region, in AWS's order.

The plan is data (a list of steps), so ``--dry-run`` only shows it. Execution walks the kinds in
the order their declared constraints give (registry/kinds.py; each kind's remover is bound to it
in kinds_table.py); within a kind, steps run concurrently. Each removal leaves the registry at
once, NotFound counts as already gone, and whatever fails stays recorded so a re-run can finish
the job.

Nothing is deleted on the registry's word alone: each removal first checks iotbutton's marks on
the resource (provisioning/ownership.py). A resource without them is *left* (and forgotten: the
registry was wrong to name it), and so is a policy or thing type that another registry's buttons
(another machine on the same account) still use: the last ``clean`` removes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from iotbutton_cli.aws import bulk
from iotbutton_cli.context import AppContext, clean_error
from iotbutton_cli.errors import Interrupted, NotOurs
from iotbutton_cli.lifecycle import discover as discovery
from iotbutton_cli.lifecycle.kinds_table import TEARDOWN, Row
from iotbutton_cli.provisioning import things
from iotbutton_cli.registry import keyfiles, kinds, records

# What a step ended in: gone; still to do later (a thing type waiting out its deprecation); left
# alone (not iotbutton's, or still used by another registry); gone from AWS with some key files
# left on disk; failed; or not attempted because what must go first stayed.
Status = Literal["removed", "pending", "left", "files-left", "failed", "skipped"]
BLOCKING: tuple[Status, ...] = ("failed", "skipped")  # what dependent resources must wait for
UNFINISHED: tuple[Status, ...] = (*BLOCKING, "files-left")

# The kinds in teardown order, each with its remover.
KINDS: list[Row] = TEARDOWN
KIND_BY_NAME: dict[str, Row] = {kind.name: kind for kind in KINDS}


@dataclass(frozen=True)
class Step:
    kind: str
    resource_id: str
    label: str
    owner: str | None = None  # the resource this one belongs to (a certificate's thing)


@dataclass
class Outcome:
    step: Step
    status: Status
    detail: str = ""


@dataclass
class CleanReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def with_status(self, status: Status) -> list[Outcome]:
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
class CleanPlan:
    """What ``clean`` is about to remove, shown (and agreed to) before anything changes."""

    steps: list[Step]
    discovered: int | None = None  # resources `--discover` found (None: it was not asked)
    unrecorded: int = 0  # of those, how many the registry did not know


@dataclass
class CleanResult:
    plan: CleanPlan
    dry_run: bool
    report: CleanReport | None = None  # None: nothing was removed (a dry run, or nothing to do)


Progress = Callable[[int], AbstractContextManager[Callable[[Outcome], None]]]


def clean(
    ctx: AppContext,
    *,
    discover: bool = False,
    dry_run: bool = False,
    keep_local: bool = False,
    review: Callable[[CleanPlan], None] | None = None,
    progress: Progress | None = None,
) -> CleanResult:
    """`iotbutton clean`: plan (finding what the registry lost, with ``discover``), let
    ``review`` see the plan (it raises to stop), then remove it all unless ``dry_run``.

    What discovery found is recorded only once the plan is agreed to, and before the first
    removal. ``progress(total)`` gives the callback told of each outcome as it happens.
    """
    ctx.check_namespace_owner()
    found = discovery.discover(ctx) if discover else None
    steps = plan(ctx, found.resources if found else None)
    the_plan = CleanPlan(steps)
    if found is not None:
        the_plan = CleanPlan(steps, found.count(), found.count() - _overlap(plan(ctx), found))
    if review is not None:
        review(the_plan)
    result = CleanResult(the_plan, dry_run)
    if dry_run or not steps:
        return result
    if found is not None:
        discovery.record(ctx, found)  # from here on, the registry knows them
    watching = progress(len(steps)) if progress else nullcontext(None)
    with watching as on_done:
        result.report = execute(ctx, steps, keep_local=keep_local, on_done=on_done)
    return result


def _overlap(known: list[Step], found: discovery.Found) -> int:
    recorded = {(step.kind, step.resource_id) for step in known}
    return sum((kind, rid) in recorded for kind, items in found.resources.items() for rid in items)


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


def _label(kind: Row, resource_id: str, record: Mapping[str, Any]) -> str:
    if kind.name == kinds.CERTIFICATES:
        cert = records.certificate(record)
        return f"{kind.label} {resource_id[:12]}… of {cert.get('thing') or cert.get('role', '?')}"
    if kind.name == kinds.CERTIFICATE_REQUESTS:
        request = records.certificate_request(record)
        owner = request.get("thing") or request.get("role") or "?"
        return f"{kind.label} for {owner} ({request.get('since', '?')})"
    return f"{kind.label} {resource_id}"


def execute(
    ctx: AppContext,
    steps: list[Step],
    keep_local: bool = False,
    workers: int = things.DEFAULT_WORKERS,
    on_done: Callable[[Outcome], None] | None = None,
) -> CleanReport:
    """Remove ``steps`` kind by kind in teardown order, each kind's resources concurrently.

    A kind that waits only for what it owns (a thing, for its certificates) does not wait for
    the whole phase before it: each thing goes as soon as its own certificates are gone.
    """
    ctx.before_changes(ahead=("iot",))
    report = CleanReport()
    report_lock = threading.Lock()
    done_early: set[tuple[str, str]] = set()

    def finish(outcome: Outcome) -> None:
        with report_lock:
            _finish(report, outcome, on_done)

    def remove_all() -> None:
        for kind in KINDS:
            batch = [
                s
                for s in steps
                if s.kind == kind.name and (s.kind, s.resource_id) not in done_early
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

            def run_chain(chain: list[Step], stopping: threading.Event, kind: Row = kind) -> None:
                """An owner's resources one by one, then (unless one stayed) what they blocked;
                on Ctrl-C (``stopping``), none after the one in hand."""
                stayed: Step | None = None
                for step in chain:
                    if stopping.is_set():
                        raise bulk.Stopped(step.label)
                    step_kind = KIND_BY_NAME[step.kind]
                    if step_kind is not kind and stayed is not None:
                        outcome = Outcome(step, "skipped", f"waits for {stayed.label}")
                    else:
                        outcome = _run(ctx, step_kind, step, keep_local)
                    if outcome.status in BLOCKING and stayed is None:
                        stayed = step
                    finish(outcome)

            bulk.run(tasks, run_chain, _chain_done, workers=min(workers, len(tasks) or 1))

    try:
        remove_all()
    except KeyboardInterrupt:
        # Nothing new starts; the removals in flight have finished, each leaving the registry
        # true; what never started stays recorded for the next `clean`.
        with report_lock:
            removed = len(report.with_status("removed"))
        raise Interrupted(
            f"Interrupted after removing {removed:,} of {len(steps):,} resources; run "
            "`iotbutton clean` again to remove the rest.",
            "What was not removed is still recorded in the registry.",
        ) from None
    if not keep_local:
        keyfiles.remove_empty_namespace_dir(ctx.namespace.key)
    order = {(step.kind, step.resource_id): index for index, step in enumerate(steps)}
    report.outcomes.sort(key=lambda o: order.get((o.step.kind, o.step.resource_id), len(order)))
    return report


def _chain_done(chain: list[Step], future: Future[None]) -> None:
    """A chain's end: a chain that stopped for Ctrl-C is fine; a bug still surfaces."""
    with suppress(bulk.Stopped):
        future.result()


def _followers(kind: Row, steps: list[Step], report: CleanReport) -> dict[str, Step]:
    """Steps of a later kind that wait only for their own resources of ``kind`` (and nothing
    that has failed or been skipped), keyed by owner: they can run right after them."""
    followers = {}
    here = KINDS.index(kind)
    for later in KINDS[here + 1 :]:
        if not later.own_only or later.after != (kind.name,):
            continue
        if any(KINDS.index(KIND_BY_NAME[name]) > here for name in later.kind.follows):
            continue  # it must also come after a kind that is not done yet
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


def _blocker(kind: Row, step: Step, report: CleanReport) -> Step | None:
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


def _run(ctx: AppContext, kind: Row, step: Step, keep_local: bool) -> Outcome:
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
