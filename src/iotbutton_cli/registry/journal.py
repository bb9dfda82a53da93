"""The registry's journal: what a running command changed since ``registry.json`` was written.

Rewriting the whole registry for every change made bulk work quadratic (2,383 buttons slowed to
2 a second). So a change is *appended* instead, one JSON line per group commit, and
``registry.json`` is rewritten (compacted) once, when the command ends. Between commands there
is no journal; one is left only by a command that was killed, and the next one replays it.

``registry.journal`` (JSON Lines, 0600)::

    {"generation": 7}
    {"namespaces": {"aws:123456789012:us-east-1": {"account": "123456789012", ...}},
     "put": [["aws:123456789012:us-east-1", "things", "G030...", {"arn": "...", ...}]],
     "removed": [["aws:123456789012:us-east-1", "certificate_requests", "7f3c..."]]}

Each line holds the final state of every record its commit touched, so replaying is idempotent.
The first line names the ``generation`` of the ``registry.json`` it continues: a journal of an
older generation was compacted already (a crash between the two steps of a compaction) and is
ignored; one of a newer generation means ``registry.json`` was replaced while it was being
read, so the reader reads again. A last line without its newline is a write a crash cut short:
readers ignore it, and the next writer cuts it off before appending.
"""

from __future__ import annotations

import json
from typing import Any

from iotbutton_cli.registry.shape import check_items

JOURNAL_SUFFIX = ".journal"
Key = tuple[str, str, str]  # namespace, kind, id


def header(generation: int) -> bytes:
    return json.dumps({"generation": generation}).encode() + b"\n"


def read_header(line: bytes) -> int | None:
    """The generation a journal's first line names (None: it is not a journal header)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    generation = value.get("generation") if isinstance(value, dict) else None
    if not isinstance(generation, int) or isinstance(generation, bool):
        return None
    return generation


def commit_line(
    namespaces: dict[str, dict[str, Any]],
    put: list[tuple[str, str, str, dict[str, Any]]],
    removed: list[Key],
) -> bytes:
    entry: dict[str, Any] = {}
    if namespaces:
        entry["namespaces"] = namespaces
    if put:
        entry["put"] = [list(item) for item in put]
    if removed:
        entry["removed"] = [list(item) for item in removed]
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def replay(document: dict[str, Any], line: bytes) -> str | None:
    """Apply one commit line to ``document``; what is wrong with the line, or None."""
    try:
        entry = json.loads(line)
    except RecursionError:
        return "is nested too deeply"
    except ValueError:
        return "is not valid JSON"
    if not isinstance(entry, dict):
        return "is not an object"
    namespaces = document["namespaces"]
    opened = entry.get("namespaces", {})
    if not isinstance(opened, dict):
        return "has namespaces that are not an object"
    for key, identity in opened.items():
        if not isinstance(identity, dict) or not all(
            isinstance(value, str) for value in identity.values()
        ):
            return f"has a namespace {key} whose identity is not text"
        namespaces.setdefault(key, {**identity, "resources": {}})
    touched: set[str] = set()
    for item in entry.get("put", []):
        if not (isinstance(item, list) and len(item) == 4 and _names(item[:3])):
            return "has a put that is not [namespace, kind, id, record]"
        key, kind, resource_id, record = item
        problem = check_items(f"put → {key} → {kind}", kind, {resource_id: record})
        if problem:
            return f"is damaged: {problem}"
        namespace = namespaces.get(key)
        if namespace is None:
            return f"puts into the namespace {key}, which it never opened"
        namespace["resources"].setdefault(kind, {})[resource_id] = record
        touched.add(key)
    for item in entry.get("removed", []):
        if not (isinstance(item, list) and len(item) == 3 and _names(item)):
            return "has a removal that is not [namespace, kind, id]"
        key, kind, resource_id = item
        namespace = namespaces.get(key)
        if namespace is not None:
            namespace["resources"].get(kind, {}).pop(resource_id, None)
            touched.add(key)
    for key in touched | set(opened):
        close_namespace(document, key)
    return None


def close_namespace(document: dict[str, Any], key: str) -> None:
    """Drop a namespace's empty kinds, and the namespace itself once it holds nothing."""
    namespace = document["namespaces"].get(key)
    if namespace is None:
        return
    resources = namespace["resources"]
    for kind in [kind for kind, items in resources.items() if not items]:
        del resources[kind]
    if not resources:
        del document["namespaces"][key]


def _names(values: list[Any]) -> bool:
    return all(isinstance(value, str) for value in values)


def copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars): several times faster than deepcopy."""
    if type(value) is dict:
        return {key: copy(item) for key, item in value.items()}
    if type(value) is list:
        return [copy(item) for item in value]
    return value
