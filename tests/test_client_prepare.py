"""``MobilgroupClient.prepare``/``send_prepared``: a message prepared once, every setting of the
client applied, kept as JSON, and sent as it is (against the emulator)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mobilgroup_backends import MobilgroupClient, Outgoing, errors
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.protocol import MAX_TEXT_UNICODE
from tests.helpers import sent_ids

BY_PHONE = "8 029 123-45-67"


def url(emulator: Emulator, **options: object) -> str:
    return emulator.url(sender="Ops", valid=24, translit="no", region="BY", **options)


def test_the_url_s_settings_reach_the_wire_through_send(frozen_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(url(frozen_emulator)) as client:
        result = client.send(BY_PHONE, "Привет")
    [message] = frozen_emulator.outbox
    assert message.request_id == result.request_id
    assert message.phones == ("375291234567",)
    assert (message.sender, message.valid_hours, message.transliterate) == ("Ops", 24, False)
    assert message.text == "Привет"


def test_arguments_of_the_call_win_over_the_client_s_settings(frozen_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(url(frozen_emulator)) as client:
        client.send("+7 900 000-00-03", "Hi", sender="Shop", valid_hours=2, transliterate=True)
    [message] = frozen_emulator.outbox
    assert (message.sender, message.valid_hours, message.transliterate) == ("Shop", 2, True)


def test_a_prepared_message_survives_json_and_goes_out_as_it_is(frozen_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(url(frozen_emulator)) as client:
        outgoing = client.prepare(BY_PHONE, "Привет", schedule="2026-05-04 15:30")
        stored = json.loads(json.dumps(outgoing.to_dict()))
        assert stored == {"account": "1000", "phones": ["375291234567"],
                          "parts": [{"request_id": outgoing.request_ids[0], "text": "Привет"}],
                          "sender": "Ops", "transliterate": False, "valid_hours": 24,
                          "schedule": "2026-05-04 15:30"}
        again = Outgoing.from_dict(stored)
        assert again == outgoing
        [result] = client.send_prepared(again)
    [message] = frozen_emulator.outbox
    assert message.request_id == result.request_id == outgoing.request_ids[0]
    assert message.schedule is not None and message.schedule.strftime("%H:%M") == "15:30"


def test_a_long_text_is_split_once_and_resent_safely(frozen_emulator: Emulator) -> None:
    text = " ".join(["слово"] * 30)  # 179 characters: three Unicode parts
    with MobilgroupClient.from_url(url(frozen_emulator, long_messages="split")) as client:
        outgoing = client.prepare(BY_PHONE, text)
        assert len(outgoing.parts) == 3
        assert all(len(part.text) <= MAX_TEXT_UNICODE for part in outgoing.parts)
        assert outgoing.text == text
        first = client.send_prepared(outgoing)
        again = client.send_prepared(outgoing, resend=True)  # a redelivered task, say
    assert [r.request_id for r in first] == list(outgoing.request_ids)
    assert [r.accepted_earlier for r in again] == [True, True, True]
    assert sent_ids(frozen_emulator) == dict.fromkeys(outgoing.request_ids, 1)


def test_send_refuses_what_would_go_out_in_parts_and_truncates_when_told(
        frozen_emulator: Emulator) -> None:
    text = "x" * 200
    with (
        MobilgroupClient.from_url(url(frozen_emulator, long_messages="split")) as client,
        pytest.raises(errors.ValidationError) as caught,
    ):
        client.send(BY_PHONE, text)
    assert "send_prepared" in str(caught.value) and caught.value.request_id is not None
    with MobilgroupClient.from_url(url(frozen_emulator, long_messages="truncate")) as client:
        client.send(BY_PHONE, text)
    with (
        MobilgroupClient.from_url(url(frozen_emulator)) as client,
        pytest.raises(errors.ValidationError, match="64 without transliteration"),
    ):
        client.send(BY_PHONE, text)
    [message] = frozen_emulator.outbox
    assert len(message.text) == MAX_TEXT_UNICODE and message.text.endswith("…")


def test_unencodable_characters_follow_the_setting(frozen_emulator: Emulator) -> None:
    with (
        MobilgroupClient.from_url(url(frozen_emulator)) as client,
        pytest.raises(errors.ValidationError, match="windows-1251"),
    ):
        client.prepare(BY_PHONE, "ok 👍")
    with MobilgroupClient.from_url(url(frozen_emulator, replace_unencodable="yes")) as client:
        client.send(BY_PHONE, "ok 👍")
    assert [m.text for m in frozen_emulator.outbox] == ["ok ?"]


def test_a_message_prepared_for_another_account_is_refused(frozen_emulator: Emulator) -> None:
    outgoing = Outgoing.from_dict({"account": "2000", "phones": ["79000000004"],
                                   "parts": [{"request_id": 5, "text": "hi"}]})
    with (
        MobilgroupClient.from_url(url(frozen_emulator)) as client,
        pytest.raises(errors.ConfigurationError, match="another account"),
    ):
        client.send_prepared(outgoing)
    assert frozen_emulator.connections == 0


@pytest.mark.parametrize(("change", "field"), [
    ({"phones": ["12"]}, "phones"),
    ({"parts": [{"request_id": 5, "text": "x" * 141}]}, "text"),
    ({"parts": []}, "outgoing.parts"),
    ({"valid_hours": 99}, "valid_hours"),
    ({"transliterate": "no"}, "outgoing.transliterate"),
    ({"account": "demo"}, "outgoing.account"),
])
def test_a_stored_message_edited_by_hand_is_checked_again(change: dict[str, object],
                                                          field: str) -> None:
    stored = {"account": "1000", "phones": ["79000000004"],
              "parts": [{"request_id": 5, "text": "hi"}], **change}
    with pytest.raises(errors.ValidationError) as caught:
        Outgoing.from_dict(stored)
    assert caught.value.field == field


def test_an_id_given_for_a_text_in_parts_is_refused() -> None:
    with (
        MobilgroupClient("1000", "demo", "pw", long_messages="split") as client,
        pytest.raises(errors.ValidationError) as caught,
    ):
        client.prepare("+7 900 000-00-05", "y " * 100, request_id=42)
    assert caught.value.field == "request_id" and caught.value.request_id == 42


def test_the_report_is_due_when_the_lifetime_has_run_out_counting_the_schedule() -> None:
    from datetime import datetime, timedelta, timezone

    client = MobilgroupClient("1000", "demo", "demo", endpoint="http://127.0.0.1:9/extxml.php")
    sent_at = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    now = client.prepare("+79031234567", "now", valid_hours=6)
    assert now.schedule_time is None
    assert now.report_due(sent_at) == sent_at + timedelta(hours=6)
    later = client.prepare("+79031234567", "later", valid_hours=2,
                           schedule="2026-12-08 15:30")  # the gateway's clock: Moscow time
    assert later.schedule_time == datetime(2026, 12, 8, 12, 30, tzinfo=timezone.utc)
    assert later.report_due(sent_at) == datetime(2026, 12, 8, 14, 30, tzinfo=timezone.utc)
    # The rule survives the JSON a queue stores the message as.
    assert Outgoing.from_dict(json.loads(json.dumps(later.to_dict()))).report_due(sent_at) \
        == later.report_due(sent_at)


def test_max_parts_caps_a_split_and_cuts_the_last_part(frozen_emulator: Emulator) -> None:
    text = " ".join(["слово"] * 30)  # three Unicode parts when split freely
    with MobilgroupClient.from_url(url(frozen_emulator, long_messages="split",
                                       max_parts=2)) as client:
        capped = client.prepare(BY_PHONE, text)
        one = client.prepare(BY_PHONE, text, max_parts=1)  # the call wins over the URL
        client.send_prepared(capped)
    with MobilgroupClient.from_url(url(frozen_emulator, long_messages="truncate")) as client:
        truncated = client.prepare(BY_PHONE, text)
    assert [len(part.text) for part in capped.parts] == [59, MAX_TEXT_UNICODE]
    assert capped.parts[0].text == " ".join(["слово"] * 10)
    assert capped.parts[1].text.endswith("…") and not capped.parts[0].text.endswith("…")
    assert one.text == truncated.text  # truncate is the one-part case
    assert [m.text for m in frozen_emulator.outbox] == [part.text for part in capped.parts]


def test_max_parts_comes_from_every_place_settings_come_from() -> None:
    from mobilgroup_backends.config import parse_url, resolve

    assert MobilgroupClient("1000", "demo", "pw").settings.max_parts is None
    assert parse_url("mobilgroup://demo:pw@1000?max_parts=3")[0].max_parts == 3
    assert resolve("client", environ={"MOBILGROUP_URL": "mobilgroup://demo:pw@1000",
                                      "MOBILGROUP_MAX_PARTS": "4"}).settings.max_parts == 4
    with pytest.raises(errors.ConfigurationError) as caught:
        parse_url("mobilgroup://demo:pw@1000?max_parts=0")
    assert caught.value.field == "max_parts" and caught.value.value == 0


def test_ids_given_once_the_parts_are_known_make_the_same_requests(
        frozen_emulator: Emulator) -> None:
    text = " ".join(["слово"] * 30)
    ids = [10**17 + 1, 10**17 + 2, 10**17 + 3]
    with MobilgroupClient.from_url(url(frozen_emulator, long_messages="split")) as client:
        first = client.prepare(BY_PHONE, text).with_request_ids(ids)
        again = client.prepare(BY_PHONE, text).with_request_ids(ids)  # a retry from scratch
        assert first == again and first.request_ids == tuple(ids)
        client.send_prepared(first)
        resent = client.send_prepared(again, resend=True)
    assert [r.accepted_earlier for r in resent] == [True, True, True]
    assert sent_ids(frozen_emulator) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize(("ids", "problem"), [([1, 2], "3 part(s)"), ([1, 2, 2], "same id"),
                                              ([1, 2, "x"], "")])
def test_ids_that_do_not_fit_the_parts_are_refused(ids: list[Any], problem: str) -> None:
    with MobilgroupClient("1000", "demo", "pw", long_messages="split") as client:
        outgoing = client.prepare("+7 900 000-00-05", " ".join(["слово"] * 60))
    with pytest.raises(errors.ValidationError) as caught:
        outgoing.with_request_ids(ids)
    assert caught.value.field == "request_id" and problem in caught.value.problem
