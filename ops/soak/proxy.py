"""A TCP proxy between one client and Redis that can cut the link (a network outage).

Used by ``s2st bench soak`` (each speaker's capture agents reach Redis through one) and by the
fault tests (``tests/evaluation/test_faults.py``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class DroppingProxy:
    """Forwards TCP connections to ``host:target``; :meth:`drop` cuts every connection
    and refuses new ones for a while (a network outage between one client and Redis)."""

    def __init__(self, target: int, host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._refuse_until = 0.0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.refused = 0  # connections refused during outages
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def connections(self) -> int:
        """Client connections open through the proxy now."""
        with self._lock:
            return sum(1 for c in self._conns[::2] if c.fileno() >= 0)

    def drop(self, seconds: float) -> int:
        """Cut every connection and refuse new ones for ``seconds``; returns how many client
        connections were cut."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            conns, self._conns = self._conns, []
        cut = sum(1 for c in conns[::2] if c.fileno() >= 0)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        return cut

    def close(self) -> None:
        self._closed = True
        self.drop(0)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection((self.host, self.target), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns = [c for c in self._conns if c is not a and c is not b]
