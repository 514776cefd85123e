"""Django's error reports never show the password, also when it sits inside MOBILGROUP['URL']."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import RequestFactory
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from mobilgroup_backends import errors
from mobilgroup_backends.django import SmsBackend
from mobilgroup_backends.django.checks import FILTER_PATH

PASSWORD = "Url-Pa55-Secret"
DJANGO_FILTER = "django.views.debug.SafeExceptionReporterFilter"
URL = f"mobilgroup://ops:{PASSWORD}@1000?endpoint=http%3A%2F%2F127.0.0.1%3A9%2Fextxml.php&retries=0"


@pytest.fixture(autouse=True)
def fresh_filter() -> Any:
    """Django caches the filter class it reads from settings; each test sets its own."""
    get_default_exception_reporter_filter.cache_clear()
    yield
    get_default_exception_reporter_filter.cache_clear()


def report(debug: bool) -> str:
    """The debug page (or error email) for a send that failed inside the backend."""
    message = type("Message", (), {"body": "hi", "recipients": ["79039587454"],
                                   "originator": None})()
    try:
        SmsBackend().send_messages([message])
    except errors.MobilgroupError:
        reporter = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info(), is_email=not debug)
        return reporter.get_traceback_html() + reporter.get_traceback_text()
    raise AssertionError("the send should have failed: the endpoint is closed")


@pytest.mark.parametrize("debug", [True, False], ids=["debug-page", "error-email"])
def test_filter_hides_the_url_password(settings: Any, debug: bool) -> None:
    settings.DEBUG = debug
    settings.MOBILGROUP = {"URL": URL}
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = FILTER_PATH
    text = report(debug)
    assert "send_messages" in text  # the frames are there
    assert "mobilgroup://ops:***@1000" in text  # the setting is shown, masked
    assert PASSWORD not in text


def test_without_the_filter_django_would_show_it(settings: Any) -> None:
    """Why the filter and its check exist: Django hides setting names, not URL contents."""
    settings.DEBUG = True
    settings.MOBILGROUP = {"URL": URL}
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = DJANGO_FILTER
    assert PASSWORD in report(True)


@pytest.mark.django_db  # Django 6 model checks consult the database
def test_deploy_check_suggests_the_filter(settings: Any) -> None:
    settings.MOBILGROUP = {"URL": URL}
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = DJANGO_FILTER
    ids = {m.id for m in run_checks(include_deployment_checks=True)}
    assert "mobilgroup.W012" in ids
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = FILTER_PATH
    assert "mobilgroup.W012" not in {m.id for m in run_checks(include_deployment_checks=True)}
    settings.MOBILGROUP = {"USER_ID": "1000", "LOGIN": "ops", "PASSWORD": PASSWORD}
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = DJANGO_FILTER
    assert "mobilgroup.W012" not in {m.id for m in run_checks(include_deployment_checks=True)}


def invalid_settings_report(settings: Any, reporter_filter: str, debug: bool,
                            mobilgroup: dict[str, Any]) -> str:
    """The report of a view whose backend was built from invalid settings."""
    settings.DEBUG = debug
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = reporter_filter
    settings.MOBILGROUP = mobilgroup
    del mobilgroup  # this frame is in the traceback too: judge the package's frames only
    try:
        SmsBackend()
    except Exception:
        reporter = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info(), is_email=not debug)
        return reporter.get_traceback_html() + reporter.get_traceback_text()
    raise AssertionError("the settings should have been refused")


@pytest.mark.parametrize("mobilgroup", [
    {"URL": URL, "LONG_MESSAGES": "spilt"},
    {"URL": URL.replace("retries=0", "sender=Too_long_alias")},
    {"USER_ID": "1000", "LOGIN": "ops", "PASSWORD": PASSWORD, "TIMEOUT": "ten"},
], ids=["url-bad-key", "url-bad-sender", "keys-bad-timeout"])
@pytest.mark.parametrize("debug", [True, False], ids=["debug-page", "error-email"])
def test_invalid_settings_report_hides_the_password(settings: Any, debug: bool,
                                                    mobilgroup: dict[str, Any]) -> None:
    text = invalid_settings_report(settings, FILTER_PATH, debug, dict(mobilgroup))
    assert "load_config" in text  # the package's frames are shown
    if debug:  # (in production every local of those frames is starred out anyway)
        assert "SmsBackend(not configured" in text  # a half-made backend's repr does not fail
    assert PASSWORD not in text


def test_invalid_settings_error_email_with_djangos_own_filter(settings: Any) -> None:
    """Without this package's filter, Django cleanses the package's frames in production (the
    functions holding the password are marked sensitive) and the PASSWORD key in settings."""
    text = invalid_settings_report(settings, DJANGO_FILTER, False, {
        "USER_ID": "1000", "LOGIN": "ops", "PASSWORD": PASSWORD, "TIMEOUT": "ten"})
    assert "load_config" in text
    assert PASSWORD not in text


# --- MOBILGROUP_URL in the environment (request.META under runserver) ---------------------------


def meta_report(text_in_meta: str) -> str:
    """The debug page of a request whose META holds the environment, as under runserver."""
    request = RequestFactory().get("/", MOBILGROUP_URL=text_in_meta,
                                   CMD_LINE=f"mobilgroup send --url {URL} 79039587454")
    del text_in_meta  # only request.META may carry it into the report
    try:
        raise errors.TransportError("the gateway could not be reached")
    except errors.TransportError:
        reporter = ExceptionReporter(request, *sys.exc_info())
        return reporter.get_traceback_html() + reporter.get_traceback_text()


@pytest.mark.parametrize("value", [URL, f"  {URL}", "not-a-url:" + PASSWORD])
def test_filter_hides_mobilgroup_url_in_request_meta(settings: Any, value: str) -> None:
    settings.DEBUG = True
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = FILTER_PATH
    text = meta_report(value)
    assert "MOBILGROUP_URL" in text and "CMD_LINE" in text
    assert PASSWORD not in text


def test_djangos_filter_shows_the_environment_url(settings: Any) -> None:
    settings.DEBUG = True
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = DJANGO_FILTER
    assert PASSWORD in meta_report(URL)


@pytest.mark.django_db  # Django 6 model checks consult the database
def test_deploy_check_covers_the_environment(settings: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings.MOBILGROUP = {"USER_ID": "1000", "LOGIN": "ops", "PASSWORD": PASSWORD}
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = DJANGO_FILTER
    monkeypatch.setenv("MOBILGROUP_URL", URL)
    [warning] = [m for m in run_checks(include_deployment_checks=True)
                 if m.id == "mobilgroup.W012"]
    assert "MOBILGROUP_URL" in warning.msg and PASSWORD not in warning.msg
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = FILTER_PATH
    assert "mobilgroup.W012" not in {m.id for m in run_checks(include_deployment_checks=True)}
