"""The per-user registry of everything iotbutton created, so that ``clean`` can remove all of it.

One JSON file, one namespace per AWS account and region (and one for the sandbox). Every change is
a transaction under an OS file lock (plus a thread lock, for worker pools inside one process), and
each caller returns only once its change is on disk: a resource recorded the moment AWS confirms
it survives whatever happens next, and two ``iotbutton`` processes at once never lose an update.

Bulk work records a lot (about eight changes per button, thousands of buttons), so the cost of a
change must not grow with the registry. A process keeps the document in memory, and a change is
*appended* to ``registry.journal`` (one fsynced line per commit, see
:mod:`~iotbutton_cli.registry.journal`) rather than rewriting ``registry.json``; changes that
worker threads queue while one writes go into the same line (group commit). When the command
ends, :meth:`Registry.settle_all` writes ``registry.json`` whole (a temporary file, fsync,
rename) and removes the journal, so between commands the registry is one file a person can read.
Other processes pick up the journal's new lines as they go.

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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
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
from iotbutton_cli.registry import journal
from iotbutton_cli.registry.shape import check_document
from iotbutton_cli.registry.tracking import Touched, TrackedKinds

SCHEMA_VERSION = 2
REGISTRY_FILE = "registry.json"
LOCK_TIMEOUT_SECONDS = 30.0
# Work on one resource (provisioning one button) can take minutes when AWS throttles.
RESOURCE_LOCK_TIMEOUT_SECONDS = 600.0
RESOURCE_LOCK_STRIPES = 64


def _schema_1_to_2(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 adds the generation the journal continues (an older iotbutton would not read
    the journal, so it must not take a registry that may have one)."""
    return {**document, "generation": 0}


# Append-only: MIGRATIONS[n] turns a schema-n document into a schema-(n+1) one.
MIGRATIONS: list[Callable[[dict[str, Any]], dict[str, Any]]] = [_schema_1_to_2]

Record = dict[str, Any]
Change = Callable[[Any], Any]  # gets a namespace's resources (kind → id → record)
Queued = tuple[str, dict[str, str], Change, Future]


def default_path() -> Path:
    return data_dir() / REGISTRY_FILE


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_document() -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "generation": 0, "namespaces": {}}


@dataclass
class _Cache:
    """The document as this process last saw it, and where on disk that view came from.

    The open descriptors pin the files' inodes, so an inode number seen again is the same file,
    never a new one that happened to get the old number."""

    document: dict[str, Any]
    snapshot_fd: int | None
    snapshot_key: tuple[int, ...] | None
    journal_fd: int | None = None
    journal_key: tuple[int, ...] | None = None
    journal_stale: bool = False  # an older generation's journal: already in registry.json
    offset: int = 0  # bytes of the journal replayed (header included)
    lines: int = 0  # journal lines replayed (header included)
    torn: bool = False  # bytes after ``offset`` that do not (yet) end in a newline

    def close(self) -> None:
        for fd in (self.snapshot_fd, self.journal_fd):
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self.snapshot_fd = self.journal_fd = None

    @property
    def has_changes(self) -> bool:
        """Whether the journal holds a commit that registry.json does not."""
        return self.journal_fd is not None and not self.journal_stale and self.lines > 1


class _Shared:
    """What every Registry object of one file in this process shares: the lock, the changes
    waiting for the next group commit, and the document in memory."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.queue: list[Queued] = []
        self.cache: _Cache | None = None


class _JournalAhead(Exception):
    """The journal continues a newer registry.json than the one just read: read again."""


class Registry:
    """The registry file; all reads and writes go through :meth:`transaction`, :meth:`apply`
    or :meth:`read`, and :meth:`settle_all` writes it whole when a command ends."""

    _shared: dict[Path, _Shared] = {}
    _shared_guard = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or default_path()).absolute()
        self.journal_path = self.path.with_name(self.path.name + journal.JOURNAL_SUFFIX)
        with self._shared_guard:
            self._state = self._shared.setdefault(self.path, _Shared())
        self._thread_lock = self._state.lock
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

    # --- reading ------------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        """A consistent snapshot of the whole document (a copy: changing it changes nothing).

        No file lock on POSIX: registry.json is only ever replaced whole, by a rename, and the
        journal only grows by whole lines, so a reader sees a state some commit left, never
        half of one. (Windows cannot rename over an open file.)"""
        return self._reading(journal.copy)

    def _reading(self, view: Callable[[dict[str, Any]], Any]) -> Any:
        """``view`` of the current document, taken under the thread lock (it must copy what it
        returns: the document is this process's, shared by its threads)."""
        if os.name == "posix":
            with self._thread_lock:
                return view(self._refresh().document)
        with self._locked():
            return view(self._refresh().document)

    def _refresh(self) -> _Cache:
        """The cache, brought up to what is on disk now (the thread lock is held)."""
        for _attempt in range(50):
            try:
                return self._refreshed()
            except _JournalAhead:
                self._drop_cache()
                time.sleep(0.01)  # another process is between the two steps of a compaction
        raise self._corrupt_journal(
            "continues a newer registry.json than the one there",
            "Move registry.json.journal aside, then run `iotbutton clean --discover`.",
        )

    def _refreshed(self) -> _Cache:
        cache = self._state.cache
        snapshot_key = _key_of(self.path)
        journal_key = _key_of(self.journal_path, inode_only=True)
        if (
            cache is not None
            and cache.snapshot_key == snapshot_key
            and cache.journal_key in (None, journal_key)
        ):
            if cache.journal_key is None and journal_key is not None:
                self._open_journal(cache)
            elif cache.journal_fd is not None and not cache.journal_stale:
                self._replay_new_lines(cache)
            return cache
        self._drop_cache()
        cache = self._load_snapshot()
        self._state.cache = cache
        if journal_key is not None:
            self._open_journal(cache)
        return cache

    def _drop_cache(self) -> None:
        if self._state.cache is not None:
            self._state.cache.close()
            self._state.cache = None

    def _load_snapshot(self) -> _Cache:
        opened = self._open_checked(self.path)
        if opened is None:
            return _Cache(empty_document(), None, None)
        fd, info = opened
        try:
            data = _read_all(fd)
        except BaseException:
            os.close(fd)
            raise
        cache = _Cache({}, fd, _key(info))
        try:
            cache.document = self._parse(data)
        except BaseException:
            cache.close()
            raise
        return cache

    def _parse(self, data: bytes) -> dict[str, Any]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise self._corrupt(f"is not UTF-8 text (line {line})") from None
        try:
            document = json.loads(text)
        except RecursionError:
            raise self._corrupt("is nested too deeply to be a registry") from None
        except ValueError as exc:
            where = getattr(exc, "lineno", "?")
            raise self._corrupt(f"is not valid JSON (line {where})") from exc
        document = self._migrate(document)
        generation = document.get("generation")
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            raise self._corrupt("is damaged: generation is not a number of 0 or more")
        return document

    def _open_checked(
        self, path: Path, for_append: bool = False
    ) -> tuple[int, os.stat_result] | None:
        """A descriptor of ``path`` and its stat (None: there is no file), if it is a file of
        the user's own that no one else can write; ``for_append``: open for appending too,
        where the file system allows it."""
        try:
            try:
                flags = os.O_RDWR | os.O_APPEND if for_append else os.O_RDONLY
                fd = os.open(path, flags | NOFOLLOW)
            except OSError as exc:
                if not for_append or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                fd = os.open(path, os.O_RDONLY | NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IotButtonError(
                    "registry-unsafe",
                    f"The registry {path} is a symbolic link; iotbutton reads only a file "
                    "of its own there.",
                    "Replace the link with the file it points to.",
                ) from None
            raise IotButtonError(
                "registry-unreadable",
                f"Cannot read the registry {path}: {exc.strerror}.",
                "Check the file's permissions; iotbutton will not replace it.",
            ) from exc
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = IotButtonError(
                "registry-unreadable",
                f"Cannot read the registry {path}: it is not a file.",
                "Move what is there aside; iotbutton will not replace it.",
            )
        elif info.st_uid != os.geteuid() or info.st_mode & WRITABLE_BY_OTHERS:
            problem = IotButtonError(
                "registry-unsafe",
                f"The registry {path} "
                + (
                    "belongs to another user"
                    if info.st_uid != os.geteuid()
                    else f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
                )
                + ", so it cannot be trusted to say what iotbutton made.",
                "If it is yours and unchanged, `chmod 600` it (and `chown` it to yourself); "
                "otherwise move it aside and run `iotbutton clean --discover`.",
            )
        if problem is not None:
            os.close(fd)
            raise problem
        return fd, info

    def _open_journal(self, cache: _Cache) -> None:
        opened = self._open_checked(self.journal_path, for_append=True)
        if opened is None:  # removed since it was seen: a compaction, which the next read sees
            return
        cache.journal_fd, info = opened
        cache.journal_key = _key(info, inode_only=True)
        cache.offset = cache.lines = 0
        self._replay_new_lines(cache)

    def _replay_new_lines(self, cache: _Cache) -> None:
        assert cache.journal_fd is not None
        data = _read_all(cache.journal_fd, cache.offset)
        end = data.rfind(b"\n") + 1
        cache.torn = end < len(data)
        for line in data[:end].splitlines(keepends=True):
            if cache.lines == 0:
                generation = journal.read_header(line)
                if generation is None:
                    raise self._corrupt_journal("line 1 is not a journal header")
                current = cache.document["generation"]
                if generation > current:
                    raise _JournalAhead
                cache.journal_stale = generation < current
            elif cache.journal_stale:
                break
            else:
                problem = journal.replay(cache.document, line)
                if problem:
                    raise self._corrupt_journal(f"line {cache.lines + 1} {problem}")
            cache.offset += len(line)
            cache.lines += 1

    def _corrupt_journal(self, problem: str, hint: str | None = None) -> IotButtonError:
        return IotButtonError(
            "registry-corrupt",
            f"The registry journal {self.journal_path} {problem}.",
            hint
            or "Repair it or move it aside (then `iotbutton clean --discover` can find what "
            "iotbutton made); it is never overwritten.",
        )

    # --- changing -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the whole document for changing; if the block changes it, registry.json is
        rewritten (and any journal folded in). For rare, document-wide changes: bulk work uses
        :meth:`apply`, whose cost does not grow with the registry."""
        with self._locked():
            document = journal.copy(self._refresh().document)
            before = _fingerprint(document)
            yield document
            if _fingerprint(document) != before:
                self._compact(document)

    def apply(self, key: str, identity: dict[str, str], change: Change) -> Any:
        """Run ``change`` on namespace ``key``'s resources (kind → id → record), created with
        ``identity`` on first write, and journal what it changed; returns what ``change``
        returns.

        Group commit: the change is queued, and whichever thread holds the lock next applies
        every queued change and appends them as one journal line, fsynced, before any caller
        returns. ``change`` may run on another thread, so it must only touch the resources it
        is given. If it raises, its own caller gets the exception and the other changes of the
        batch are still written.
        """
        self.changed = True
        entry: Queued = (key, identity, change, Future())
        future = entry[3]
        with self._shared_guard:
            self._state.queue.append(entry)
        batch: list[Queued] = []
        try:
            with self._locked():
                with self._shared_guard:
                    batch = list(self._state.queue)
                    self._state.queue.clear()
                outcomes = self._commit(batch) if batch else []
        except BaseException as exc:  # the lock timed out, or Ctrl-C while committing
            with self._shared_guard:
                queued = entry in self._state.queue
                if queued:
                    self._state.queue.remove(entry)
            for *_rest, waiting in batch:  # nobody else will answer them now
                if not waiting.done():
                    waiting.set_exception(exc)
            if queued or entry in batch:
                raise
            return future.result()  # another thread took it: its outcome stands
        for waiting, result, error in outcomes:
            if error is None:
                waiting.set_result(result)
            else:
                waiting.set_exception(error)
        return future.result()

    def _commit(self, batch: list[Queued]) -> list[tuple[Future, Any, BaseException | None]]:
        """Apply ``batch`` to the document and append what it changed as one journal line;
        each change's outcome (an error reading or writing the registry is every change's)."""
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        try:
            cache = self._refresh()
            namespaces = cache.document["namespaces"]
            touched: dict[str, Touched] = {}
            opened: dict[str, dict[str, str]] = {}
            for key, identity, change, waiting in batch:
                if key not in namespaces:
                    namespaces[key] = {**identity, "resources": {}}
                    opened.setdefault(key, identity)
                resources = namespaces[key]["resources"]
                tracked = TrackedKinds(resources, touched.setdefault(key, Touched()))
                try:
                    outcomes.append((waiting, change(tracked), None))
                except Exception as exc:
                    outcomes.append((waiting, None, exc))
            put: list[tuple[str, str, str, Record]] = []
            removed: list[journal.Key] = []
            for key, seen in touched.items():
                puts, gone = seen.changes(namespaces[key]["resources"])
                put += [(key, kind, resource_id, record) for kind, resource_id, record in puts]
                removed += [(key, kind, resource_id) for kind, resource_id in gone]
                journal.close_namespace(cache.document, key)
            if put or removed:
                written = {key: opened[key] for key, *_rest in put if key in opened}
                self._append(cache, journal.commit_line(written, put, removed))
        except Exception as exc:
            self._drop_cache()  # memory may be ahead of the disk now: read it again
            return [(waiting, None, exc) for *_rest, waiting in batch]
        return outcomes

    def _append(self, cache: _Cache, line: bytes) -> None:
        """Append ``line`` to the journal and fsync it (the file lock is held)."""
        if cache.journal_fd is None or cache.journal_stale:
            if cache.journal_fd is not None:  # folded into registry.json already: start anew
                os.unlink(self.journal_path)
                os.close(cache.journal_fd)
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | NOFOLLOW
            cache.journal_fd = os.open(self.journal_path, flags, 0o600)
            cache.journal_key = _key(os.fstat(cache.journal_fd), inode_only=True)
            cache.journal_stale, cache.offset, cache.lines, cache.torn = False, 0, 0, False
            line = journal.header(cache.document["generation"]) + line
            new_file = True
        else:
            new_file = False
            if cache.torn:  # a write a crash cut short: it never counted, so cut it off
                os.ftruncate(cache.journal_fd, cache.offset)
                cache.torn = False
        _write_all(cache.journal_fd, line)
        os.fsync(cache.journal_fd)
        if new_file:
            sync_folder(self.path.parent)
        cache.offset += len(line)
        cache.lines += line.count(b"\n")

    def _compact(self, document: dict[str, Any] | None = None) -> None:
        """Write registry.json whole (``document``, or the journal folded in) as the next
        generation, then remove the journal (the file lock is held)."""
        cache = self._refresh()
        document = {**(cache.document if document is None else document)}
        document["generation"] = cache.document["generation"] + 1
        try:
            # Compact: json's C encoder only serves indent=None, and is five times faster.
            text = json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"
            write_private_file(self.path, text, flush_folder=False)
            with suppress(FileNotFoundError):
                os.unlink(self.journal_path)
            sync_folder(self.path.parent)
        finally:
            self._drop_cache()

    def settle(self) -> None:
        """Fold the journal into registry.json, if there is one with changes, and forget the
        document in memory. Run when a command ends; a failure leaves the journal for the next
        command to replay, so it loses nothing."""
        with self._thread_lock:
            try:
                cache = self._state.cache
                # A folder removed meanwhile (the demo's own home) is not made again.
                if cache is not None and cache.has_changes and self.path.parent.is_dir():
                    with self._locked():
                        if self._refresh().has_changes:
                            self._compact()
            except (IotButtonError, OSError):
                pass
            finally:
                self._drop_cache()

    def close(self) -> None:
        """Forget the document in memory and close its files (writing nothing)."""
        with self._thread_lock:
            self._drop_cache()

    @classmethod
    def settle_all(cls) -> None:
        """:meth:`settle` every registry this process used (the CLI does, after each command)."""
        with cls._shared_guard:
            paths = list(cls._shared)
        for path in paths:
            cls(path).settle()

    def namespace(self, key: str, **identity: str) -> Namespace:
        return Namespace(self, key, identity)

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


def _key_of(path: Path, inode_only: bool = False) -> tuple[int, ...] | None:
    try:
        return _key(os.stat(path, follow_symlinks=False), inode_only)
    except FileNotFoundError:
        return None


def _key(info: os.stat_result, inode_only: bool = False) -> tuple[int, ...]:
    """Which file this is (and, for registry.json, which version: it is never written in
    place by iotbutton, but a person may edit it)."""
    if inode_only:
        return (info.st_dev, info.st_ino)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _read_all(fd: int, offset: int = 0) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
        """Yield this namespace's resources by kind, creating the namespace on first write (a
        whole rewrite of registry.json: for one-off changes, not for bulk work)."""
        with self.registry.transaction() as document:
            namespace = document["namespaces"].get(self.key) or {**self.identity, "resources": {}}
            document["namespaces"][self.key] = namespace
            try:
                yield namespace["resources"]
            finally:
                journal.close_namespace(document, self.key)

    def apply(self, change: Callable[[Any], Any]) -> Any:
        """Run ``change`` on this namespace's resources by kind, group-committed and journaled
        (see :meth:`Registry.apply`): the way to record, for work done by many threads."""
        return self.registry.apply(self.key, self.identity, change)

    def snapshot(self) -> dict[str, dict[str, Record]]:
        """A copy of this namespace's resources by kind."""
        return self.registry._reading(lambda document: journal.copy(self._resources_in(document)))

    def recorded_identity(self) -> dict[str, str]:
        def identity(document: dict[str, Any]) -> dict[str, str]:
            namespace = document["namespaces"].get(self.key) or {}
            return {key: value for key, value in namespace.items() if key != "resources"}

        found: dict[str, str] = self.registry._reading(identity)
        return found

    def _resources_in(self, document: dict[str, Any]) -> dict[str, dict[str, Record]]:
        namespace = document["namespaces"].get(self.key)
        return namespace["resources"] if namespace else {}

    def items(self, kind: str) -> dict[str, Record]:
        """A copy of this namespace's records of one kind."""
        items: dict[str, Record] = self.registry._reading(
            lambda document: journal.copy(self._resources_in(document).get(kind, {}))
        )
        return items

    def get(self, kind: str, resource_id: str) -> Record | None:
        """A copy of one record (None: not recorded), without copying the rest."""
        record = self.registry._reading(
            lambda document: journal.copy(
                self._resources_in(document).get(kind, {}).get(resource_id)
            )
        )
        return record if isinstance(record, dict) else None

    def select(self, kind: str, wanted: Callable[[Record], bool]) -> dict[str, Record]:
        """Copies of the records of one kind for which ``wanted`` is true (it sees the
        records themselves, so it must not change them)."""

        def matching(document: dict[str, Any]) -> dict[str, Record]:
            items = self._resources_in(document).get(kind, {})
            return {key: journal.copy(r) for key, r in items.items() if wanted(r)}

        found: dict[str, Record] = self.registry._reading(matching)
        return found

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
