"""A TCP relay the tests put between a client and the sandbox's broker: it can drop the
connections and refuse new ones, as a Wi-Fi drop or a broker that is away would, while the broker
and all it knows stay up."""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """Forwards TCP connections to ``port`` on loopback; ``cut()`` drops them, ``refuse`` keeps
    new ones out (accepted and closed at once)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refuse = False
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self, refuse: bool = False) -> None:
        self.refuse = refuse
        with self.lock:
            for end in self.open:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            self.open = []

    def close(self) -> None:
        self.cut(refuse=True)
        self.listener.close()
