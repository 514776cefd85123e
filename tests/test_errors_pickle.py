"""Every error of the package survives pickling with its fields: Celery (and multiprocessing)
carry exceptions between processes by pickling them, and ``BaseException`` rebuilds an error by
calling its class with its ``args``, which our classes do not take."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from mobilgroup_backends import errors
from mobilgroup_backends.django.settings import MobilgroupImproperlyConfigured
from mobilgroup_backends.errors import HIDDEN, MobilgroupError
from mobilgroup_backends.mailing.plan import BadRows

ERROR_CLASSES = sorted((cls for _, cls in inspect.getmembers(errors, inspect.isclass)
                        if issubclass(cls, MobilgroupError)), key=lambda cls: cls.__name__)


def sample(cls: type[MobilgroupError]) -> MobilgroupError:
    """An instance of ``cls`` with every field set to something other than its default."""
    if issubclass(cls, errors.ValidationError):
        error: MobilgroupError = cls(
            "MOBILGROUP['SENDER']", "far too long", "more than 9 characters", "shorten it",
            hints={"cli": "give --sender", "django": "set MOBILGROUP['SENDER']"},
            source="MOBILGROUP['URL']", option="sender")
        error.request_id = 4242  # set later by the caller that knows it
        return error
    if cls is errors.GatewayError:
        return cls(99, request_id=17, detail="unheard-of code")
    if issubclass(cls, errors.GatewayError):
        error = cls(request_id=17, detail="as the gateway said")
        error.maybe_sent = True  # an earlier attempt of the call may have arrived
        return error
    if cls is errors.DeadlineExceeded:
        return cls("gave up", elapsed=2.4, attempts=3, deadline=2.5, maybe_sent=False,
                   request_id=21)
    if cls is errors.TransportError:
        return cls("connection reset", status_code=502, maybe_sent=False, retryable=False,
                   timed_out=True, request_id=18)
    if cls is errors.ProtocolError:
        return cls("not XML", request_id=19, maybe_sent=False)
    if cls is MobilgroupError:
        return cls("something", request_id=20, maybe_sent=True)
    raise AssertionError(f"{cls.__name__}: add a sample with every field set")


def round_trip(error: BaseException, protocol: int = pickle.DEFAULT_PROTOCOL) -> Any:
    return pickle.loads(pickle.dumps(error, protocol=protocol))  # noqa: S301 - bytes made here


def fields(error: BaseException) -> dict[str, Any]:
    return {**vars(error), "args": error.args, "str": str(error), "type": type(error)}


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_survives_pickling_with_its_fields(cls: type[MobilgroupError]) -> None:
    error = sample(cls)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        copy = round_trip(error, protocol)
        assert fields(copy) == fields(error)
        assert copy.request_id == error.request_id and copy.maybe_sent == error.maybe_sent
        assert copy.describe("django") == error.describe("django")
        assert copy.hint_for("cli") == error.hint_for("cli")
        assert copy.verdict is error.verdict


def test_every_class_of_errors_is_covered() -> None:
    named = {name for name in errors.__all__ if inspect.isclass(getattr(errors, name))
             and issubclass(getattr(errors, name), MobilgroupError)}
    assert named == {cls.__name__ for cls in ERROR_CLASSES}
    assert len(named) >= 17


def test_a_hidden_value_stays_hidden_and_the_same_object() -> None:
    error = errors.ConfigurationError("url option sendr", HIDDEN, "unknown option", "remove it")
    copy = round_trip(error)
    assert copy.value is HIDDEN
    assert "<hidden>" not in str(copy) and str(copy) == str(error)


def test_gateway_errors_keep_their_code_and_class() -> None:
    for code in range(1, 13):
        error = errors.error_for_code(code, request_id=5, detail="d")
        copy = round_trip(error)
        assert type(copy) is type(error) and copy.code == code


def test_the_package_s_other_errors_survive_pickling() -> None:
    rows = BadRows("contacts.csv", [(3, "not a phone"), (7, "empty name")])
    copy = round_trip(rows)
    assert fields(copy) == fields(rows) and copy.rows == rows.rows
    django_error = MobilgroupImproperlyConfigured("MOBILGROUP['SENDER']", "too long",
                                                  check_id="mobilgroup.E005")
    copy = round_trip(django_error)
    assert isinstance(copy, ImproperlyConfigured)
    assert fields(copy) == fields(django_error) and copy.check_id == "mobilgroup.E005"

