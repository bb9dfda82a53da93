"""What a registry document must look like, checked whole before anything reads or changes it.

A hand-edited or damaged registry is refused with the place that is wrong (``namespaces → sandbox
→ resources → things is a list``), never half-written and never silently replaced: ``clean`` acts
on what it says. Unknown kinds and unknown fields are allowed (a later iotbutton may add them);
the fields the code relies on must have the types it relies on.
"""

from __future__ import annotations

from typing import Any

from iotbutton_cli.registry import kinds

# kind -> {field: (allowed types, required)}
Field = tuple[tuple[type, ...], bool]
TEXT: tuple[type, ...] = (str,)
OPTIONAL_TEXT: tuple[type, ...] = (str, type(None))
FLAG: tuple[type, ...] = (bool, type(None))

FIELDS: dict[str, dict[str, Field]] = {
    kinds.THINGS: {
        "arn": (TEXT, True),
        "certificate": (OPTIONAL_TEXT, False),
        "thing_type": (OPTIONAL_TEXT, False),
        "pending": (FLAG, False),
    },
    kinds.CERTIFICATES: {
        "arn": (TEXT, True),
        "thing": (OPTIONAL_TEXT, False),
        "role": (OPTIONAL_TEXT, False),
        "status": (OPTIONAL_TEXT, False),
        "policies": ((list,), False),
        "files": ((dict,), False),
        "thing_attached": (FLAG, False),
    },
    kinds.CERTIFICATE_REQUESTS: {
        "since": (TEXT, True),
        "until": (OPTIONAL_TEXT, False),
        "thing": (OPTIONAL_TEXT, False),
        "role": (OPTIONAL_TEXT, False),
        "pid": ((int,), False),
        "host": (OPTIONAL_TEXT, False),
        "key_file": (OPTIONAL_TEXT, False),
        "public_key_sha256": (OPTIONAL_TEXT, False),
    },
    kinds.LEFTOVER_FILES: {"reason": (OPTIONAL_TEXT, False)},
    kinds.POLICIES: {"arn": (TEXT, True), "pending": (FLAG, False)},
    kinds.THING_TYPES: {"arn": (TEXT, True), "pending": (FLAG, False)},
    kinds.ROLES: {"arn": (TEXT, True), "inline_policies": ((list,), False)},
    kinds.FUNCTIONS: {"arn": (TEXT, True)},
    kinds.BUCKETS: {"arn": (TEXT, True), "objects": ((list,), False)},
    kinds.TOPIC_RULES: {"arn": (TEXT, True), "function": (OPTIONAL_TEXT, False)},
    kinds.LAMBDA_PERMISSIONS: {"function": (TEXT, True), "rule": (OPTIONAL_TEXT, False)},
    kinds.TOPICS: {"arn": (TEXT, True), "subscriptions": ((list,), False)},
    kinds.METRIC_ALARMS: {"arn": (TEXT, True)},
    kinds.SCHEDULES: {"arn": (TEXT, True), "group": (TEXT, False)},
    kinds.SCHEDULE_GROUPS: {"arn": (TEXT, True)},
}
KEY_FILE_NAMES = {"certificate", "private_key", "public_key"}
DEVICE_KEY_FILE_NAMES = {"certificate", "public_key"}  # a CSR's certificate: the key stays there
STRING_LISTS = {
    (kinds.CERTIFICATES, "policies"),
    (kinds.ROLES, "inline_policies"),
    (kinds.BUCKETS, "objects"),
    (kinds.TOPICS, "subscriptions"),
}


def check_document(document: dict[str, Any]) -> str | None:
    """What is wrong with ``document`` (a migrated registry), or None if nothing is."""
    namespaces = document.get("namespaces")
    if not isinstance(namespaces, dict):
        return f"namespaces is {_kind(namespaces)}, not an object"
    for key, namespace in namespaces.items():
        where = f"namespaces → {key}"
        if not isinstance(namespace, dict):
            return f"{where} is {_kind(namespace)}, not an object"
        resources = namespace.get("resources")
        if not isinstance(resources, dict):
            return f"{where} → resources is {_kind(resources)}, not an object"
        for kind, items in resources.items():
            problem = check_items(f"{where} → resources → {kind}", kind, items)
            if problem:
                return problem
    return None


def check_items(where: str, kind: str, items: Any) -> str | None:
    """What is wrong with one kind's records (``items``: id → record), or None."""
    if not isinstance(items, dict):
        return f"{where} is {_kind(items)}, not an object"
    fields = FIELDS.get(kind, {})
    for resource_id, record in items.items():
        place = f"{where} → {resource_id}"
        if not isinstance(record, dict):
            return f"{place} is {_kind(record)}, not an object"
        for name, (types, required) in fields.items():
            if name not in record:
                if required:
                    return f"{place} has no {name}"
                continue
            value = record[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                return f"{place} → {name} is {_kind(value)}"
            if (kind, name) in STRING_LISTS and not _all_text(value):
                return f"{place} → {name} holds something other than text"
        files = record.get("files") if kind == kinds.CERTIFICATES else None
        if files and (
            set(files) not in (KEY_FILE_NAMES, DEVICE_KEY_FILE_NAMES)
            or not all(isinstance(v, str) for v in files.values())
        ):
            return (
                f"{place} → files is not the certificate, private_key and public_key paths "
                "(or the certificate and public_key paths of a device's own key)"
            )
    return None


def _all_text(values: Any) -> bool:
    return all(isinstance(value, str) for value in values)


def _kind(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true or false",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
