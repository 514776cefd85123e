"""The core's memoised resolver: every adapter that resolves per message asks it, a changed layer
is seen at once, and it stays bounded. Real Django settings (``override_settings``), the real
environment, the emulator for the sends."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import Any

import apprise
import pytest
import sms
from celery import Celery
from django.db import transaction
from django.test import override_settings

import mobilgroup_backends.celery as mobilgroup_celery
from mobilgroup_backends.config import ResolveCache, resolve, resolve_cached
from mobilgroup_backends.django import SmsBackend
from mobilgroup_backends.django.outbox import enqueue
from mobilgroup_backends.django.settings import load_config
from mobilgroup_backends.emulator import Emulator
from tests.django_project.helpers import gateway_settings
from tests.helpers import in_threads

PACKAGE = Path(__file__).resolve().parent.parent / "mobilgroup_backends"
URL = "mobilgroup://login:secret@123"
PHONE = "79031234567"

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


def test_the_same_layers_give_the_remembered_result() -> None:
    cache = ResolveCache()
    first = cache("client", url=URL, environ={})
    assert cache("client", url=URL, environ={}) is first
    assert first.settings == resolve("client", url=URL, environ={}).settings
    assert len(cache) == 1


def test_the_same_layers_in_another_keyword_order_are_the_same_call() -> None:
    cache = ResolveCache()
    setting = {"URL": URL, "SENDER": "Shop"}
    first = cache("django", setting=setting, url=None, environ={})
    assert cache("django", url=None, environ={}, setting=dict(setting)) is first
    setting["SENDER"] = "Other"  # the same dict, changed in place
    assert cache("django", url=None, setting=setting, environ={}).settings.sender == "Other"


def test_a_changed_environment_variable_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILGROUP_URL", URL + "?sender=First")
    assert resolve_cached("client").settings.sender == "First"
    monkeypatch.setenv("MOBILGROUP_URL", URL + "?sender=Second")
    assert resolve_cached("client").settings.sender == "Second"
    monkeypatch.setenv("MOBILGROUP_SENDER", "Third")  # a variable that is not the URL
    monkeypatch.delenv("MOBILGROUP_URL")
    monkeypatch.setenv("MOBILGROUP_USER_ID", "123")
    monkeypatch.setenv("MOBILGROUP_LOGIN", "login")
    monkeypatch.setenv("MOBILGROUP_PASSWORD", "secret")
    assert resolve_cached("client").settings.sender == "Third"
    monkeypatch.delenv("MOBILGROUP_SENDER")  # one variable gone, the others unchanged
    assert resolve_cached("client").settings.sender is None


def test_a_backend_per_message_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                       settings: Any) -> None:
    del settings.MOBILGROUP
    monkeypatch.setenv("MOBILGROUP_URL", URL)
    assert SmsBackend().config.settings.sender is None
    monkeypatch.setenv("MOBILGROUP_SENDER", "Fourth")
    assert SmsBackend().config.settings.sender == "Fourth"
    monkeypatch.setenv("MOBILGROUP_SENDER", "Fifth")
    assert SmsBackend().config.settings.sender == "Fifth"


def test_a_changed_django_setting_is_seen_by_the_backend_and_the_outbox(
        mobilgroup_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = gateway_settings(mobilgroup_emulator, SENDER="First")
    assert SmsBackend().config.settings.sender == "First"
    with override_settings(MOBILGROUP=gateway_settings(mobilgroup_emulator, SENDER="Second")):
        assert SmsBackend().config.settings.sender == "Second"
        assert sms.send_sms("hello", recipients=["79031234567"]) == 1
    assert SmsBackend().config.settings.sender == "First"
    # Changed in place (the same dict object): a new value, so a new key.
    settings.MOBILGROUP["SENDER"] = "Third"
    assert SmsBackend().config.settings.sender == "Third"
    assert load_config().settings.sender == "Third"
    assert [message.sender for message in mobilgroup_emulator.outbox] == ["Second"]


@pytest.mark.django_db(transaction=True)
def test_the_outbox_takes_a_changed_setting(mobilgroup_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = gateway_settings(mobilgroup_emulator, VALID_HOURS=2)
    with transaction.atomic():
        first = enqueue("79031234567", "one")
    settings.MOBILGROUP = gateway_settings(mobilgroup_emulator, VALID_HOURS=5)
    with transaction.atomic():
        second = enqueue("79031234567", "two")
    assert (first.outgoing["valid_hours"], second.outgoing["valid_hours"]) == (2, 5)


def test_the_celery_worker_client_follows_a_changed_setting(
        mobilgroup_emulator: Emulator) -> None:
    app = Celery("changing", broker="memory://")
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(sender="First")
    client = mobilgroup_celery.worker_client(app)
    assert mobilgroup_celery.worker_client(app) is client  # the same settings: the same client
    assert client.sender == "First"
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(sender="Second")
    changed = mobilgroup_celery.worker_client(app)
    assert changed is not client and changed.sender == "Second"


def open_pools(client: Any) -> int:
    """Connection pools the client's transport holds (none once closed)."""
    return len(client._session.get_adapter(client.endpoint).poolmanager.pools)


def test_a_replaced_celery_worker_client_is_closed(mobilgroup_emulator: Emulator) -> None:
    app = Celery("closing", broker="memory://")
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(sender="First")
    old = mobilgroup_celery.worker_client(app)
    old.send(PHONE, "warm")
    assert open_pools(old) == 1
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(sender="Second")
    mobilgroup_celery.worker_client(app)
    assert open_pools(old) == 0  # no task ran with it (a prefork child between tasks)


def test_a_replaced_client_is_closed_after_the_last_task_using_it(
        mobilgroup_emulator: Emulator) -> None:
    """A thread pool: a task still running with the old client keeps it open until it ends."""
    app = Celery("threads", broker="memory://")
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(sender="First")
    with mobilgroup_celery._task_client(app) as old:
        old.send(PHONE, "before")
        app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(sender="Second")
        assert mobilgroup_celery.worker_client(app).sender == "Second"
        old.send(PHONE, "still running")
        assert open_pools(old) == 1
    assert open_pools(old) == 0
    assert [m.text for m in mobilgroup_emulator.outbox] == ["before", "still running"]


def test_the_cache_is_bounded() -> None:
    cache = ResolveCache(size=8)
    for n in range(50):
        cache("client", url=f"{URL}?sender=S{n}", environ={})
        assert len(cache) <= 8
    assert len(cache) == 8
    # The least recently used went first: the newest are still there.
    newest = cache("client", url=f"{URL}?sender=S49", environ={})
    assert cache("client", url=f"{URL}?sender=S49", environ={}) is newest


def test_threads_share_one_cache_safely() -> None:
    cache = ResolveCache(size=4)
    def work(offset: int) -> None:
        for n in range(200):
            sender = f"S{(n + offset) % 6}"
            assert cache("client", url=f"{URL}?sender={sender}",
                         environ={}).settings.sender == sender

    errors = in_threads(work, 4)
    assert not errors
    assert len(cache) <= 4


def test_a_remembered_result_cannot_be_changed_by_one_caller() -> None:
    resolved = resolve_cached("client", url=URL + "?sender=Shop", environ={})
    with pytest.raises(TypeError):
        resolved.values["sender"] = "Other"  # type: ignore[index]
    assert resolve_cached("client", url=URL + "?sender=Shop", environ={}).settings.sender == "Shop"


def test_a_remembered_result_pickles_and_deep_copies() -> None:
    resolved = resolve_cached("client", url=URL + "?sender=Shop", environ={})
    for twin in (pickle.loads(pickle.dumps(resolved)),  # noqa: S301 (our own bytes)
                 copy.deepcopy(resolved), copy.copy(resolved)):
        assert twin.settings == resolved.settings
        assert dict(twin.values) == dict(resolved.values)
        assert dict(twin.sources) == dict(resolved.sources)
        assert twin.where("sender") == resolved.where("sender")
        with pytest.raises(TypeError):
            twin.values["sender"] = "Other"  # type: ignore[index]


def test_an_apprise_plugin_pickles_and_deep_copies(mobilgroup_emulator: Emulator) -> None:
    import mobilgroup_backends.apprise  # noqa: F401  (registers the schema)

    notifier = apprise.Apprise()
    assert notifier.add(mobilgroup_emulator.url(PHONE, sender="Shop"))
    plugin = notifier[0]
    for twin in (pickle.loads(pickle.dumps(plugin)), copy.deepcopy(plugin)):  # noqa: S301
        assert type(twin) is type(plugin)
        assert twin.resolved.settings == plugin.resolved.settings
        assert twin.url(privacy=True) == plugin.url(privacy=True)


def test_the_key_keeps_no_password() -> None:
    cache = ResolveCache()
    cache("client", url="mobilgroup://login:Pa55-w0rd@123", environ={})
    assert len(cache) == 1
    assert not any("Pa55-w0rd" in key for key in cache._results)


def test_a_bad_configuration_is_refused_every_time() -> None:
    cache = ResolveCache()
    for _ in range(2):
        with pytest.raises(ValueError, match="sender"):
            cache("client", url=URL + "?sender=far-too-long-alias", environ={})
    assert len(cache) == 0


def test_no_adapter_builds_its_own_key() -> None:
    """The layers and their variables are the core's business: no adapter reads the
    ``MOBILGROUP_*`` variables to decide whether settings changed, or keeps resolutions."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"ENV_NAMES|_CONFIGS\b|os\.environ\.get\(name\)", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
    for module in ("django/settings.py", "celery.py", "apprise.py"):
        text = (PACKAGE / module).read_text(encoding="utf-8")
        assert "resolve_cached(" in text and not re.search(r"(?<![\w.])resolve\(", text), module
