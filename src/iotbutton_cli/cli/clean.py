"""``iotbutton clean``: remove everything iotbutton made in this account and region."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, KeepLocalOption, YesOption, command_context
from iotbutton_cli.errors import ExitStatus

# From this many resources on, a summary by kind comes before the rows, plan and report alike.
SUMMARY_FROM = 20

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.lifecycle.teardown import CleanPlan, CleanReport, Outcome, Step


def clean(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be removed; change nothing.")
    ] = False,
    discover: Annotated[
        bool,
        typer.Option(
            "--discover",
            help="Also find what iotbutton made here but the registry lost (by its names, "
            "tags and thing attributes) and remove it too.",
        ),
    ] = False,
    keep_local: KeepLocalOption = False,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Tear down every recorded resource, in dependency order; what fails stays recorded."""
    from iotbutton_cli.lifecycle import teardown

    app_ctx, out = command_context(ctx, json)

    def review(plan: CleanPlan) -> None:
        if plan.discovered is not None:
            out.info(
                f"Discovered {plan.discovered} resources made by iotbutton "
                f"({plan.unrecorded} not in the registry)."
            )
        if not plan.steps:
            return
        if not out.json:
            if len(plan.steps) >= SUMMARY_FROM:
                out.table(
                    f"By kind ({len(plan.steps)} resources)",
                    ["kind", "resources"],
                    [[kind, count] for kind, count in _count_by_kind(plan.steps).items()],
                )
            out.table(
                f"{'Would remove' if dry_run else 'Plan'} ({_where(app_ctx)})",
                ["#", "resource"],
                [[index, step.label] for index, step in enumerate(plan.steps, 1)],
            )
        if not dry_run:
            out.confirm(f"Remove these {len(plan.steps)} resources?", yes)

    @contextmanager
    def progress(total: int) -> Iterator[Callable[[Outcome], None]]:
        with out.progress() as bar:
            task = bar.add_task("Removing", total=total)
            yield lambda outcome: bar.advance(task)

    result = teardown.clean(
        app_ctx,
        discover=discover,
        dry_run=dry_run,
        keep_local=keep_local,
        review=review,
        progress=progress,
    )
    if not result.plan.steps:
        out.result(
            views.clean_nothing_view(dry_run),
            human=lambda: out.say(f"Nothing to clean in {_where(app_ctx)}."),
        )
        return
    report = result.report
    if report is None:  # a dry run: the plan is shown above
        out.result(views.clean_plan_view(result.plan.steps), human=lambda: None)
        return
    out.result(views.clean_report_view(report), human=lambda: _print_report(out, report))
    if report.failed:
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _count_by_kind(steps: Iterable[Step]) -> dict[str, int]:
    """How many steps of each kind, in teardown order (the steps come in that order)."""
    counts: dict[str, int] = {}
    for step in steps:
        kind = step.kind.replace("_", " ")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _where(app_ctx: AppContext) -> str:
    return f"account {app_ctx.account_id}, {app_ctx.region}"


def _print_report(out: Output, report: CleanReport) -> None:
    removed = report.with_status("removed")
    out.say(f"Removed {len(removed)} of {len(report.outcomes)} resources.")
    if len(report.outcomes) >= SUMMARY_FROM:
        by_kind: dict[str, dict[str, int]] = {}
        for outcome in report.outcomes:
            statuses = by_kind.setdefault(outcome.step.kind.replace("_", " "), {})
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        for kind, statuses in by_kind.items():
            counts = ", ".join(f"{count} {status}" for status, count in statuses.items())
            out.info(f"  {kind}: {counts}")
    for outcome in report.outcomes:
        if outcome.status != "removed":
            out.info(f"  {outcome.status}: {outcome.step.label}: {outcome.detail}")
    if report.with_status("left"):
        out.info(
            "What was left is not iotbutton's to remove (or is still used by another registry); "
            "the registry no longer lists it."
        )
    if report.failed:
        out.info("What could not be removed is still recorded; run `iotbutton clean` again.")
