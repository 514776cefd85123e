"""Every error says what to do about it (``verdict``), judged from what really happened: real
exchanges with the emulator over HTTP and TLS, a closed port, an account without money."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from mobilgroup_backends import MobilgroupClient, errors
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import MobilgroupError, Verdict
from tests.helpers import closed_port

PHONE = "+7 900 000-00-01"


def failure(call: Callable[[], object]) -> MobilgroupError:
    with pytest.raises(MobilgroupError) as caught:
        call()
    return caught.value


def test_a_refused_connection_is_retry_and_nothing_was_sent() -> None:
    with MobilgroupClient("1000", "demo", "pw", endpoint=f"http://127.0.0.1:{closed_port()}/",
                          retries=0) as client:
        error = failure(lambda: client.send(PHONE, "hello"))
    assert (error.verdict, error.maybe_sent) == (Verdict.RETRY, False)
    assert error.verdict.try_again


@pytest.mark.parametrize(("fault", "params"), [("http_500", {}), ("close_after", {}),
                                               ("garbage", {})])
def test_an_answer_lost_after_the_request_went_is_unknown(
        frozen_emulator: Emulator, frozen_client: MobilgroupClient, fault: str,
        params: dict[str, object]) -> None:
    frozen_emulator.faults.next(fault, **params)
    error = failure(lambda: frozen_client.send(PHONE, "hello"))
    assert (error.verdict, error.maybe_sent) == (Verdict.UNKNOWN, True)
    assert error.verdict.try_again and error.request_id is not None


@pytest.mark.parametrize("status", [404, 403, 302])
def test_an_endpoint_that_will_not_mend_is_refused(frozen_emulator: Emulator,
                                                   frozen_client: MobilgroupClient,
                                                   status: int) -> None:
    frozen_emulator.faults.next("body", status=status, headers=(("Location", "https://x.test/"),))
    error = failure(lambda: frozen_client.send(PHONE, "hello"))
    assert error.verdict is Verdict.REFUSED and not error.verdict.try_again
    assert len(frozen_emulator.outbox) == 0


def test_an_untrusted_certificate_is_refused(tls_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(tls_emulator.url()) as client:
        error = failure(lambda: client.send(PHONE, "hello"))
    assert (error.verdict, error.maybe_sent) == (Verdict.REFUSED, False)


def test_an_account_without_money_is_an_account_verdict(frozen_emulator: Emulator,
                                                        frozen_client: MobilgroupClient) -> None:
    frozen_emulator.account.balance = 0
    error = failure(lambda: frozen_client.send(PHONE, "hello"))
    assert isinstance(error, errors.InsufficientFunds)
    assert error.verdict is Verdict.ACCOUNT and not error.verdict.try_again


def test_wrong_credentials_and_a_blocked_account_are_account_verdicts(
        frozen_emulator: Emulator) -> None:
    with MobilgroupClient("1000", "demo", "wrong", endpoint=frozen_emulator.endpoint,
                          retries=0) as client:
        assert failure(client.balance).verdict is Verdict.ACCOUNT
    frozen_emulator.account.blocked = True
    with MobilgroupClient.from_url(frozen_emulator.url(retries=0)) as client:
        assert failure(lambda: client.send(PHONE, "hello")).verdict is Verdict.ACCOUNT


def test_bad_input_is_invalid_before_any_request(frozen_emulator: Emulator,
                                                 frozen_client: MobilgroupClient) -> None:
    error = failure(lambda: frozen_client.send("not a phone", "hello"))
    assert isinstance(error, errors.ValidationError) and error.verdict is Verdict.INVALID
    config = failure(lambda: MobilgroupClient.from_url("mobilgroup://demo:pw@1000?valid=99"))
    assert config.verdict is Verdict.INVALID
    assert frozen_emulator.connections == 0


ACCOUNT_CODES = {3, 4, 5, 9}


@pytest.mark.parametrize("code", range(0, 14))
def test_every_gateway_code_has_its_verdict(code: int) -> None:
    error = errors.error_for_code(code, request_id=5)
    expected = Verdict.ACCOUNT if code in ACCOUNT_CODES else Verdict.REFUSED
    assert error.verdict is expected
    error.maybe_sent = True  # an earlier attempt may have arrived: this answer still refuses it
    assert error.verdict is expected


def test_the_verdict_survives_pickling_and_json() -> None:
    samples: list[MobilgroupError] = [
        errors.InsufficientFunds(request_id=3),
        errors.TransportError("reset", maybe_sent=True, request_id=4),
        errors.TransportError("refused", maybe_sent=False),
        errors.TransportError("HTTP 404", retryable=False),
        errors.ProtocolError("not XML"),
        errors.ValidationError("phones", "x", "not a phone"),
    ]
    for error in samples:
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - bytes made here
        assert copy.verdict is error.verdict
        assert errors.error_to_dict(error)["verdict"] == error.verdict.value
    assert [e.verdict.value for e in samples] == ["account", "unknown", "retry", "refused",
                                                  "unknown", "invalid"]
    assert Verdict("account") is Verdict.ACCOUNT and f"{Verdict.RETRY}" == "retry"
