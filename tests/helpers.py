"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import subprocess
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


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Terminate ``process`` if it still runs, and kill it if it has not ended in ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
