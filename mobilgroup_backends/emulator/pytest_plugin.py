"""The ``mobilgroup_emulator`` pytest fixture, registered through the ``pytest11`` entry point.

pytest loads this module in every session of every project that has the package installed, so
it stays small: it needs the standard library, pytest and this package's emulator, and never a
web framework or an HTTP client library.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import Emulator

__all__ = ["mobilgroup_emulator"]


@pytest.fixture
def mobilgroup_emulator() -> Iterator[Emulator]:
    """A running gateway emulator on 127.0.0.1 with the default account, stopped afterwards.

    Point code under test at ``mobilgroup_emulator.url(...)`` or ``.endpoint``, then assert on
    ``.outbox``. Settings (``quirky``, ``latency``, ``faults``, accounts, the clock) can be
    changed on the running emulator inside the test.
    """
    with Emulator() as emulator:
        yield emulator
