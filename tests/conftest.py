"""Fixtures shared by several test modules (the emulator fixture comes from the package's own
pytest plugin)."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, settings

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from tests.helpers import FROZEN_PASSWORD, FROZEN_START
from tests.postgres import PostgresServer
from tests.redis_server import RedisServer

# Property tests: a quick sample while developing, a thorough one in CI (.ci/run sets
# HYPOTHESIS_PROFILE=ci). Tests name only what differs from the profile, never max_examples.
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


class Trap:
    """A listener on 127.0.0.1 that hostile answers and redirects point at: it must never see a
    connection, which proves the client did not follow them."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.port: int = listener.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def trap() -> Iterator[Trap]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    with listener:
        yield Trap(listener)


@pytest.fixture
def no_mobilgroup_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MOBILGROUP_* variables for this test (restored afterwards): every adapter falls back to
    them, so a developer's own settings must not leak into tests of settings."""
    for name in list(os.environ):
        if name.startswith("MOBILGROUP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def frozen_emulator() -> Iterator[Emulator]:
    """An emulator whose clock stands at ``FROZEN_START`` until a test moves it, with one account
    (1000, demo, ``FROZEN_PASSWORD``, balance 100)."""
    with Emulator([f"1000:demo:{FROZEN_PASSWORD}:100"], start_time=FROZEN_START,
                  freeze_clock=True) as running:
        yield running


@pytest.fixture
def frozen_client(frozen_emulator: Emulator) -> Iterator[MobilgroupClient]:
    """A client of ``frozen_emulator`` that does not retry (each fault shows at once)."""
    with MobilgroupClient.from_url(frozen_emulator.url(retries=0)) as opened:
        yield opened


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test certificate authority (trustme): what a private CA would be."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_gateway(ca: trustme.CA) -> Iterator[Emulator]:
    """The emulator over HTTPS, with a certificate for 127.0.0.1 from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with Emulator(ssl_context=context) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 (a free port), its data in a temporary folder; every
    statement is logged, so tests can see which SQL actually ran."""
    server = PostgresServer(log_statement="all")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis server for the session (Celery's broker, the fleet alert budget): tests
    that share it use their own database number or key."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
