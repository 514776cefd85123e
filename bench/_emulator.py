"""Run the emulator in its own process for a benchmark, so it does not share the client's GIL."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

USER_ID, LOGIN, PASSWORD = "1000", "bench", "bench-password"


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
    command = [sys.executable, "-m", "mobilgroup_backends", "emulator", "--port", "0", "--quiet",
               "--account", f"{USER_ID}:{LOGIN}:{PASSWORD}:1000000000", "--latency", str(latency),
               "--history-limit", "1000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoint, seen = "", []
        for line in process.stdout:  # "Endpoint:    http://127.0.0.1:PORT/extxml.php", then more
            seen.append(line)
            if line.startswith("Endpoint:"):
                endpoint = line.split()[-1]
                break
        if not endpoint.startswith("http://127.0.0.1:"):
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
