"""Run the emulator in its own process for a benchmark, so it does not share the client's GIL."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

USER_ID, LOGIN, PASSWORD = "1000", "bench", "bench-password"


@dataclass(frozen=True)
class Running:
    endpoint: str
    host: str
    port: int
    pid: int = 0  # the server's process

    def cpu_seconds(self) -> float | None:
        """CPU time the server's process has used so far (all its threads), where the system
        says (Linux); None elsewhere."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def url(self) -> str:
        return f"mobilgroup://{LOGIN}:{PASSWORD}@{USER_ID}?endpoint={quote(self.endpoint, safe='')}"


@contextlib.contextmanager
def emulator(latency: float = 0.0) -> Iterator[Running]:
    command = [sys.executable, "-m", "mobilgroup_backends", "emulator", "--port", "0",
               "--account", f"{USER_ID}:{LOGIN}:{PASSWORD}:1000000000", "--latency", str(latency),
               "--history-limit", "1000", "--quiet"]  # quiet: an unread request log would block it
    with _server(command) as running:
        yield running


@contextlib.contextmanager
def minimal_server() -> Iterator[Running]:
    """The floor: a server that answers every request with the same OK, doing nothing else."""
    script = str(Path(__file__).with_name("_minimal_server.py"))
    with _server([sys.executable, script]) as running:
        yield running


@contextlib.contextmanager
def _server(command: list[str]) -> Iterator[Running]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        # "... http://127.0.0.1:PORT/extxml.php", or "... listening on 127.0.0.1, port PORT"
        first = process.stdout.readline()
        found = re.search(r"127\.0\.0\.1(?::|, port )(\d+)", first)
        if found is None:
            raise RuntimeError(f"the server did not start: {first!r}")
        port = int(found.group(1))
        yield Running(f"http://127.0.0.1:{port}/extxml.php", "127.0.0.1", port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
