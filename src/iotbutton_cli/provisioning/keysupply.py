"""Private keys made ahead of the certificate requests that need them, on threads of their own.

Bulk provisioning is paced by CreateCertificateFromCsr (10 requests/s by default), and an RSA-2048
key takes about 75 ms of CPU to make. Made inside each button's job, the first keys are made all
at once, so the first request waits for all of them, and every key after that delays its own
request. Made here, in order, a few ahead of demand, the key is ready when its request's turn
comes, and key making overlaps the command's first AWS calls (cryptography releases the GIL while
it makes a key, so the makers run beside the requests).

A key made here lives only in this process's memory until a button takes it; one nobody took is
dropped when the supply closes, never written anywhere.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from iotbutton_cli.provisioning.devicekeys import make_private_key

AHEAD = 8  # keys kept ready: about a second of CreateCertificateFromCsr at its default rate
MAKERS = 2  # one RSA maker gives about 13 keys/s, near the 10/s it must keep up with


class KeySupply:
    """``count`` private keys of ``key_type``, made in the background; :meth:`take` one each."""

    def __init__(self, key_type: str, count: int, makers: int = MAKERS) -> None:
        self.key_type = key_type
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=max(1, min(AHEAD, count)))
        self._left = count  # keys no maker has started yet
        self._promised = count  # keys on their way that no caller has claimed
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._make, name="keys", daemon=True)
            for _ in range(max(1, min(makers, count)))
        ]
        for thread in self._threads:
            thread.start()

    def take(self) -> Any:
        """A key made ahead (waiting for the one on its way), or one made now if none is."""
        with self._lock:
            promised = self._promised > 0 and not self._closed.is_set()
            if promised:
                self._promised -= 1
        while promised and not self._closed.is_set():
            try:
                key = self._ready.get(timeout=0.2)
            except queue.Empty:
                continue
            if key is not None:
                return key
            break
        return make_private_key(self.key_type)

    def close(self) -> None:
        """Stop making keys and drop the ones not taken."""
        self._closed.set()
        for thread in self._threads:
            thread.join(timeout=5)  # a maker ends once its key is made (75 ms for RSA)
        while True:
            try:
                self._ready.get_nowait()
            except queue.Empty:
                break

    def _make(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                if self._left <= 0:
                    return
                self._left -= 1
            try:
                key = make_private_key(self.key_type)
            except Exception:
                key = None  # the button that takes this turn makes its own key (and fails alike)
            while not self._closed.is_set():
                try:
                    self._ready.put(key, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def __enter__(self) -> KeySupply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
