"""The alert receiver over real HTTP (waitress on 127.0.0.1) against the emulator: each tool's
payload becomes one short SMS, exactly once; refused requests send nothing and lose nothing."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ConfigurationError
from mobilgroup_backends.protocol import MAX_TEXT_UNICODE
from mobilgroup_backends.serve import make_app, zabbix_media_type
from tests.conftest import RunCommand
from tests.helpers import in_threads, sent_ids, texts, wait_until
from tests.receiver import (
    TOKEN,
    alertmanager_payload,
    grafana_payload,
    post,
    serving,
)
from tests.redis_server import RedisServer

PHONE = "79000000001"
OTHER = "79000000002"

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")

Receiver = Callable[..., contextlib.AbstractContextManager[str]]


@pytest.fixture
def receiver(mobilgroup_emulator: Emulator) -> Iterator[Receiver]:
    """``receiver(**options)``: a running receiver of the emulator (default phone ``PHONE``,
    the test token) as a context manager giving its base URL."""

    @contextlib.contextmanager
    def run(*phones: str, routes: Path | None = None, max_body: int | None = None,
            **options: Any) -> Iterator[str]:
        extra = {} if max_body is None else {"max_body": max_body}
        app = make_app(mobilgroup_emulator.url(*(phones or (PHONE,)), retries=0),
                       receiver_token=options.pop("receiver_token", TOKEN), routes=routes,
                       **extra, **options)
        with serving(app) as base:
            yield base

    yield run


def test_an_alertmanager_notification_is_one_short_sms_sent_once(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    firing = alertmanager_payload(fingerprints=("f1", "f2"))
    with receiver() as base:
        first = post(base, "/alertmanager", firing)
        again = post(base, "/alertmanager", firing)  # Alertmanager's retry of a lost answer
        resolved = post(base, "/alertmanager", alertmanager_payload("resolved",
                                                                    fingerprints=("f1", "f2")))
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "sent"
    assert again.status_code == 200 and again.json()["accepted_earlier"] is True
    assert again.json()["request_ids"] == first.json()["request_ids"]
    assert resolved.status_code == 200 and resolved.json()["request_ids"] != first.json()["request_ids"]
    assert texts(mobilgroup_emulator) == [
        "[FIRING:2] HighLatency (severity=critical, job=api): p99 latency above 2 s",
        "[RESOLVED:2] HighLatency (severity=critical, job=api): p99 latency above 2 s"]
    assert all(message.phones == (PHONE,) for message in mobilgroup_emulator.outbox)
    assert max(sent_ids(mobilgroup_emulator).values()) == 1


def test_the_same_notification_through_two_replicas_goes_out_once(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    firing = alertmanager_payload()
    with receiver() as one, receiver() as two:
        answers = [post(one, "/alertmanager", firing), post(two, "/alertmanager", firing)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["accepted_earlier"] for a in answers] == [False, True]
    assert len(mobilgroup_emulator.outbox) == 1


def test_the_same_notification_posted_at_once_many_times_goes_out_once(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    firing = alertmanager_payload()
    answers: list[requests.Response] = []
    with receiver(max_sms=100) as one, receiver(max_sms=100) as two:
        errors = in_threads(lambda n: answers.append(post((one, two)[n % 2], "/alertmanager",
                                                          firing)), 8)
    assert errors == []
    assert sorted(a.status_code for a in answers) == [200] * 8
    assert sum(not a.json()["accepted_earlier"] for a in answers) == 1
    assert len(mobilgroup_emulator.outbox) == 1


def test_a_new_start_of_the_same_alert_is_a_new_sms(receiver: Receiver,
                                                   mobilgroup_emulator: Emulator) -> None:
    with receiver() as base:
        post(base, "/alertmanager", alertmanager_payload(starts="2026-05-04T12:00:00Z"))
        post(base, "/alertmanager", alertmanager_payload(starts="2026-05-04T13:00:00Z"))
    assert len(mobilgroup_emulator.outbox) == 2


def test_grafanas_payload_is_texted(receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver() as base:
        answer = post(base, "/grafana", grafana_payload())
        again = post(base, "/grafana", grafana_payload())
    assert answer.status_code == 200, answer.text
    assert again.json()["accepted_earlier"] is True
    assert texts(mobilgroup_emulator) == [
        "[FIRING] High memory usage: This alert was triggered for zone us-1"]


def test_authentiks_generic_provider_payload_is_texted_with_basic_auth(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    basic = base64.b64encode(f"authentik:{TOKEN}".encode()).decode()
    body = {"From": "authentik", "To": "+7 900 000-00-02", "Body": "Your code is 123456"}
    with receiver() as base:
        answer = post(base, "/send", body, headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 200, answer.text
    assert [(m.phones, m.text) for m in mobilgroup_emulator.outbox] == [
        ((OTHER,), "Your code is 123456")]


def test_a_send_with_a_key_goes_out_once(receiver: Receiver,
                                         mobilgroup_emulator: Emulator) -> None:
    body = {"to": [OTHER], "text": "disk full on db1", "key": "zabbix:4711:1"}
    with receiver() as base:
        answers = [post(base, "/send", body) for _ in range(3)]
        fresh = post(base, "/send", {**body, "key": "zabbix:4711:0"})
    assert [a.json()["accepted_earlier"] for a in answers] == [False, True, True]
    assert fresh.json()["accepted_earlier"] is False
    assert texts(mobilgroup_emulator) == ["disk full on db1", "disk full on db1"]


def test_to_on_the_route_and_the_routing_file_choose_the_phones(
        receiver: Receiver, mobilgroup_emulator: Emulator, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"receiver:db": ["+79000000003"], "team=web": "79000000004"}))
    with receiver(routes=routes) as base:
        post(base, "/alertmanager?to=79000000002,79000000005", alertmanager_payload(name="A"))
        post(base, "/alertmanager", alertmanager_payload(name="B", receiver="db"))
        post(base, "/alertmanager", alertmanager_payload(name="C", labels={"team": "web"}))
        post(base, "/alertmanager", alertmanager_payload(name="D", receiver="other"))
    assert [m.phones for m in mobilgroup_emulator.outbox] == [
        ("79000000002", "79000000005"), ("79000000003",), ("79000000004",), (PHONE,)]


def test_a_long_notification_takes_the_parts_allowed_each_with_its_own_id(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    long = alertmanager_payload(summary="word " * 100)
    with receiver(max_parts=2) as base:
        first = post(base, "/alertmanager", long)
        again = post(base, "/alertmanager", long)
    ids = first.json()["request_ids"]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert again.json()["request_ids"] == ids and again.json()["accepted_earlier"] is True
    assert [len(t) <= 140 for t in texts(mobilgroup_emulator)] == [True, True]
    assert texts(mobilgroup_emulator)[1].endswith("…")


def test_one_sms_by_default_however_long_the_text(receiver: Receiver,
                                                  mobilgroup_emulator: Emulator) -> None:
    with receiver() as base:
        post(base, "/alertmanager", alertmanager_payload(summary="word " * 100))
    (text,) = texts(mobilgroup_emulator)
    assert len(text) == 140 and text.endswith("…")


def test_the_sms_follows_the_receiver_s_message_settings(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver(transliterate=False, sender="Ops", valid_hours=6) as base:
        post(base, "/alertmanager", alertmanager_payload(summary="диск 👍 " + "полон " * 30))
    [message] = mobilgroup_emulator.outbox
    assert (message.transliterate, message.sender, message.valid_hours) == (False, "Ops", 6)
    assert len(message.text) == MAX_TEXT_UNICODE and message.text.endswith("…")
    assert "диск ? полон" in message.text  # the receiver's default: replaced, not refused


def test_a_notification_the_settings_refuse_gets_422_and_takes_no_budget(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver(long_messages="error", max_sms=1) as base:
        refused = post(base, "/alertmanager", alertmanager_payload(summary="word " * 100))
        short = post(base, "/alertmanager", alertmanager_payload())
    assert refused.status_code == 422 and refused.json()["verdict"] == "invalid", refused.text
    assert short.status_code == 200 and short.json()["outcome"] == "sent", short.text
    assert len(mobilgroup_emulator.outbox) == 1


# --- refused: nothing sent, nothing lost ------------------------------------------------------


def test_a_wrong_phone_on_the_route_gets_400_and_takes_no_budget(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver(max_sms=1) as base:
        refused = post(base, "/alertmanager?to=12", alertmanager_payload())
        sent = post(base, "/alertmanager?to=79000000002", alertmanager_payload())
    assert refused.status_code == 400 and refused.json()["field"] == "?to=", refused.text
    assert "not a phone number" in refused.json()["message"]
    assert sent.status_code == 200 and sent.json()["outcome"] == "sent", sent.text
    assert [m.phones for m in mobilgroup_emulator.outbox] == [("79000000002",)]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Bearer"},
    {"Authorization": "Basic " + base64.b64encode(b"user:wrong").decode()},
    {"Authorization": "Basic !!!"}, {"Authorization": TOKEN}])
def test_a_request_without_the_token_gets_401_and_sends_nothing(
        receiver: Receiver, mobilgroup_emulator: Emulator, headers: dict[str, str]) -> None:
    with receiver() as base:
        refused = post(base, "/alertmanager", alertmanager_payload(), headers=headers)
        later = post(base, "/alertmanager", alertmanager_payload())
    assert refused.status_code == 401
    assert "Bearer" in refused.headers["WWW-Authenticate"]
    assert TOKEN not in refused.text
    assert later.status_code == 200
    assert len(mobilgroup_emulator.outbox) == 1


def test_a_10_mb_body_gets_413_and_sends_nothing(receiver: Receiver,
                                                 mobilgroup_emulator: Emulator) -> None:
    huge = alertmanager_payload()
    huge["padding"] = "x" * (10 * 1024 * 1024)
    with receiver() as base:
        refused = post(base, "/alertmanager", huge)
        later = post(base, "/alertmanager", alertmanager_payload())
    assert refused.status_code == 413
    assert "max_alerts" in refused.json()["message"]
    assert later.status_code == 200 and len(mobilgroup_emulator.outbox) == 1


def test_the_body_bound_can_be_set(receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver(max_body=500) as base:
        refused = post(base, "/alertmanager", alertmanager_payload(summary="x" * 600))
    assert refused.status_code == 413 and "500 bytes" in refused.json()["message"]
    assert len(mobilgroup_emulator.outbox) == 0


@pytest.mark.parametrize(("body", "field"), [
    (b'{"status": "firing", "alerts": [', None),
    (b"\xff\xfe", None),
    (b"[]", "the body"),
    (b'{"status": "firing"}', "alerts"),
    (b'{"status": "pending", "alerts": [{}]}', "status"),
    (b'{"status": "firing", "alerts": [1]}', "alerts[0]"),
    (b'{"status": "firing", "alerts": [{}], "truncatedAlerts": "x"}', "truncatedAlerts"),
    (b"[" * 200_000, None),
])
def test_a_body_that_is_not_the_payload_gets_400_naming_the_problem(
        receiver: Receiver, mobilgroup_emulator: Emulator, body: bytes, field: str | None) -> None:
    with receiver() as base:
        refused = post(base, "/alertmanager", body)
        later = post(base, "/alertmanager", alertmanager_payload())
    assert refused.status_code == 400
    payload = refused.json()
    if field is None:
        assert payload["error"] == "bad_json" and "JSON" in payload["message"]
    else:
        assert payload["field"] == field and payload["message"].startswith(field)
    assert later.status_code == 200 and len(mobilgroup_emulator.outbox) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"to": PHONE}, "text"), ({"to": 5, "text": "x"}, "to"),
    ({"to": "12", "text": "x"}, "to"), ({"text": "x", "key": ""}, "key")])
def test_a_send_that_is_not_right_gets_400_naming_the_field(
        receiver: Receiver, mobilgroup_emulator: Emulator, body: dict[str, Any], field: str) -> None:
    with receiver() as base:
        refused = post(base, "/send", body)
    assert refused.status_code == 400 and refused.json()["field"] == field, refused.text
    assert len(mobilgroup_emulator.outbox) == 0


def test_a_gateway_that_is_down_gets_503_and_the_retry_sends_once(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    firing = alertmanager_payload()
    with receiver() as base:
        mobilgroup_emulator.faults.next("close_before")
        down = post(base, "/alertmanager", firing)
        mobilgroup_emulator.faults.next("close_after")  # accepted, the answer lost
        lost = post(base, "/alertmanager", firing)
        retried = post(base, "/alertmanager", firing)
    assert down.status_code == 503, down.text
    assert lost.status_code == 503 and lost.json()["maybe_sent"] is True
    assert "demo-password" not in down.text + lost.text
    assert retried.status_code == 200 and retried.json()["accepted_earlier"] is True
    assert len(mobilgroup_emulator.outbox) == 1


def test_a_stopped_gateway_gets_503_then_the_retry_succeeds(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver() as base:
        mobilgroup_emulator.stop()
        down = post(base, "/alertmanager", alertmanager_payload())
        mobilgroup_emulator.start()
        retried = post(base, "/alertmanager", alertmanager_payload())
    assert down.status_code == 503 and down.json()["request_id"]
    assert retried.status_code == 200 and retried.json()["accepted_earlier"] is False
    assert len(mobilgroup_emulator.outbox) == 1


@pytest.mark.parametrize(("breaks", "mends", "code"), [
    (lambda account: setattr(account, "blocked", True),
     lambda account: setattr(account, "blocked", False), 5),
    (lambda account: setattr(account, "balance", Decimal(0)),
     lambda account: setattr(account, "balance", Decimal(100)), 9)])
def test_an_account_to_fix_gets_502_and_the_retry_after_the_fix_sends(
        receiver: Receiver, mobilgroup_emulator: Emulator, breaks: Callable[[Any], None],
        mends: Callable[[Any], None], code: int) -> None:
    breaks(mobilgroup_emulator.account)
    with receiver() as base:
        refused = post(base, "/alertmanager", alertmanager_payload())
        mends(mobilgroup_emulator.account)
        fixed = post(base, "/alertmanager", alertmanager_payload())
    assert refused.status_code == 502 and refused.json()["code"] == code
    assert fixed.status_code == 200 and len(mobilgroup_emulator.outbox) == 1


def test_an_untrusted_gateway_certificate_gets_502_and_sends_nothing(
        tls_emulator: Emulator) -> None:
    app = make_app(tls_emulator.url(PHONE, retries=0), receiver_token=TOKEN)
    with serving(app) as base:
        refused = post(base, "/alertmanager", alertmanager_payload())
    assert refused.status_code == 502, refused.text
    assert "certificate" in refused.json()["message"].lower()
    assert len(tls_emulator.outbox) == 0


def test_without_any_recipient_the_tool_is_told_to_keep_it(
        mobilgroup_emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(mobilgroup_emulator.url(), receiver_token=TOKEN)
    assert "no default recipients" in caplog.text
    with serving(app) as base:
        kept = post(base, "/alertmanager", alertmanager_payload())
        routed = post(base, "/alertmanager/?to=79000000002", alertmanager_payload())
    assert kept.status_code == 500 and kept.json()["error"] == "no_recipient"
    assert "?to=" in kept.json()["message"]
    assert routed.status_code == 200
    assert [m.phones for m in mobilgroup_emulator.outbox] == [(OTHER,)]


def test_unknown_routes_and_methods(receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver() as base:
        missing = post(base, "/nowhere", {})
        wrong = requests.get(base + "/alertmanager", timeout=10)
        health = requests.get(base + "/healthz", timeout=10)
    assert missing.status_code == 404 and "/alertmanager" in missing.json()["message"]
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert health.status_code == 200 and health.json() == {"ok": True}


# --- budget and summary -----------------------------------------------------------------------


def test_the_budget_holds_back_a_storm_and_one_summary_tells_it(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver(max_sms=2, per_seconds=1.5) as base:
        answers = [post(base, "/alertmanager", alertmanager_payload(name=f"Alert{n}"))
                   for n in range(5)]
        assert [a.json()["outcome"] for a in answers] == ["sent", "sent", "held", "held", "held"]
        assert wait_until(lambda: len(mobilgroup_emulator.outbox) == 3, 10)
        metrics = requests.get(base + "/metrics", timeout=10).text
    summary = texts(mobilgroup_emulator)[2]
    assert summary.startswith("+3 more CRITICAL since"), summary
    assert "[FIRING] Alert4" in summary
    assert 'mobilgroup_receiver_held_back_total{route="alertmanager"} 3.0' in metrics
    assert "mobilgroup_receiver_summaries_total 1.0" in metrics


def test_replicas_share_one_budget_through_redis(receiver: Receiver,
                                                mobilgroup_emulator: Emulator,
                                                redis_server: RedisServer) -> None:
    budget = redis_server.url(0) + f"?key=serve-{uuid.uuid4().hex}"
    with receiver(max_sms=2, per_seconds=60, budget=budget) as one, \
            receiver(max_sms=2, per_seconds=60, budget=budget) as two:
        outcomes = [post(base, "/alertmanager", alertmanager_payload(name=f"Alert{n}")).json()
                    ["outcome"] for n, base in enumerate((one, two, one, two))]
    assert outcomes == ["sent", "sent", "held", "held"]
    # The two held back are told once, by the first replica to stop (a summary at close).
    assert len(mobilgroup_emulator.outbox) == 3
    assert texts(mobilgroup_emulator)[2].startswith("+2 more CRITICAL since")


def test_dedupe_when_turned_on_folds_identical_texts(receiver: Receiver,
                                                    mobilgroup_emulator: Emulator) -> None:
    with receiver(dedupe_seconds=600) as base:
        outcomes = [post(base, "/alertmanager", alertmanager_payload(starts=starts)).json()
                    ["outcome"] for starts in ("2026-05-04T12:00:00Z", "2026-05-04T12:05:00Z")]
    assert outcomes == ["sent", "duplicate"]  # it flapped: a new start, the same text
    assert len(mobilgroup_emulator.outbox) == 1


def test_metrics_count_notifications_sms_refusals_and_latency(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    with receiver() as base:
        post(base, "/alertmanager", alertmanager_payload())
        post(base, "/alertmanager", alertmanager_payload())
        post(base, "/alertmanager", alertmanager_payload(), headers={})
        post(base, "/alertmanager", b"{")
        metrics = requests.get(base + "/metrics", timeout=10)
    assert metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.text
    assert 'mobilgroup_receiver_notifications_total{outcome="sent",route="alertmanager"} 2.0' in text
    assert ('mobilgroup_receiver_sms_sent_total{accepted_earlier="false",route="alertmanager"} 1.0'
            in text)
    assert 'mobilgroup_receiver_requests_refused_total{reason="unauthorized"} 1.0' in text
    assert 'mobilgroup_receiver_requests_refused_total{reason="bad_json"} 1.0' in text
    assert "mobilgroup_receiver_gateway_seconds_count 2.0" in text


# --- configuration ----------------------------------------------------------------------------


def test_no_token_is_refused_unless_explicitly_allowed(mobilgroup_emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_app(mobilgroup_emulator.url(PHONE))
    assert "MOBILGROUP_RECEIVER_TOKEN" in str(caught.value)
    make_app(mobilgroup_emulator.url(PHONE), allow_no_auth=True).close()


def test_the_token_comes_from_the_environment_or_a_file_and_never_shows(
        mobilgroup_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOBILGROUP_URL", mobilgroup_emulator.url(PHONE))
    monkeypatch.setenv("MOBILGROUP_RECEIVER_TOKEN", TOKEN)
    app = make_app()
    with serving(app) as base:
        assert post(base, "/alertmanager", alertmanager_payload()).status_code == 200
    assert TOKEN not in repr(app)
    monkeypatch.delenv("MOBILGROUP_RECEIVER_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("abc123\n")
    with pytest.raises(ConfigurationError) as caught:
        make_app(receiver_token_file=str(token_file))
    assert "abc123" not in str(caught.value) and "receiver_token_file" in str(caught.value)
    token_file.write_text(f"{TOKEN}\n")
    # A file given in code (--token-file) wins over the environment's token, as flags do.
    monkeypatch.setenv("MOBILGROUP_RECEIVER_TOKEN", "another-token-from-the-environment")
    with serving(make_app(receiver_token_file=str(token_file))) as base:
        assert post(base, "/alertmanager", alertmanager_payload()).status_code == 200
        assert post(base, "/alertmanager", alertmanager_payload(),
                    headers={"Authorization": "Bearer x" * 3}).status_code == 401


def test_a_bad_routing_file_is_refused_naming_the_rule(mobilgroup_emulator: Emulator,
                                                       tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"receiver:db": ["not a phone"]}))
    with pytest.raises(ConfigurationError) as caught:
        make_app(mobilgroup_emulator.url(PHONE), receiver_token=TOKEN, routes=routes)
    assert "receiver:db" in str(caught.value)



# --- Zabbix: the media type shipped in the package --------------------------------------------

def _zabbix_media_type() -> dict[str, Any]:
    import yaml

    export = yaml.safe_load(zabbix_media_type())["zabbix_export"]
    assert export["version"] == "6.0"  # the oldest format Zabbix 6 and 7 both import
    (media_type,) = export["media_types"]
    return dict(media_type)


def test_the_zabbix_media_type_is_a_webhook_whose_script_uses_only_its_parameters() -> None:
    media_type = _zabbix_media_type()
    assert media_type["type"] == "WEBHOOK"
    names = {parameter["name"] for parameter in media_type["parameters"]}
    used = set(re.findall(r"params\.(\w+)", media_type["script"]))
    assert used - names == {"HTTPProxy"}  # the one optional parameter, as Zabbix's own
    assert {"To", "Message", "Subject", "Key", "Token", "URL"} <= names
    modes = {template["operation_mode"] for template in media_type["message_templates"]}
    assert modes == {"PROBLEM", "RECOVERY", "UPDATE"}


def _as_zabbix_posts(media_type: dict[str, Any], macros: dict[str, str], base: str) -> tuple[
        str, dict[str, str], bytes]:
    """The HTTP request the media type's script makes (Zabbix runs it in its JavaScript engine;
    the script is short enough to replay line by line): its parameters with the macros
    resolved, the bearer header, and the JSON body it builds."""
    params = {p["name"]: re.sub(r"\{[A-Z.]+\}", lambda m: macros.get(m.group(), m.group()),
                                p["value"]) for p in media_type["parameters"]}
    params["URL"], params["Token"] = base + "/send", TOKEN
    script = media_type["script"]
    assert "request.addHeader('Authorization: Bearer ' + params.Token);" in script
    assert "var text = params.Subject ? params.Subject + ': ' + params.Message : params.Message;" \
        in script
    assert "JSON.stringify({to: params.To, text: text, key: 'zabbix:' + params.Key})" in script
    assert "request.post(params.URL, body)" in script
    text = f"{params['Subject']}: {params['Message']}" if params["Subject"] else params["Message"]
    body = json.dumps({"to": params["To"], "text": text, "key": "zabbix:" + params["Key"]})
    return params["URL"], {"Content-Type": "application/json",
                           "Authorization": "Bearer " + params["Token"]}, body.encode()


def test_the_zabbix_media_types_request_is_texted_once_however_often_zabbix_tries(
        receiver: Receiver, mobilgroup_emulator: Emulator) -> None:
    media_type = _zabbix_media_type()
    problem = {"{ALERT.SENDTO}": "+79000000002", "{ALERT.SUBJECT}": "PROBLEM High",
               "{ALERT.MESSAGE}": "db1: Disk full since 12:00", "{EVENT.ID}": "4711",
               "{EVENT.VALUE}": "1"}
    recovery = {**problem, "{ALERT.SUBJECT}": "RESOLVED",
                "{ALERT.MESSAGE}": "db1: Disk full after 5m", "{EVENT.VALUE}": "0"}
    with receiver() as base:
        answers = []
        for macros in (problem, problem, recovery):  # Zabbix tries a failed alert again
            url, headers, body = _as_zabbix_posts(media_type, macros, base)
            answers.append(requests.post(url, data=body, headers=headers, timeout=30))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["accepted_earlier"] for a in answers] == [False, True, False]
    assert [(m.phones, m.text) for m in mobilgroup_emulator.outbox] == [
        ((OTHER,), "PROBLEM High: db1: Disk full since 12:00"),
        ((OTHER,), "RESOLVED: db1: Disk full after 5m")]


def test_the_command_prints_the_media_type_to_import(mobilgroup_command: RunCommand) -> None:
    result = mobilgroup_command("serve", "--zabbix-media-type")
    assert result.returncode == 0, result.stderr
    assert result.stdout == zabbix_media_type()


def test_the_command_refuses_to_serve_without_a_token(mobilgroup_command: RunCommand,
                                                      mobilgroup_emulator: Emulator) -> None:
    result = mobilgroup_command("serve", "--listen", "127.0.0.1:0",
                                url=mobilgroup_emulator.url(PHONE))
    assert result.returncode == 2
    assert "MOBILGROUP_RECEIVER_TOKEN" in result.stderr and "--no-auth" in result.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:8787", "[::]:8787", "192.0.2.1:8787"])
def test_no_auth_is_refused_on_an_address_other_machines_reach(
        mobilgroup_command: RunCommand, mobilgroup_emulator: Emulator, listen: str) -> None:
    result = mobilgroup_command("serve", "--listen", listen, "--no-auth",
                                url=mobilgroup_emulator.url(PHONE))
    assert result.returncode == 2
    assert "--no-auth" in result.stderr and "127.0.0.1" in result.stderr


@pytest.mark.parametrize("listen", ["8787", "host:", ":8787", "host:99999"])
def test_a_wrong_listen_address_is_refused(mobilgroup_command: RunCommand, listen: str) -> None:
    result = mobilgroup_command("serve", "--listen", listen, "--no-auth")
    assert result.returncode == 2 and "--listen" in result.stderr and "HOST:PORT" in result.stderr
