"""The client a worker process sends with: one per configuration, kept between tasks.

A task backend's worker runs many sends; a new client per task would cost a new connection (and
a TLS handshake with the real gateway) per SMS. The client is built from the ``MOBILGROUP``
settings the way the backend builds its own, kept for the process, rebuilt after ``fork`` (a
pooled connection must never be shared by two processes) and when the settings change.
"""

from __future__ import annotations

import atexit
import os
import threading

from ..client import MobilgroupClient
from ..config import Settings
from .backend import SmsBackend

__all__ = ["worker_client"]

_lock = threading.Lock()
_clients: dict[tuple[int, Settings], MobilgroupClient] = {}


def worker_client() -> MobilgroupClient:
    """This process's client for the current settings (do not close it)."""
    backend = SmsBackend()
    key = (os.getpid(), backend.config.settings)
    with _lock:
        client = _clients.get(key)
        if client is None:
            for stale in [k for k in _clients if k[0] != key[0] or k[1] != key[1]]:
                old = _clients.pop(stale)
                if stale[0] == key[0]:
                    old.close()  # a child must not close its parent's sockets
            client = _clients[key] = backend.make_client()
    return client


@atexit.register
def _close_all() -> None:
    with _lock:
        for (pid, _), client in list(_clients.items()):
            if pid == os.getpid():
                client.close()
        _clients.clear()
