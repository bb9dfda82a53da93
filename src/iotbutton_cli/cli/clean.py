"""``iotbutton clean``: remove everything iotbutton made in this account and region."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from iotbutton_cli.cli import output
from iotbutton_cli.cli.common import JsonOption, KeepLocalOption, YesOption, app_context
from iotbutton_cli.errors import ExitStatus

if TYPE_CHECKING:
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

    app_ctx = app_context(ctx, json)

    def review(plan: CleanPlan) -> None:
        if plan.discovered is not None:
            output.info(
                f"Discovered {plan.discovered} resources made by iotbutton "
                f"({plan.unrecorded} not in the registry)."
            )
        if not plan.steps:
            return
        if not json:
            output.table(
                f"{'Would remove' if dry_run else 'Plan'} ({_where(app_ctx)})",
                ["#", "resource"],
                [[index, step.label] for index, step in enumerate(plan.steps, 1)],
            )
        if not dry_run:
            output.confirm(f"Remove these {len(plan.steps)} resources?", yes)

    result = teardown.clean(
        app_ctx,
        discover=discover,
        dry_run=dry_run,
        keep_local=keep_local,
        review=review,
        progress=_progress,
    )
    if not result.plan.steps:
        if json:
            output.emit_json({"dry_run": dry_run, "complete": True, "pending": 0, "steps": []})
        else:
            output.say(f"Nothing to clean in {_where(app_ctx)}.")
        return
    if result.report is None:  # a dry run
        if json:
            output.emit_json({"dry_run": True, "steps": _steps_json(result.plan.steps)})
        return
    _render(result.report, json)
    if result.report.failed:
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _where(app_ctx: AppContext) -> str:
    return f"account {app_ctx.account_id}, {app_ctx.region}"


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Outcome], None]]:
    with output.progress() as bar:
        task = bar.add_task("Removing", total=total)
        yield lambda outcome: bar.advance(task)


def _steps_json(steps: list[Step]) -> list[dict[str, str]]:
    return [
        {"kind": step.kind, "id": step.resource_id, "label": step.label, "status": "planned"}
        for step in steps
    ]


def _render(report: CleanReport, json: bool) -> None:
    if json:
        output.emit_json(
            {
                "dry_run": False,
                "complete": report.complete,
                "pending": len(report.with_status("pending")),
                "steps": [
                    {
                        "kind": o.step.kind,
                        "id": o.step.resource_id,
                        "label": o.step.label,
                        "status": o.status,
                        "detail": o.detail,
                    }
                    for o in report.outcomes
                ],
            }
        )
        return
    removed = report.with_status("removed")
    output.say(f"Removed {len(removed)} of {len(report.outcomes)} resources.")
    for outcome in report.outcomes:
        if outcome.status != "removed":
            output.info(f"  {outcome.status}: {outcome.step.label}: {outcome.detail}")
    if report.with_status("left"):
        output.info(
            "What was left is not iotbutton's to remove (or is still used by another registry); "
            "the registry no longer lists it."
        )
    if report.failed:
        output.info("What could not be removed is still recorded; run `iotbutton clean` again.")
