"""The clicks a button has not delivered yet, kept on disk until the broker acknowledges them.

One file per click in one folder (0700), named by a sequence number that grows by one per click
(``000000000042.json``, 0600): the order to send them in is the order of the names. A click is
written to a temporary name, fsync'd and renamed, and the folder fsync'd, before it counts as
kept (:meth:`ClickQueue.append` returns only then), so a power cut loses no kept click and leaves
no half-written one. A file is deleted only once the broker has acknowledged its publish (PUBACK,
QoS 1): a click can be sent twice (the acknowledgement was lost with the connection), never lost.

Each file holds the topic and the payload exactly as they were made when the button was pressed,
so a click sent an hour late still says when it happened (``reportedTime``)::

    {"version": 1, "seq": 42, "click": "SINGLE", "time": "2026-11-21T23:04:00.123Z",
     "topic": "iotbutton/G030JF0553648RUH",
     "payload": {"serialNumber": "G030JF0553648RUH", "batteryVoltage": "1650mV",
                 "clickType": "SINGLE", "reportedTime": "2026-11-21T23:04:00.123Z"}}

The queue is bounded (:data:`DEFAULT_LIMIT` clicks): a click beyond it pushes out the oldest, and
the caller is told which (``on_dropped``). A file that cannot be read as a click is renamed
``<name>.corrupt`` (kept for a person to look at, never sent) and the caller is told; it never
stops the queue. One runner at a time owns a folder (a lock file, ``.lock``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notifier_lambda.contract import CLICK_FIELD, CLICK_TYPES
from iotbutton_cli.paths import ensure_private_dir, sync_folder, write_private_file

VERSION = 1
DEFAULT_LIMIT = 1000
ENTRY = re.compile(r"^(\d{12})\.json$")
CORRUPT_SUFFIX = ".corrupt"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class QueuedClick:
    seq: int
    click: str  # SINGLE, DOUBLE or LONG
    time: str  # when it was pressed: ISO 8601 UTC, to the millisecond ("...Z")
    topic: str
    payload: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.seq:012d}.json"

    def document(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "seq": self.seq,
            "click": self.click,
            "time": self.time,
            "topic": self.topic,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Skipped:
    """A file in the queue that is not a click: renamed aside, never sent."""

    file: str
    reason: str
    kept_as: str | None  # where it went (None: it could not even be renamed)


class ClickQueue:
    """The folder's clicks, oldest first. Thread-safe; one process per folder (:meth:`lock`)."""

    def __init__(
        self,
        folder: Path,
        limit: int = DEFAULT_LIMIT,
        on_dropped: Callable[[QueuedClick], None] | None = None,
        on_skipped: Callable[[Skipped], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("a queue holds at least one click")
        self.folder = Path(folder).absolute()
        self.limit = limit
        self.on_dropped = on_dropped
        self.on_skipped = on_skipped
        self._mutex = threading.Lock()
        self._file_lock: Any = None
        ensure_private_dir(self.folder)
        self._seqs = self._scan()
        self._next = (self._seqs[-1] + 1) if self._seqs else 1

    # -- owning the folder --------------------------------------------------------------------

    def lock(self) -> None:
        """Make this process the folder's only runner, or ``queue-busy``."""
        import filelock

        lock = filelock.FileLock(str(self.folder / LOCK_FILE), mode=0o600)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise IotButtonError(
                "queue-busy",
                f"Another `iotbutton device run` is using the click queue {self.folder}.",
                "Stop that one first (a button connects once: a second connection with the same "
                "client id kicks the first), or give this one another --queue-dir.",
            ) from None
        self._file_lock = lock

    def unlock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    # -- the clicks ---------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._mutex:
            return len(self._seqs)

    def append(self, click: str, time: str, topic: str, payload: dict[str, Any]) -> QueuedClick:
        """Keep a click (durable when this returns); the oldest go if the queue is full."""
        dropped, skipped = [], []
        with self._mutex:
            while len(self._seqs) >= self.limit:
                oldest = self._seqs.pop(0)
                found = self._read(oldest)
                if isinstance(found, QueuedClick):
                    self._delete(found.name)
                    dropped.append(found)
                else:  # a damaged file is set aside as everywhere else, never deleted unseen
                    skipped.append(self._put_aside(f"{oldest:012d}.json", found))
            entry = QueuedClick(self._next, click, time, topic, dict(payload))
            write_private_file(self.folder / entry.name, json.dumps(entry.document()) + "\n")
            self._seqs.append(entry.seq)
            self._next += 1
        for aside in skipped:
            if self.on_skipped:
                self.on_skipped(aside)
        for lost in dropped:
            if self.on_dropped:
                self.on_dropped(lost)
        return entry

    def oldest(self) -> QueuedClick | None:
        """The click to send next; files that are not clicks are put aside on the way."""
        while True:
            skipped = None
            with self._mutex:
                if not self._seqs:
                    return None
                seq = self._seqs[0]
                found = self._read(seq)
                if isinstance(found, QueuedClick):
                    return found
                self._seqs.pop(0)
                skipped = self._put_aside(f"{seq:012d}.json", found)
            if skipped and self.on_skipped:
                self.on_skipped(skipped)

    def items(self) -> list[QueuedClick]:
        """Every click kept, oldest first (files that are not clicks are left out)."""
        with self._mutex:
            found = [self._read(seq) for seq in self._seqs]
        return [entry for entry in found if isinstance(entry, QueuedClick)]

    def remove(self, entry: QueuedClick) -> None:
        """The broker has acknowledged ``entry``: forget it."""
        with self._mutex:
            if entry.seq in self._seqs:
                self._seqs.remove(entry.seq)
                self._delete(entry.name)

    # -- files ----------------------------------------------------------------------------------

    def _scan(self) -> list[int]:
        seqs = []
        for path in self.folder.iterdir():
            match = ENTRY.match(path.name)
            if match:
                seqs.append(int(match.group(1)))
            elif path.name.startswith(".") and path.name.endswith(".tmp"):
                # A write that a crash interrupted before its rename: never a kept click.
                with contextlib.suppress(OSError):
                    path.unlink()
        return sorted(seqs)

    def _read(self, seq: int) -> QueuedClick | str:
        """The click in file ``seq``, or why it is none."""
        path = self.folder / f"{seq:012d}.json"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "the file is gone"
        except (OSError, UnicodeDecodeError) as exc:
            return f"unreadable: {getattr(exc, 'strerror', None) or exc}"
        except ValueError as exc:
            return f"not JSON: {exc}"
        return _parse(document, seq)

    def _put_aside(self, name: str, reason: str) -> Skipped:
        aside = name + CORRUPT_SUFFIX
        try:
            os.replace(self.folder / name, self.folder / aside)
        except FileNotFoundError:
            return Skipped(name, reason, None)
        except OSError:
            return Skipped(name, reason, None)
        sync_folder(self.folder)
        return Skipped(name, reason, aside)

    def _delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / name).unlink()
        sync_folder(self.folder)


def _parse(document: Any, seq: int) -> QueuedClick | str:
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("version") != VERSION:
        return f"unknown version {document.get('version')!r}"
    if document.get("seq") != seq:
        return f"its seq {document.get('seq')!r} is not its name's"
    click, time, topic, payload = (
        document.get(key) for key in ("click", "time", "topic", "payload")
    )
    if click not in CLICK_TYPES:
        return f"unknown click {click!r}"
    if not isinstance(time, str) or not isinstance(topic, str) or not topic:
        return "no time or topic"
    if not isinstance(payload, dict) or payload.get(CLICK_FIELD) != click:
        return "its payload is not the click's"
    return QueuedClick(seq, click, time, topic, payload)
