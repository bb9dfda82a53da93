"""The Device Shadow service's MQTT topics, answered from moto's shadow store.

A device publishes to ``$aws/things/<thing>/shadow[/name/<shadow>]/update|get|delete``; IoT Core
answers on ``.../accepted`` or ``.../rejected`` (and, for an accepted update, ``.../update/delta``
while desired and reported differ, and ``.../update/documents``). The documents are moto's
(``moto.iotdata``), read and written under ``MOTO_LOCK``, so ``aws iot-data get-thing-shadow``
against the sandbox's AWS port shows what MQTT wrote, and the other way round.

The request is checked as IoT Core checks it, with its error messages (docs: "Device Shadow error
messages"), before moto sees it: moto's own messages differ, and moto takes a ``"desired": null``
without clearing the section. The answers carry moto's ``version``, ``timestamp`` and
``metadata`` and echo the request's ``clientToken``.

moto keeps a shadow on its registry thing, so a shadow needs a registered thing here (rejected
404 "Thing not found" otherwise); IoT Core does not tie shadows to the registry. moto is
imported only when a request is answered.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "$aws/things/"
OPERATIONS = ("update", "get", "delete")
# What IoT Core publishes in answer; clients may subscribe to these, not publish to them.
ANSWERS = {
    "update": ("accepted", "rejected", "delta", "documents"),
    "get": ("accepted", "rejected"),
    "delete": ("accepted", "rejected"),
}
THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
SHADOW_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,64}$")
MAX_CLIENT_TOKEN_BYTES = 64
MAX_DEPTH = 6  # levels of nesting under desired or reported
SERVICE_CLIENT = "device-shadow"  # who publishes the answers, for the rules engine's log


@dataclass(frozen=True)
class ShadowTopic:
    """A shadow request topic, taken apart."""

    thing: str
    shadow: str | None  # None: the classic (unnamed) shadow
    operation: str

    @property
    def prefix(self) -> str:
        named = f"/name/{self.shadow}" if self.shadow is not None else ""
        return f"{PREFIX}{self.thing}/shadow{named}"

    def answer(self, kind: str) -> str:
        return f"{self.prefix}/{self.operation}/{kind}"


def request_topic(topic: str) -> ShadowTopic | None:
    """The shadow request a topic is (update, get or delete), or None."""
    levels = topic.split("/")
    if levels[:2] != ["$aws", "things"] or len(levels) < 5 or levels[3] != "shadow":
        return None
    thing = levels[2]
    if not THING_NAME.match(thing):
        return None
    if len(levels) == 5 and levels[4] in OPERATIONS:
        return ShadowTopic(thing, None, levels[4])
    named = len(levels) == 7 and levels[4] == "name" and SHADOW_NAME.match(levels[5])
    if named and levels[6] in OPERATIONS:
        return ShadowTopic(thing, levels[5], levels[6])
    return None


def answer_topic(topic: str) -> bool:
    """Is this a topic the shadow service publishes its answers on?"""
    head, _, kind = topic.rpartition("/")
    request = request_topic(head)
    return request is not None and kind in ANSWERS[request.operation]


def shadow_filter(topic_filter: str) -> bool:
    """Could this filter only match shadow topics (``$aws/things/<thing or +>/shadow/...``)?"""
    levels = topic_filter.split("/")
    return (
        levels[:2] == ["$aws", "things"]
        and len(levels) >= 4
        and levels[2] != "#"
        and levels[3] == "shadow"
    )


class Rejected(Exception):
    """A request IoT Core would answer on ``.../rejected`` with this code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def answer(
    request: ShadowTopic, payload: bytes, account: str, region: str
) -> list[tuple[str, bytes]]:
    """The messages IoT Core publishes in answer to a request, in order: (topic, payload)."""
    token: Any = None
    try:
        document = _document(payload, request.operation)
        token = document.get("clientToken")
        if token is not None and (
            not isinstance(token, str) or len(token.encode()) > MAX_CLIENT_TOKEN_BYTES
        ):
            token = None
            raise Rejected(400, "Invalid clientToken")
        messages = _apply(request, document, account, region)
    except Rejected as refused:
        body: dict[str, Any] = {
            "code": refused.code,
            "message": refused.message,
            "timestamp": int(time.time()),
        }
        messages = [(request.answer("rejected"), body)]
    if token is not None:
        for _, body in messages:
            body["clientToken"] = token
    return [(topic, json.dumps(body).encode()) for topic, body in messages]


def _document(payload: bytes, operation: str) -> dict[str, Any]:
    """The request's JSON object; get and delete may come with an empty payload."""
    if not payload.strip() and operation != "update":
        return {}
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "Invalid JSON") from None
    if not isinstance(document, dict):
        raise Rejected(400, "Invalid JSON")
    return document


def _validate_update(document: dict[str, Any]) -> None:
    if "state" not in document:
        raise Rejected(400, "Missing required node: state")
    state = document["state"]
    if state is not None and not isinstance(state, dict):
        raise Rejected(400, "State node must be an object")
    for key, value in (state or {}).items():
        if key not in ("desired", "reported"):
            raise Rejected(400, f"State contains an invalid node: '{key}'")
        if value is not None and not isinstance(value, dict):
            raise Rejected(400, f"{key.capitalize()} node must be an object")
        if _depth(value) > MAX_DEPTH:
            raise Rejected(400, f"JSON contains too many levels of nesting; maximum is {MAX_DEPTH}")
    version = document.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise Rejected(400, "Invalid version")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return max((1 + _depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return max((_depth(item) for item in value), default=0)
    return 0


def _apply(
    request: ShadowTopic, document: dict[str, Any], account: str, region: str
) -> list[tuple[str, dict[str, Any]]]:
    from moto.iotdata.models import iotdata_backends

    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    if request.operation == "update":
        _validate_update(document)
    with MOTO_LOCK:
        backend = iotdata_backends[account][region]
        thing = _thing(backend, request.thing)
        current = thing.thing_shadows.get(request.shadow)
        live = current is not None and not current.deleted
        if request.operation == "get":
            if not live:
                raise Rejected(404, _no_shadow(request))
            return [(request.answer("accepted"), current.to_dict())]
        if request.operation == "delete":
            if not live:
                raise Rejected(404, _no_shadow(request))
            deleted = backend.delete_thing_shadow(request.thing, request.shadow)
            return [(request.answer("accepted"), deleted.to_dict())]
        return _update(request, backend, thing, current if live else None, document)


def _update(
    request: ShadowTopic,
    backend: Any,
    thing: Any,
    previous: Any,
    document: dict[str, Any],
) -> list[tuple[str, dict[str, Any]]]:
    """moto's update, then IoT Core's three answers (accepted, delta if any, documents)."""
    expected = document.get("version")
    stored = thing.thing_shadows.get(request.shadow)
    if expected is not None and (stored.version if stored else 0) != expected:
        raise Rejected(409, "Version conflict")
    before = previous.to_dict(include_delta=False) if previous is not None else None
    request_payload = {key: value for key, value in document.items() if key != "version"}
    shadow = backend.update_thing_shadow(request.thing, json.dumps(request_payload), request.shadow)
    state = document["state"] or {}
    for section in ("desired", "reported"):
        if section in state and state[section] is None:  # IoT Core: null clears the section
            setattr(shadow, section, None)
            setattr(shadow, f"metadata_{section}", None)
    after = shadow.to_dict(include_delta=False)
    messages = [(request.answer("accepted"), shadow.to_response_dict())]
    delta = shadow.to_dict()["state"].get("delta")
    if delta:
        messages.append(
            (
                request.answer("delta"),
                {
                    "version": shadow.version,
                    "timestamp": shadow.timestamp,
                    "state": delta,
                    "metadata": _restricted(shadow.metadata_desired or {}, delta),
                },
            )
        )
    documents: dict[str, Any] = {}
    if before is not None:
        documents["previous"] = {key: before[key] for key in ("state", "metadata", "version")}
    documents["current"] = {key: after[key] for key in ("state", "metadata", "version")}
    documents["timestamp"] = shadow.timestamp
    messages.append((request.answer("documents"), documents))
    return messages


def _restricted(metadata: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """The metadata of the fields in the delta only."""
    kept = {}
    for key, value in delta.items():
        if key not in metadata:
            continue
        inner = metadata[key]
        if isinstance(value, dict) and isinstance(inner, dict) and "timestamp" not in inner:
            kept[key] = _restricted(inner, value)
        else:
            kept[key] = inner
    return kept


def _thing(backend: Any, name: str) -> Any:
    from moto.iot.exceptions import ResourceNotFoundException

    try:
        return backend.iot_backend.describe_thing(name)
    except ResourceNotFoundException:
        raise Rejected(404, "Thing not found") from None


def _no_shadow(request: ShadowTopic) -> str:
    return f"No shadow exists with name: '{request.shadow or request.thing}'"
