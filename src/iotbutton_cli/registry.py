"""The per-user registry of everything iotbutton created, so that ``clean`` can remove all of it.

One JSON file, one namespace per AWS account and region (and one for the sandbox). Every change is
a transaction: take an OS file lock (plus a thread lock, for worker pools inside one process), read
the file, change it, write a temporary file in the same folder, fsync it and rename it over the old
one. So two ``iotbutton`` processes at once never lose an update, a crash never leaves half a file,
and a resource recorded the moment AWS confirms it survives whatever happens next.

A file that cannot be read or parsed is reported with its path and never replaced.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.paths import data_dir, ensure_private_dir, write_private_file

SCHEMA_VERSION = 1
REGISTRY_FILE = "registry.json"
LOCK_TIMEOUT_SECONDS = 30.0
# Work on one resource (provisioning one button) can take minutes when AWS throttles.
RESOURCE_LOCK_TIMEOUT_SECONDS = 600.0
RESOURCE_LOCK_STRIPES = 64

# Append-only: MIGRATIONS[n] turns a schema-n document into a schema-(n+1) one.
MIGRATIONS: list[Callable[[dict[str, Any]], dict[str, Any]]] = []

Record = dict[str, Any]


def default_path() -> Path:
    return data_dir() / REGISTRY_FILE


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_document() -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "namespaces": {}}


class Registry:
    """The registry file; all reads and writes go through :meth:`transaction` or :meth:`read`."""

    _thread_locks: dict[Path, threading.RLock] = {}
    _thread_locks_guard = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or default_path()).absolute()
        with self._thread_locks_guard:
            self._thread_lock = self._thread_locks.setdefault(self.path, threading.RLock())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import filelock

        ensure_private_dir(self.path.parent)
        lock = filelock.FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS)
        with self._thread_lock:
            try:
                lock.acquire()
            except filelock.Timeout as exc:
                raise IotButtonError(
                    "registry-locked",
                    f"The registry {self.path} stayed locked for {LOCK_TIMEOUT_SECONDS:.0f} s.",
                    "Another iotbutton command is running; wait for it, "
                    f"or remove {self.path}.lock if none is.",
                ) from exc
            try:
                yield
            finally:
                lock.release()

    @contextmanager
    def resource_lock(
        self, name: str, timeout: float = RESOURCE_LOCK_TIMEOUT_SECONDS
    ) -> Iterator[None]:
        """Hold a lock on one resource (by name) across processes and threads, for multi-step work
        that must not run twice at once, such as provisioning the same button from two terminals.

        The registry lock guards single writes; this one spans a whole sequence of AWS calls and
        writes. Names hash onto a fixed set of lock files (``locks/resource-NN.lock``), so the
        folder never grows; two names sharing a file only wait for each other. The OS releases
        the lock if the process dies.
        """
        import filelock

        stripe = int(hashlib.sha256(name.encode()).hexdigest(), 16) % RESOURCE_LOCK_STRIPES
        folder = ensure_private_dir(self.path.parent / "locks")
        lock = filelock.FileLock(str(folder / f"resource-{stripe:02d}.lock"), timeout=timeout)
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise IotButtonError(
                "resource-locked",
                f"Another iotbutton command has been working on {name} for {timeout:.0f} s.",
                "Wait for it to finish, then run this command again.",
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def read(self) -> dict[str, Any]:
        """A consistent snapshot of the whole document."""
        with self._locked():
            return self._load()

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the document for changing; it is written back atomically if the block succeeds."""
        with self._locked():
            document = self._load()
            before = json.dumps(document, sort_keys=True)
            yield document
            if json.dumps(document, sort_keys=True) != before:
                self._save(document)

    def namespace(self, key: str, **identity: str) -> Namespace:
        return Namespace(self, key, identity)

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty_document()
        except OSError as exc:
            raise IotButtonError(
                "registry-unreadable",
                f"Cannot read the registry {self.path}: {exc.strerror}.",
                "Check the file's permissions; iotbutton will not replace it.",
            ) from exc
        try:
            document = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            raise IotButtonError(
                "registry-corrupt",
                f"The registry {self.path} is not valid JSON (line {line}).",
                "Repair it or move it aside (then `iotbutton clean --discover` can find "
                "what iotbutton made); it is never overwritten.",
            ) from exc
        return self._migrate(document)

    def _migrate(self, document: Any) -> dict[str, Any]:
        if not isinstance(document, dict) or not isinstance(document.get("schema"), int):
            raise IotButtonError(
                "registry-foreign",
                f"{self.path} is not an iotbutton registry (no schema version).",
                "Move the file aside or set IOTBUTTON_HOME to another folder.",
            )
        version = document["schema"]
        if version > SCHEMA_VERSION:
            raise IotButtonError(
                "registry-newer",
                f"The registry {self.path} has schema {version}; this iotbutton knows "
                f"up to {SCHEMA_VERSION}.",
                "Upgrade iotbutton (pipx upgrade iotbutton-cli).",
            )
        while version < SCHEMA_VERSION:
            document = MIGRATIONS[version - 1](document)
            version += 1
            document["schema"] = version
        if not isinstance(document.get("namespaces"), dict):
            raise IotButtonError(
                "registry-corrupt",
                f"The registry {self.path} has no 'namespaces' object.",
                "Repair it or move it aside; it is never overwritten.",
            )
        return document

    def _save(self, document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        write_private_file(self.path, text)


class Namespace:
    """One account+region's (or the sandbox's) share of the registry.

    Resources are grouped by kind (``things``, ``certificates``, ``policies``...) and keyed by
    their id. Each method is its own transaction, so callers record a resource right after AWS
    confirms it.
    """

    def __init__(self, registry: Registry, key: str, identity: dict[str, str]) -> None:
        self.registry = registry
        self.key = key
        self.identity = identity

    @contextmanager
    def transaction(self) -> Iterator[dict[str, dict[str, Record]]]:
        """Yield this namespace's resources by kind, creating the namespace on first write."""
        with self.registry.transaction() as document:
            namespace = document["namespaces"].get(self.key)
            fresh = namespace is None
            if fresh:
                namespace = {**self.identity, "resources": {}}
            resources = namespace["resources"]
            yield resources
            for kind in [kind for kind, items in resources.items() if not items]:
                del resources[kind]
            if resources:
                document["namespaces"][self.key] = namespace
            elif not fresh:
                del document["namespaces"][self.key]

    def snapshot(self) -> dict[str, dict[str, Record]]:
        namespace = self.registry.read()["namespaces"].get(self.key)
        return namespace["resources"] if namespace else {}

    def recorded_identity(self) -> dict[str, str]:
        namespace = self.registry.read()["namespaces"].get(self.key) or {}
        return {key: value for key, value in namespace.items() if key != "resources"}

    def items(self, kind: str) -> dict[str, Record]:
        return self.snapshot().get(kind, {})

    def get(self, kind: str, resource_id: str) -> Record | None:
        return self.items(kind).get(resource_id)

    def put(self, kind: str, resource_id: str, record: Record) -> Record:
        """Record a resource (merging into an existing record of the same id)."""
        with self.transaction() as resources:
            merged = {**resources.get(kind, {}).get(resource_id, {}), **record}
            merged.setdefault("recorded", utc_now())
            resources.setdefault(kind, {})[resource_id] = merged
            return merged

    def update(self, kind: str, resource_id: str, **fields: Any) -> None:
        """Change fields of a recorded resource; a resource no longer recorded stays gone."""
        with self.transaction() as resources:
            record = resources.get(kind, {}).get(resource_id)
            if record is not None:
                record.update(fields)

    def remove(self, kind: str, resource_id: str) -> None:
        with self.transaction() as resources:
            resources.get(kind, {}).pop(resource_id, None)

    def lock(self, kind: str, resource_id: str) -> AbstractContextManager[None]:
        """Serialize multi-step work on one resource across processes (see ``resource_lock``)."""
        return self.registry.resource_lock(f"{self.key} {kind} {resource_id}")

    def is_empty(self) -> bool:
        return not any(self.snapshot().values())
