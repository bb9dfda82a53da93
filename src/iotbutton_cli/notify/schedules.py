"""Make and remove the release schedule: the EventBridge Scheduler schedule that invokes the
notifier with the release event when quiet hours that hold clicks (``then: hold``) end, and the
schedule group it lives in.

Each ``apply_*`` takes the planner's :class:`~iotbutton_cli.notify.plan.Step` and returns it as
applied; each resource is recorded in the registry the moment AWS confirms it, and a create that
finds the resource there already (our own call retried, or a deploy elsewhere) reads it again
and plans again, as in :mod:`iotbutton_cli.notify.apply`. Schedules carry no tags (Scheduler
tags only groups): a schedule is iotbutton's when its group carries iotbutton's tag, and nothing
is deleted otherwise. The role the schedule invokes the notifier as is an IAM role like the
others (:func:`iotbutton_cli.notify.apply.apply_role`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from iotbutton_cli.aws.calls import absent_is_fine
from iotbutton_cli.aws.errors import error_code, error_message
from iotbutton_cli.aws.retry import retry_while
from iotbutton_cli.aws.tags import aws_tags
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import not_ours
from iotbutton_cli.notifier_lambda.contract import release_event
from iotbutton_cli.notify import current as aws_state
from iotbutton_cli.notify import plan
from iotbutton_cli.notify.plan import Step
from iotbutton_cli.notify.resources import (
    FUNCTION_NAME,
    SCHEDULE_GROUP_KIND,
    SCHEDULE_KIND,
    schedule_arn,
    schedule_group_arn,
)
from iotbutton_cli.provisioning import ownership


def apply_schedule_group(ctx: AppContext, step: Step, found: dict[str, Any] | None) -> Step:
    """The group, tagged at creation (CreateScheduleGroup takes the tags); ``found`` is what
    the deploy read of it (``{"Arn", "tagged"}``)."""
    scheduler = ctx.client("scheduler")
    name = step.name
    arn = found["Arn"] if found else schedule_group_arn(ctx, name)
    if step.action == "create":
        ctx.namespace.put(SCHEDULE_GROUP_KIND, name, {"arn": arn, "pending": True})
        try:
            arn = scheduler.create_schedule_group(Name=name, Tags=aws_tags())["ScheduleGroupArn"]
        except Exception as exc:
            if error_code(exc) != "ConflictException":
                raise
            found = aws_state.schedule_group_state(scheduler, name)
            if found is None:  # gone again: let the next deploy make it
                raise
            tags = found["tags"]
            aws_state.require_ours(ctx, SCHEDULE_GROUP_KIND, name, lambda: tags, "schedule group")
            arn, step = found["Arn"], plan.schedule_group_step(name, found)
    ctx.namespace.confirm(SCHEDULE_GROUP_KIND, name, {"arn": arn})
    if "tags" in step.changes:
        scheduler.tag_resource(ResourceArn=arn, Tags=aws_tags())
    return step


def apply_schedule(
    ctx: AppContext, step: Step, group: str, name: str, settings: dict[str, Any]
) -> Step:
    """Create the schedule, or update it: UpdateSchedule replaces every setting, so it is given
    them all. A new scheduler role takes seconds before Scheduler accepts it: retried while it
    does not."""
    scheduler = ctx.client("scheduler")
    schedule_id = step.name
    record = {"arn": schedule_arn(ctx, schedule_id), "group": group}
    if step.action == "create":
        ctx.namespace.put(SCHEDULE_KIND, schedule_id, {**record, "pending": True})
        try:
            created = retry_while(
                lambda: scheduler.create_schedule(Name=name, GroupName=group, **settings),
                _role_not_ready,
            )
        except Exception as exc:
            if error_code(exc) != "ConflictException":
                raise
            found = aws_state.schedule_state(scheduler, group, name)
            if found is None:  # gone again: let the next deploy make it
                raise
            step = plan.schedule_step(schedule_id, found, settings)
        else:
            arn = created.get("ScheduleArn") or record["arn"]
            ctx.namespace.confirm(SCHEDULE_KIND, schedule_id, {**record, "arn": arn})
            return step
    ctx.namespace.confirm(SCHEDULE_KIND, schedule_id, record)
    if step.action == "update":
        retry_while(
            lambda: scheduler.update_schedule(Name=name, GroupName=group, **settings),
            _role_not_ready,
        )
    return step


def _role_not_ready(exc: BaseException) -> bool:
    """Scheduler checks that it may assume the target's role ("The execution role you provide
    must allow AWS EventBridge Scheduler to assume the role."): a new role takes seconds."""
    return error_code(exc) == "ValidationException" and "role" in error_message(exc).lower()


def delete_schedule(
    ctx: AppContext, schedule_id: str, then: Callable[[], None] | None = None
) -> None:
    """Delete the schedule ``<group>/<name>`` if its group carries iotbutton's tag; NotFound
    (the schedule's or its group's) is done. ``then`` runs once it is gone, before the registry
    forgets it, so a ``then`` that fails is tried again by the next run."""
    scheduler = ctx.client("scheduler")
    group, _, name = schedule_id.partition("/")
    with absent_is_fine():
        arn = scheduler.get_schedule_group(Name=group)["Arn"]
        if not ownership.tagged(aws_state.schedule_group_tags(scheduler, arn)):
            why = f"its group {group} has no managed-by=iotbutton tag"
            raise not_ours("schedule", schedule_id, why)
        scheduler.delete_schedule(Name=name, GroupName=group)
    if then is not None:
        then()
    ctx.namespace.remove(SCHEDULE_KIND, schedule_id)


def delete_schedule_group(ctx: AppContext, name: str) -> None:
    """Only a group with iotbutton's tag. Its schedules go with it (AWS deletes them
    asynchronously); iotbutton's own was deleted on its own first."""
    scheduler = ctx.client("scheduler")
    with absent_is_fine():
        arn = scheduler.get_schedule_group(Name=name)["Arn"]
        if not ownership.tagged(aws_state.schedule_group_tags(scheduler, arn)):
            raise not_ours("schedule group", name, "it has no managed-by=iotbutton tag")
        scheduler.delete_schedule_group(Name=name)
    ctx.namespace.remove(SCHEDULE_GROUP_KIND, name)


def release_held_now(ctx: AppContext) -> None:
    """Ask the notifier, asynchronously, to send every click quiet hours still hold: with the
    release schedule gone, nothing else would. (Lambda retries an asynchronous invocation that
    fails, and hands one it gives up on to the failures function, which tells the owner.)"""
    ctx.client("lambda").invoke(
        FunctionName=FUNCTION_NAME,
        InvocationType="Event",
        Payload=json.dumps(release_event(force=True)).encode(),
    )
