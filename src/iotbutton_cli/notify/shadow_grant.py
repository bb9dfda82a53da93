"""Keep the notifier's shadow grant to the buttons there are, as buttons come and go.

The notifier's role may read and write the classic shadow of each button's thing, named one by
one (:func:`~iotbutton_cli.notify.resources.shadow_statement`). The buttons are the registry's
and every thing iotbutton made in this account and region (its ``createdBy`` attribute, the mark
``clean --discover`` goes by), so a deploy from any machine grants the same things, and a thing
without the mark is never granted. ``notify deploy`` writes the list; :func:`refresh` rewrites it
after ``things create`` and ``things delete`` when the notifier is deployed here, so that a new
button's first click reaches its shadow (once IAM has spread the change, within seconds) and a
deleted button's name is no longer granted. The role's inline policy is rewritten only if it
differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from iotbutton_cli.aws.tags import THING_ATTRIBUTE
from iotbutton_cli.context import AppContext, clean_error
from iotbutton_cli.notify import current as aws_state
from iotbutton_cli.notify import plan
from iotbutton_cli.notify.resources import (
    ROLE_KIND,
    Names,
    ShadowGrant,
    function_policy,
    shadow_grant,
)
from iotbutton_cli.registry import kinds


@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh` did to the notifier's role."""

    updated: bool  # the inline policy was rewritten
    left_out: tuple[str, ...] = ()  # buttons IAM's size limit left out of the grant
    error: str | None = None  # why the role could not be read or written (the buttons are fine)


def button_serials(ctx: AppContext) -> set[str]:
    """The registry's buttons and the things iotbutton made here (``ListThings`` filtered by
    its attribute; a thing's name is its button's serial). The attribute is a mark anyone who
    may create things could copy: the registry's own buttons are granted first."""
    attribute, value = next(iter(THING_ATTRIBUTE.items()))
    pages = (
        ctx.client("iot")
        .get_paginator("list_things")
        .paginate(attributeName=attribute, attributeValue=value)
    )
    listed = {thing["thingName"] for page in pages for thing in page.get("things", [])}
    return set(ctx.namespace.items(kinds.THINGS)) | listed


def grant(ctx: AppContext) -> ShadowGrant:
    """The things the notifier's role may write the shadows of, and the buttons left out."""
    return shadow_grant(
        ctx, Names.for_context(ctx), button_serials(ctx), first=ctx.namespace.items(kinds.THINGS)
    )


def refresh(ctx: AppContext) -> Refreshed | None:
    """Name the registry's buttons in the notifier's role; None when no notifier is deployed
    here (its role is not recorded). Serialised with other commands doing the same, so the last
    write names every button the registry holds."""
    names = Names.for_context(ctx)
    role = names.function_role
    recorded = ctx.namespace.get(ROLE_KIND, role)
    if recorded is None or recorded.get("pending"):
        return None
    with ctx.namespace.lock(ROLE_KIND, role):
        try:
            granted = grant(ctx)
            wanted = function_policy(ctx, names, granted.granted)
            iam = ctx.client("iam")
            found = aws_state.role(iam, role)
            if found is None:  # gone: the next deploy makes it again, with the grant
                return Refreshed(False, granted.left_out)
            if not plan.role_step(role, found, wanted).changes_something:
                return Refreshed(False, granted.left_out)
            iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=json.dumps(wanted))
        except Exception as exc:
            error = clean_error(exc, ctx)
            if error is None:
                raise
            return Refreshed(False, error=error.message)
    return Refreshed(True, granted.left_out)
