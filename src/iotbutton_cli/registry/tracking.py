"""Which records a change touched, so that a commit journals those and nothing else.

A change is a function that edits a namespace's resources in place (``resources.setdefault(
"things", {})[serial] = ...``, ``record.update(...)``). It is handed these mappings instead of
the dicts themselves: every record it reaches through them is noted, with a copy of what it was,
and the commit compares the two and journals only what differs. Reaching a record is enough to
be noted, so an edit made through a reference to it is never missed.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from iotbutton_cli.registry.journal import copy

Record = dict[str, Any]


class Touched:
    """Records reached during one commit: (kind, id) → their state before it (None: absent)."""

    def __init__(self) -> None:
        self.before: dict[tuple[str, str], Record | None] = {}

    def note(self, kind: str, resource_id: str, items: dict[str, Record]) -> None:
        key = (kind, resource_id)
        if key not in self.before:
            record = items.get(resource_id)
            self.before[key] = None if record is None else copy(record)

    def changes(
        self, resources: dict[str, dict[str, Record]]
    ) -> tuple[list[tuple[str, str, Record]], list[tuple[str, str]]]:
        """What differs now: (kind, id, record) to put, and (kind, id) removed."""
        put, removed = [], []
        for (kind, resource_id), before in self.before.items():
            after = resources.get(kind, {}).get(resource_id)
            if after == before:
                continue
            if after is None:
                removed.append((kind, resource_id))
            else:
                put.append((kind, resource_id, after))
        return put, removed


class TrackedKinds(MutableMapping[str, Any]):
    """A namespace's resources (kind → items) that notes every record reached through it."""

    def __init__(self, resources: dict[str, dict[str, Record]], touched: Touched) -> None:
        self._resources = resources
        self._touched = touched

    def __getitem__(self, kind: str) -> TrackedItems:
        return TrackedItems(kind, self._resources[kind], self._touched)

    def __setitem__(self, kind: str, items: dict[str, Record]) -> None:
        self._note_all(kind)
        for resource_id in items:
            self._touched.note(kind, resource_id, self._resources.get(kind, {}))
        self._resources[kind] = items

    def __delitem__(self, kind: str) -> None:
        self._note_all(kind)
        del self._resources[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)

    def setdefault(self, kind: str, default: Any = None) -> TrackedItems:
        if kind not in self._resources:
            self[kind] = {} if default is None else default
        return self[kind]

    def _note_all(self, kind: str) -> None:
        items = self._resources.get(kind, {})
        for resource_id in items:
            self._touched.note(kind, resource_id, items)


class TrackedItems(MutableMapping[str, Any]):
    """One kind's records (id → record) that notes every record reached through it."""

    def __init__(self, kind: str, items: dict[str, Record], touched: Touched) -> None:
        self._kind = kind
        self._items = items
        self._touched = touched

    def __getitem__(self, resource_id: str) -> Record:
        self._touched.note(self._kind, resource_id, self._items)
        return self._items[resource_id]

    def __setitem__(self, resource_id: str, record: Record) -> None:
        self._touched.note(self._kind, resource_id, self._items)
        self._items[resource_id] = record

    def __delitem__(self, resource_id: str) -> None:
        self._touched.note(self._kind, resource_id, self._items)
        del self._items[resource_id]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, resource_id: object) -> bool:
        return resource_id in self._items
