"""``iotbutton clean``: remove everything iotbutton made in this account and region."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, KeepLocalOption, YesOption, command_context
from iotbutton_cli.errors import ExitStatus

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output
    from iotbutton_cli.lifecycle.teardown import CleanReport, Step


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
    app_ctx.check_namespace_owner()
    found = None
    if discover:
        from iotbutton_cli.lifecycle import discover as discovery

        found = discovery.discover(app_ctx)
        known = teardown.plan(app_ctx)
        out.info(
            f"Discovered {found.count()} resources made by iotbutton "
            f"({found.count() - _overlap(known, found)} not in the registry)."
        )
    steps = teardown.plan(app_ctx, found.resources if found else None)
    where = f"account {app_ctx.account_id}, {app_ctx.region}"
    if not steps:
        out.result(
            views.clean_nothing_view(dry_run),
            human=lambda: out.say(f"Nothing to clean in {where}."),
        )
        return
    if not out.json:
        out.table(
            f"{'Would remove' if dry_run else 'Plan'} ({where})",
            ["#", "resource"],
            [[index, step.label] for index, step in enumerate(steps, 1)],
        )
    if dry_run:
        out.result(views.clean_plan_view(steps), human=lambda: None)  # the plan is shown above
        return
    out.confirm(f"Remove these {len(steps)} resources?", yes)
    if found is not None:
        from iotbutton_cli.lifecycle import discover as discovery

        discovery.record(app_ctx, found)  # from here on, the registry knows them
    with out.progress() as bar:
        task = bar.add_task("Removing", total=len(steps))
        report = teardown.execute(
            app_ctx, steps, keep_local=keep_local, on_done=lambda outcome: bar.advance(task)
        )
    out.result(views.clean_report_view(report), human=lambda: _print_report(out, report))
    if report.failed:
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _overlap(known: list[Step], found: Any) -> int:
    recorded = {(step.kind, step.resource_id) for step in known}
    return sum((kind, rid) in recorded for kind, items in found.resources.items() for rid in items)


def _print_report(out: Output, report: CleanReport) -> None:
    removed = report.with_status("removed")
    out.say(f"Removed {len(removed)} of {len(report.outcomes)} resources.")
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
