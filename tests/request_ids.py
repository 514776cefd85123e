"""What each process of ``tests/test_load.py``'s request id test runs: a module of its own that
imports only the protocol, so that eight freshly spawned interpreters start in a fraction of a
second instead of importing the test module's client, emulator and pytest."""

from __future__ import annotations

from mobilgroup_backends import protocol


def request_ids(count: int) -> list[int]:
    return [protocol.new_request_id() for _ in range(count)]
