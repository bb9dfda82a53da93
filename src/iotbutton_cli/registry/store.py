"""The per-user registry of everything iotbutton created, so that ``clean`` can remove all of it.

One JSON file, one namespace per AWS account and region (and one for the sandbox). Every change is
a transaction: take an OS file lock (plus a thread lock, for worker pools inside one process), read
the file, change it, write a temporary file in the same folder, fsync it and rename it over the old
one. So two ``iotbutton`` processes at once never lose an update, a crash never leaves half a file,
and a resource recorded the moment AWS confirms it survives whatever happens next.

Bulk work records a lot (about eight changes per button), so two things keep the registry off the
critical path: reads take no lock (the file is only ever replaced whole, by a rename), and changes
made with :meth:`Registry.apply` are *group-committed*: while one thread writes, the changes other
threads queue are applied together in the next single write, and each caller returns only once
its own change is on disk.

A file that cannot be read, parsed or that has the wrong shape is reported with its path and
never replaced (nor half-written). A registry names what ``clean`` deletes, so a file that another
user owns or could have written is refused outright, as ssh refuses a loose ``authorized_keys``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.paths import (
    NOFOLLOW,
    WRITABLE_BY_OTHERS,
    data_dir,
    ensure_private_dir,
    sync_folder,
    write_private_file,
)
from iotbutton_cli.registry.shape import check_document

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

    # Shared by every Registry object of one file in this process: the lock, and the queue of
    # changes waiting for the next group commit.
    _shared: dict[Path, tuple[threading.RLock, list[tuple[Callable[[dict], Any], Future]]]] = {}
    _shared_guard = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or default_path()).absolute()
        with self._shared_guard:
            self._thread_lock, self._queue = self._shared.setdefault(
                self.path, (threading.RLock(), [])
            )
        self.changed = False  # a change was asked of this object (see AppContext.began_changes)

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

        lock = self._resource_file_lock(name, timeout)
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

    @contextmanager
    def resource_lock_if_free(self, name: str) -> Iterator[bool]:
        """The lock of :meth:`resource_lock` if no one holds it now (True), without waiting;
        False while another command works on ``name`` (or on a name sharing its file)."""
        import filelock

        lock = self._resource_file_lock(name, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def _resource_file_lock(self, name: str, timeout: float) -> Any:
        import hashlib

        import filelock

        stripe = int(hashlib.sha256(name.encode()).hexdigest(), 16) % RESOURCE_LOCK_STRIPES
        folder = ensure_private_dir(self.path.parent / "locks")
        return filelock.FileLock(str(folder / f"resource-{stripe:02d}.lock"), timeout=timeout)

    def read(self) -> dict[str, Any]:
        """A consistent snapshot of the whole document.

        No lock on POSIX: writers replace the file with a rename, so a reader sees the old
        document or the new one, never half of one. (Windows cannot rename over an open file.)
        """
        if os.name == "posix":
            return self._load()
        with self._locked():
            return self._load()

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the document for changing; it is written back atomically if the block succeeds."""
        with self._locked():
            document = self._load()
            before = _fingerprint(document)
            yield document
            changed = _fingerprint(document) != before
            if changed:
                self._save(document)
        if changed:
            sync_folder(self.path.parent)

    def apply(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """Run ``change`` on the document and write it back; returns what ``change`` returns.

        Group commit: the change is queued, and whichever thread holds the lock next applies
        every queued change in one read-modify-write, makes it durable, and hands each caller
        its result. ``change`` may run on another thread, so it must only touch the document it
        is given. If it raises, its own caller gets the exception and the other changes of the
        batch are still written.
        """
        self.changed = True
        entry: tuple[Callable[[dict[str, Any]], Any], Future[Any]] = (change, Future())
        with self._shared_guard:
            self._queue.append(entry)
        batch: list[tuple[Callable[[dict[str, Any]], Any], Future[Any]]] = []
        try:
            with self._locked():
                with self._shared_guard:
                    batch = list(self._queue)
                    self._queue.clear()
                saved, outcomes = self._commit(batch) if batch else (False, [])
        except BaseException as exc:  # the lock timed out, or Ctrl-C while committing
            with self._shared_guard:
                queued = entry in self._queue
                if queued:
                    self._queue.remove(entry)
            for _change, future in batch:  # nobody else will answer them now
                if not future.done():
                    future.set_exception(exc)
            if queued or entry in batch:
                raise
            return entry[1].result()  # another thread took it: its outcome stands
        if saved:
            # The rename is made durable outside the lock (the next writer need not wait for
            # it), but before any change of the batch counts as recorded.
            sync_folder(self.path.parent)
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        return entry[1].result()

    def _commit(
        self, batch: list[tuple[Callable[[dict], Any], Future]]
    ) -> tuple[bool, list[tuple[Future, Any, BaseException | None]]]:
        """Apply ``batch`` in one read-modify-write: whether the file was written, and each
        change's outcome (an error reading or writing the file is every change's outcome)."""
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        try:
            document = self._load()
            before = _fingerprint(document)
            for change, future in batch:
                try:
                    outcomes.append((future, change(document), None))
                except Exception as exc:
                    outcomes.append((future, None, exc))
            if _fingerprint(document) == before:
                return False, outcomes
            self._save(document)
        except Exception as exc:
            return False, [(future, None, exc) for _change, future in batch]
        return True, outcomes

    def namespace(self, key: str, **identity: str) -> Namespace:
        return Namespace(self, key, identity)

    def _load(self) -> dict[str, Any]:
        text = self._read_text()
        if text is None:
            return empty_document()
        try:
            document = json.loads(text)
        except RecursionError:
            raise self._corrupt("is nested too deeply to be a registry") from None
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            raise self._corrupt(f"is not valid JSON (line {line})") from exc
        return self._migrate(document)

    def _read_text(self) -> str | None:
        """The file's text (None: there is none yet), if the file is the user's own."""
        try:
            fd = os.open(self.path, os.O_RDONLY | NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IotButtonError(
                    "registry-unsafe",
                    f"The registry {self.path} is a symbolic link; iotbutton reads only a file "
                    "of its own there.",
                    "Replace the link with the file it points to.",
                ) from None
            raise IotButtonError(
                "registry-unreadable",
                f"Cannot read the registry {self.path}: {exc.strerror}.",
                "Check the file's permissions; iotbutton will not replace it.",
            ) from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise IotButtonError(
                "registry-unreadable",
                f"Cannot read the registry {self.path}: it is not a file.",
                "Move what is there aside; iotbutton will not replace it.",
            )
        with os.fdopen(fd, "rb") as handle:
            if info.st_uid != os.geteuid() or info.st_mode & WRITABLE_BY_OTHERS:
                raise IotButtonError(
                    "registry-unsafe",
                    f"The registry {self.path} "
                    + (
                        "belongs to another user"
                        if info.st_uid != os.geteuid()
                        else f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
                    )
                    + ", so it cannot be trusted to say what iotbutton made.",
                    "If it is yours and unchanged, `chmod 600` it (and `chown` it to yourself); "
                    "otherwise move it aside and run `iotbutton clean --discover`.",
                )
            data = handle.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise self._corrupt(f"is not UTF-8 text (line {line})") from None

    def _corrupt(self, problem: str) -> IotButtonError:
        return IotButtonError(
            "registry-corrupt",
            f"The registry {self.path} {problem}.",
            "Repair it or move it aside (then `iotbutton clean --discover` can find what "
            "iotbutton made); it is never overwritten.",
        )

    def _migrate(self, document: Any) -> dict[str, Any]:
        schema = document.get("schema") if isinstance(document, dict) else None
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise IotButtonError(
                "registry-foreign",
                f"{self.path} is not an iotbutton registry (no schema version).",
                "Move the file aside or set IOTBUTTON_HOME to another folder.",
            )
        if schema < 1:
            raise self._corrupt(f"has schema {schema}, which no iotbutton ever wrote")
        if schema > SCHEMA_VERSION:
            raise IotButtonError(
                "registry-newer",
                f"The registry {self.path} has schema {schema}; this iotbutton knows "
                f"up to {SCHEMA_VERSION}.",
                "Upgrade iotbutton (pipx upgrade iotbutton-cli).",
            )
        assert isinstance(document, dict)
        version = schema
        while version < SCHEMA_VERSION:
            document = MIGRATIONS[version - 1](document)
            version += 1
            document["schema"] = version
        problem = check_document(document)
        if problem:
            raise self._corrupt(f"is damaged: {problem}")
        return document

    def check_writable(self) -> None:
        """Fail now, before any AWS call, if the registry could not record what is made."""
        ensure_private_dir(self.path.parent)
        probe = self.path.with_name(f".write-check.{os.getpid()}.{threading.get_ident()}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise IotButtonError(
                "registry-read-only",
                f"Cannot write in {self.path.parent}: {exc.strerror}; nothing would record "
                "what this command makes, so it makes nothing.",
                "Make the folder writable, or set IOTBUTTON_HOME to a writable folder.",
            ) from None

    def _save(self, document: dict[str, Any]) -> None:
        """Replace the file (the caller then makes the rename durable with ``sync_folder``)."""
        # Compact: json's C encoder only serves indent=None, and is five times faster.
        text = json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"
        write_private_file(self.path, text, flush_folder=False)


def _fingerprint(document: dict[str, Any]) -> str:
    """Tells whether a transaction changed anything (then the file is left alone)."""
    return json.dumps(document, sort_keys=True)


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
            namespace = self._open(document)
            yield namespace["resources"]
            self._close(document, namespace)

    def apply(self, change: Callable[[dict[str, dict[str, Record]]], Any]) -> Any:
        """Run ``change`` on this namespace's resources by kind, group-committed (see
        :meth:`Registry.apply`): the fast way to record, for work done by many threads."""

        def in_namespace(document: dict[str, Any]) -> Any:
            namespace = self._open(document)
            result = change(namespace["resources"])
            self._close(document, namespace)
            return result

        return self.registry.apply(in_namespace)

    def _open(self, document: dict[str, Any]) -> dict[str, Any]:
        """This namespace in ``document`` (a new, empty one if it has none yet)."""
        namespace: dict[str, Any] = document["namespaces"].get(self.key) or {
            **self.identity,
            "resources": {},
        }
        return namespace

    def _close(self, document: dict[str, Any], namespace: dict[str, Any]) -> None:
        """Drop empty kinds, and the namespace itself once it holds nothing."""
        resources = namespace["resources"]
        for kind in [kind for kind, items in resources.items() if not items]:
            del resources[kind]
        if resources:
            document["namespaces"][self.key] = namespace
        else:
            document["namespaces"].pop(self.key, None)

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

        def change(resources: dict[str, dict[str, Record]]) -> Record:
            merged = {**resources.get(kind, {}).get(resource_id, {}), **record}
            merged.setdefault("recorded", utc_now())
            resources.setdefault(kind, {})[resource_id] = merged
            return merged

        return self.apply(change)

    def update(self, kind: str, resource_id: str, **fields: Any) -> None:
        """Change fields of a recorded resource; a resource no longer recorded stays gone."""

        def change(resources: dict[str, dict[str, Record]]) -> None:
            record = resources.get(kind, {}).get(resource_id)
            if record is not None:
                record.update(fields)

        self.apply(change)

    def confirm(self, kind: str, resource_id: str, record: Record) -> Record:
        """Record a resource AWS has confirmed: like :meth:`put`, and no longer pending."""

        def change(resources: dict[str, dict[str, Record]]) -> Record:
            merged = {**resources.get(kind, {}).get(resource_id, {}), **record}
            merged.pop("pending", None)
            merged.setdefault("recorded", utc_now())
            resources.setdefault(kind, {})[resource_id] = merged
            return merged

        return self.apply(change)

    def forget_pending(self, kind: str, resource_id: str) -> None:
        """Drop a pending record whose resource turned out to be someone else's."""

        def change(resources: dict[str, dict[str, Record]]) -> None:
            if resources.get(kind, {}).get(resource_id, {}).get("pending"):
                del resources[kind][resource_id]

        self.apply(change)

    def remove(self, kind: str, resource_id: str) -> None:
        self.apply(lambda resources: resources.get(kind, {}).pop(resource_id, None))

    def lock(self, kind: str, resource_id: str) -> AbstractContextManager[None]:
        """Serialize multi-step work on one resource across processes (see ``resource_lock``)."""
        return self.registry.resource_lock(f"{self.key} {kind} {resource_id}")

    def lock_if_free(self, kind: str, resource_id: str) -> AbstractContextManager[bool]:
        """:meth:`lock` if no other command holds it now (True), else False at once."""
        return self.registry.resource_lock_if_free(f"{self.key} {kind} {resource_id}")
