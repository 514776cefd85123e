"""Run the emulator in its own process for a benchmark, so it does not share the client's GIL."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

USER_ID, LOGIN, PASSWORD = "1000", "bench", "bench-password"
PATH = "/extxml.php"


@dataclass(frozen=True)
class Running:
    endpoint: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mobilgroup://{LOGIN}:{PASSWORD}@{USER_ID}?endpoint={quote(self.endpoint, safe='')}"


@contextlib.contextmanager
def emulator(latency: float = 0.0) -> Iterator[Running]:
    command = [sys.executable, "-m", "mobilgroup_backends", "emulator", "--port", "0",
               "--account", f"{USER_ID}:{LOGIN}:{PASSWORD}:1000000000", "--latency", str(latency),
               "--history-limit", "1000", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        # The banner names the endpoint on one of its first lines ("Endpoint:    http://...").
        endpoint, seen = "", []
        for _ in range(10):
            line = process.stdout.readline()
            seen.append(line)
            word = line.strip().rsplit(" ", 1)[-1]
            if word.startswith("http://127.0.0.1:") and word.endswith(PATH):
                endpoint = word
                break
        if not endpoint:
            raise RuntimeError(f"the emulator did not start: {''.join(seen)!r}")
        parts = urlsplit(endpoint)
        yield Running(endpoint, parts.hostname or "127.0.0.1", parts.port or 80)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
