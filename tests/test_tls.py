"""TLS between MobilgroupClient and the emulator, with certificates from a test CA (trustme).

A client that trusts the CA works over one kept-alive TLS connection; one that does not, or that
reaches a server whose certificate names another host, or has expired, gets a TransportError
that says so, is not retried, and never gets as far as sending the request (and its password).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trustme

from mobilgroup_backends import MobilgroupClient, errors
from mobilgroup_backends.emulator import Emulator


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def tls_emulator(ca: trustme.CA) -> Iterator[Emulator]:
    with Emulator(ssl_context=server_context(ca.issue_cert("127.0.0.1", "localhost"))) as emulator:
        yield emulator


def test_client_trusting_the_ca_works_over_one_connection(tls_emulator: Emulator,
                                                          ca_file: str) -> None:
    assert tls_emulator.endpoint.startswith("https://127.0.0.1:")
    with MobilgroupClient.from_url(tls_emulator.url(), ca_bundle=ca_file) as client:
        results = [client.send("79039587454", f"over TLS {i}") for i in range(5)]
        assert client.balance() > 0
        assert client.status(results[0].request_id).request_id == results[0].request_id
    assert [m.request_id for m in tls_emulator.outbox] == [r.request_id for r in results]
    assert tls_emulator.connections == 1  # keep-alive: one handshake for seven exchanges


def test_localhost_name_is_checked_and_accepted(tls_emulator: Emulator, ca_file: str) -> None:
    endpoint = tls_emulator.endpoint.replace("127.0.0.1", "localhost")
    with MobilgroupClient("1000", "demo", "demo-password", endpoint=endpoint,
                          ca_bundle=ca_file) as client:
        assert client.balance() > 0


def test_ca_bundle_from_the_environment(tls_emulator: Emulator, ca_file: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    with MobilgroupClient.from_url(tls_emulator.url()) as client:
        assert client.balance() > 0


def test_untrusted_certificate_refused_and_not_retried(tls_emulator: Emulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    with MobilgroupClient.from_url(tls_emulator.url(), retries=3, backoff=0.001) as client, \
            pytest.raises(errors.TransportError) as caught:
        client.send("79039587454", "must not leave")
    text = str(caught.value)
    assert "certificate was not trusted" in text
    assert "CERTIFICATE_VERIFY_FAILED" in text
    assert "demo-password" not in text
    assert caught.value.retryable is False
    assert caught.value.maybe_sent is False
    assert tls_emulator.connections == 1  # one handshake, no retry
    assert len(tls_emulator.requests) == 0  # the request (and its password) never went out
    assert len(tls_emulator.outbox) == 0


@pytest.mark.parametrize("endpoint_host", ["127.0.0.1", "localhost"])
def test_hostname_mismatch_refused(ca: trustme.CA, ca_file: str, endpoint_host: str) -> None:
    other = server_context(ca.issue_cert("gateway.example", "10.9.8.7"))
    with Emulator(ssl_context=other) as emulator:
        endpoint = emulator.endpoint.replace("127.0.0.1", endpoint_host)
        with MobilgroupClient("1000", "demo", "demo-password", endpoint=endpoint,
                              ca_bundle=ca_file, backoff=0.001) as client, \
                pytest.raises(errors.TransportError) as caught:
            client.balance()
        assert emulator.connections == 1
        assert len(emulator.requests) == 0
    text = str(caught.value)
    assert "did not match" in text
    assert "mismatch" in text.lower() or "doesn't match" in text or "not valid for" in text
    assert caught.value.retryable is False


def test_expired_certificate_refused(ca: trustme.CA, ca_file: str) -> None:
    now = datetime.now(timezone.utc)
    expired = ca.issue_cert("127.0.0.1", not_before=now - timedelta(days=30),
                            not_after=now - timedelta(days=1))
    with Emulator(ssl_context=server_context(expired)) as emulator, MobilgroupClient.from_url(
            emulator.url(), ca_bundle=ca_file, backoff=0.001) as client, \
            pytest.raises(errors.TransportError, match="expired") as caught:
        client.balance()
    assert caught.value.retryable is False


def test_plain_http_to_a_tls_port_is_a_transport_error(tls_emulator: Emulator) -> None:
    endpoint = tls_emulator.endpoint.replace("https://", "http://")
    with MobilgroupClient("1000", "demo", "demo-password", endpoint=endpoint, retries=0,
                          timeout=2) as client, pytest.raises(errors.TransportError):
        client.balance()
    assert len(tls_emulator.requests) == 0


def test_insecure_http_refused_outside_loopback() -> None:
    with pytest.raises(errors.ConfigurationError, match="unencrypted"):
        MobilgroupClient("1000", "demo", "pw", endpoint="http://sms.mobilgroup.ru/extxml.php")


def test_ca_file_that_does_not_exist(tls_emulator: Emulator, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises(errors.MobilgroupError, match=r"no-such-ca\.pem"), \
            MobilgroupClient.from_url(tls_emulator.url(), ca_bundle=missing, retries=0) as client:
        client.balance()
