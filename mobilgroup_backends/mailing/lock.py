"""The OS lock that makes one run the owner of a mailing's state file.

Two runs on one state file would send the same requests side by side and record each other's
"accepted earlier" answers as failures. So a run takes ``FILE.lock`` beside the state file with
``flock`` (a byte lock on Windows) before it reads or creates anything, and holds it to the end;
the OS releases it when the process ends, however it ends (SIGKILL included), so a lock is
never stale. A second run does not wait: it is told at once which run holds the file.

The lock file is never deleted: deleting it would let two runs lock two different files. Its
owner writes its pid, host and start time into it, for the next run's message.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ValidationError

__all__ = ["RunLock", "lock_path"]

#: Reads of the holder's note, 20 ms apart, before a refused run gives up on naming it.
NOTE_TRIES = 25


def lock_path(state_path: Path) -> Path:
    """``mailing.sqlite`` -> ``mailing.sqlite.lock``, beside it."""
    return state_path.with_name(state_path.name + ".lock")


class RunLock:
    """Held by the run that owns ``state_path``, until :meth:`release` or the process ends."""

    def __init__(self, state_path: Path, fd: int) -> None:
        self.state_path = state_path
        self._fd: int | None = fd

    @classmethod
    def take(cls, state_path: str | Path) -> RunLock:
        """Take it at once, or raise the error that names the run holding it (exit code 2)."""
        state_path = Path(state_path)
        path = lock_path(state_path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ValidationError(
                "--state", str(state_path), f"cannot create its lock file {path.name} "
                f"({exc.strerror or exc})", "give --state a file in a folder you can write to",
            ) from None
        try:
            _lock(fd)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise ValidationError(
                "--state", str(state_path), f"another run ({holder}) is using this mailing's "
                "state file", "wait for that run to end, or stop it, then run the same command "
                "again: it goes on from where the other run stopped") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(owner).encode())
        return cls(state_path, fd)

    def release(self) -> None:
        """Let the next run have it (closing the file releases the OS lock). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int) -> None:
        # Windows locks are mandatory: lock a byte far past the owner's note, so that the note
        # stays readable for the run that is refused.
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _holder(fd: int) -> str:
    """The holding run as its note says: ``pid 4242 on web-1, started 2026-01-05 10:00:00
    UTC``. A run writes its note just after it takes the lock: a run refused in between waits
    a moment for it."""
    for _ in range(NOTE_TRIES):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            owner = json.loads(os.read(fd, 4096).decode())
            started = datetime.fromisoformat(owner["started"]).strftime("%Y-%m-%d %H:%M:%S %Z")
            return f"pid {int(owner['pid'])} on {owner['host']}, started {started}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.02)
    return "one that has not written its name"
