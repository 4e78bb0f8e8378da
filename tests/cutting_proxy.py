"""A loopback TCP proxy that counts what a client sends and cuts its connection at
chosen points: a field network that drops, for tests and benchmarks of resumed uploads."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress


class CuttingProxy:
    """Relays to `target`; the connection that carries the byte past each of `cuts`
    (bytes from the client, counted over every connection) is cut there, once per cut."""

    def __init__(self, target: str, cuts: Sequence[int]) -> None:
        host, port = target.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._cuts = sorted(cuts)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        self.sent = 0  # bytes from the client to the server, over every connection
        self.cut = 0  # connections cut so far
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def was_cut(self) -> bool:
        return self.cut > 0

    def _allowance(self, wanted: int) -> int:
        """How much of a chunk may pass; past the next cut point, the rest is dropped."""
        with self._lock:
            if self.cut < len(self._cuts) and self.sent + wanted > self._cuts[self.cut]:
                passed = self._cuts[self.cut] - self.sent
                self.sent += passed
                self.cut += 1
                return passed
            self.sent += wanted
            return wanted

    def _to_server(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                passed = self._allowance(len(chunk))
                sink.sendall(chunk[:passed])
                if passed < len(chunk):
                    break
        _close_both(source, sink)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        with client, upstream:
            sending = threading.Thread(target=self._to_server, args=(client, upstream))
            sending.start()
            with suppress(OSError):
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)
            _close_both(upstream, client)
            sending.join()

    def serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            upstream = socket.create_connection(self._upstream)
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@contextmanager
def cutting_proxy(target: str, *, cuts: Sequence[int] = ()) -> Iterator[CuttingProxy]:
    """A running proxy to `target` (http://host:port), closed at the end of the block."""
    proxy = CuttingProxy(target, cuts)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy._stop.set()  # the accept loop ends within its 0.2 s timeout
        thread.join(timeout=5)
        proxy.close()


def _close_both(*sides: socket.socket) -> None:
    for side in sides:
        with suppress(OSError):
            side.shutdown(socket.SHUT_RDWR)
