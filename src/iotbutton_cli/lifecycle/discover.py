"""`clean --discover`: find what iotbutton made when the registry was lost or is incomplete.

Only resources that carry iotbutton's own marks are taken, never anything else:

- things with the attribute ``createdBy=iotbutton-cli``, and the certificates attached to them;
- IoT policies named ``iotbutton-button`` / ``iotbutton-monitor`` whose document is exactly the one
  iotbutton writes for this account and region, and the certificates they are attached to;
- the thing type with iotbutton's description;
- topic rules with iotbutton's description that invoke the notifier function;
- the notifier function, its roles, bucket, parameter and log groups, by name AND by the
  ``managed-by=iotbutton`` tag.

Each kind's finder is in ``finders.py``, bound to its kind in ``kinds_table.py``. What is found is
recorded in the registry, so the ordinary teardown removes it.
"""

from __future__ import annotations

from iotbutton_cli.context import AppContext
from iotbutton_cli.lifecycle.finders import Found
from iotbutton_cli.lifecycle.kinds_table import FINDERS

__all__ = ["Found", "discover", "record"]


def discover(ctx: AppContext) -> Found:
    """Look for iotbutton's resources in this account and region (read-only calls)."""
    found = Found()
    for find in FINDERS:
        find(ctx, found)
    return found


def record(ctx: AppContext, found: Found) -> int:
    """Merge what was found into the registry; returns how many records are new."""
    new = 0
    with ctx.namespace.transaction() as resources:
        for kind, items in found.resources.items():
            known = resources.setdefault(kind, {})
            for resource_id, item in items.items():
                if resource_id not in known:
                    new += 1
                known[resource_id] = {**item, **known.get(resource_id, {}), "discovered": True}
    return new
