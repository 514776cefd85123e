"""The exactly-once matrix (see ``tests/exactly_once.py``): every sending path x every fault point.

Each cell: the emulator's outbox holds the message exactly once, or the caller was told (an
error with ``maybe_sent`` and the request id) and a resend of that id with ``resend=True`` put it
there exactly once. Over TLS, so that a corrupted record after the request is a fault point too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mobilgroup_backends.emulator import Emulator
from tests.exactly_once import FAULTS, PATHS, run_cell

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


@pytest.fixture
def trusted_tls_emulator(tls_emulator: Emulator, ca_file: str, monkeypatch: pytest.MonkeyPatch,
            settings: object) -> Iterator[Emulator]:
    # Every path makes its client from settings: the test CA comes in through the environment,
    # as a private CA would.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    yield tls_emulator


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("path", list(PATHS))
def test_exactly_once(trusted_tls_emulator: Emulator, path: str, fault: str) -> None:
    cell = run_cell(trusted_tls_emulator, path, fault)
    assert cell.exactly_once, (cell.told, cell.copies, [m.text for m in trusted_tls_emulator.outbox])
    assert trusted_tls_emulator.faults.pending == 0  # the fault was met
