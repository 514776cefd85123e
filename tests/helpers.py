"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from mobilgroup_backends.emulator import Emulator

#: Where the clock of the ``frozen_emulator`` fixture stands until a test moves it.
FROZEN_START = datetime(2026, 5, 4, 12, 0)
#: The password of ``frozen_emulator``'s account: no page, answer or log may show it.
FROZEN_PASSWORD = "Pa$$:w0rd<script>&Ёж"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held. Tests
    ``assert wait_until(...)`` instead of sleeping for a guessed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def texts(emulator: Emulator) -> list[str]:
    """The texts of the emulator's outbox, in the order they arrived."""
    return [message.text for message in emulator.outbox]


class Rollback(Exception):
    """Raised inside ``transaction.atomic()`` to roll it back on purpose."""


def sent_ids(gateway: Emulator) -> Counter[int]:
    """How often each request id reached the emulator's outbox."""
    return Counter(message.request_id for message in gateway.outbox)


def in_threads(work: Callable[[int], object], count: int, timeout: float = 60.0) -> list[BaseException]:
    """Run ``work(0)`` to ``work(count - 1)`` at once, each on its own thread, and wait for them
    (``timeout`` seconds each at most); what they raised, assertions included."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # reported to the test, which asserts there were none
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


Script = Callable[["ScriptedServer", socket.socket], None]


class ScriptedServer:
    """Accepts connections; reads each request (head and Content-Length body); runs ``script``.

    ``requests`` keeps every request's raw bytes, ``sent`` counts the body bytes the script got
    out before the client hung up.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.sent = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/extxml.php"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(self._read(conn))
                    self.script(self, conn)
                except OSError:
                    pass

    @staticmethod
    def _read(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()
