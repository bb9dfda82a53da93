"""How ``clean`` removes one resource of each kind (bound to the kinds in ``kinds_table.py``).

A remover takes the resource's id and whether to keep local files, and returns ``None`` once the
resource is gone, or what else it ended in (:data:`Removal`). It raises :class:`NotOurs` for a
resource without iotbutton's marks, and any other error for a failure; both leave the record as
the remover left it (true), so a re-run can finish the job.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Literal

from iotbutton_cli.aws.calls import deleted
from iotbutton_cli.aws.errors import error_code
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import not_ours
from iotbutton_cli.provisioning import certs, ownership, policies, things
from iotbutton_cli.registry import kinds, records
from iotbutton_cli.registry.store import utc_now

THING_TYPE_DELETE_DELAY = timedelta(minutes=5)

# What a removal can end in besides "removed": still to do later, left alone, or gone from AWS
# with some of its key files left on disk; with why.
RemovalStatus = Literal["pending", "left", "files-left"]
Removal = tuple[RemovalStatus, str] | None
Remover = Callable[[AppContext, str, bool], Removal]


def certificate(ctx: AppContext, cert_id: str, keep_local: bool) -> Removal:
    left = certs.retire_certificate(ctx, cert_id, keep_local=keep_local)
    if left:
        return "files-left", "deleted in AWS; " + "; ".join(left.values())
    return None


def certificate_request(ctx: AppContext, request_id: str, keep_local: bool) -> Removal:
    certs.reclaim_request(ctx, request_id)
    return None


def leftover_file(ctx: AppContext, path: str, keep_local: bool) -> Removal:
    certs.remove_leftover(ctx, path)
    return None


def thing(ctx: AppContext, serial: str, keep_local: bool) -> Removal:
    things.delete_thing(ctx, serial)
    return None


def policy(ctx: AppContext, name: str, keep_local: bool) -> Removal:
    why = policies.delete_policy(ctx, name)
    return ("left", why) if why else None


def thing_type(ctx: AppContext, name: str, keep_local: bool) -> Removal:
    """Deprecate, then delete; AWS deletes a type only 5 minutes after its deprecation."""
    iot = ctx.client("iot")
    record = records.thing_type(ctx.namespace.get(kinds.THING_TYPES, name))
    verdict = ownership.thing_type(ctx, name)
    if verdict is None:
        ctx.namespace.remove(kinds.THING_TYPES, name)
        return None
    if not verdict:
        ctx.namespace.remove(kinds.THING_TYPES, name)
        raise not_ours("thing type", name, "its description is not iotbutton's")
    others = iot.list_things(thingTypeName=name, maxResults=1).get("things", [])
    if others:
        ctx.namespace.remove(kinds.THING_TYPES, name)
        return "left", (
            "left in AWS: things this registry does not know still use it (another machine's "
            "buttons?); the last `iotbutton clean` removes it"
        )
    deprecated_at = record.get("deprecated_at")
    if not deprecated_at:
        if not deleted(iot.deprecate_thing_type, thingTypeName=name):
            ctx.namespace.remove(kinds.THING_TYPES, name)
            return None
        deprecated_at = utc_now()
        ctx.namespace.update(kinds.THING_TYPES, name, deprecated_at=deprecated_at)
    try:
        deleted(iot.delete_thing_type, thingTypeName=name)
    except Exception as exc:
        if error_code(exc) == "InvalidRequestException" and _within_delay(deprecated_at):
            return "pending", (
                f"deprecated; AWS allows deleting it from {_deletable_at(deprecated_at)}"
                " — run `iotbutton clean` again then"
            )
        raise
    ctx.namespace.remove(kinds.THING_TYPES, name)
    return None


def removing(remove: Callable[[AppContext, str], None]) -> Remover:
    """Adapt a ``remove(ctx, id)`` that has no local files to keep."""

    def run(ctx: AppContext, resource_id: str, keep_local: bool) -> Removal:
        remove(ctx, resource_id)
        return None

    return run


def _within_delay(deprecated_at: str) -> bool:
    """AWS refuses DeleteThingType for 5 minutes after deprecation; a refusal later than that
    (plus a minute for clock skew) has another cause and is a real failure."""
    moment = datetime.strptime(deprecated_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) < moment + THING_TYPE_DELETE_DELAY + timedelta(minutes=1)


def _deletable_at(deprecated_at: str) -> str:
    moment = datetime.strptime(deprecated_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (moment + THING_TYPE_DELETE_DELAY).strftime("%H:%M UTC")
